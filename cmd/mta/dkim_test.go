package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/miekg/dns"

	"github.com/switchyard-mta/switchyard/sdk/dkimkey"
)

// TestDKIMGen makes keys with mta dkim gen, without a configuration file,
// and checks the key file, the record and the table it prints, and the
// input errors that exit 2.
func TestDKIMGen(t *testing.T) {
	dir := t.TempDir()
	mta := func(argv ...string) (string, string, int) {
		t.Helper()
		var out, errOut bytes.Buffer
		argv = append([]string{"dkim", "gen", "-config", filepath.Join(dir, "absent.toml")}, argv...)
		code := run(argv, strings.NewReader(""), &out, &errOut)
		return out.String(), errOut.String(), code
	}

	for _, tc := range []struct {
		name     string
		args     []string
		domain   string // In the record.
		rsa      bool
		nstrings int // TXT strings of the record.
	}{
		{"ed25519", []string{"Example.ORG", "2026e"}, "example.org", false, 1},
		{"rsa", []string{"-rsa", "example.org", "2026r"}, "example.org", true, 2},
		{"idn", []string{"bücher.example", "s.1"}, "xn--bcher-kva.example", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, tc.name+".key")
			out, errOut, code := mta(append(tc.args, file)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			fi, err := os.Stat(file)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600", fi.Mode().Perm())
			}
			pemData, _ := os.ReadFile(file)
			if !bytes.HasPrefix(pemData, []byte("-----BEGIN PRIVATE KEY-----\n")) {
				t.Errorf("key file is not PKCS #8 PEM:\n%s", pemData)
			}
			key, err := dkimkey.Load(file)
			if err != nil {
				t.Fatal(err)
			}
			switch k := key.Public().(type) {
			case *rsa.PublicKey:
				if !tc.rsa || k.N.BitLen() != 2048 {
					t.Errorf("RSA key of %d bits", k.N.BitLen())
				}
			case ed25519.PublicKey:
				if tc.rsa {
					t.Errorf("ed25519 key, want RSA")
				}
			}
			record, _ := dkimkey.Record(key.Public())
			selector := tc.args[len(tc.args)-1]
			line := dkimkey.ZoneRecord(selector, tc.domain, record)
			if !strings.Contains(out, "\n"+line+"\n") {
				t.Fatalf("output has not the record %q:\n%s", line, out)
			}
			rr, err := dns.NewRR(line)
			if err != nil || len(rr.(*dns.TXT).Txt) != tc.nstrings || strings.Join(rr.(*dns.TXT).Txt, "") != record {
				t.Errorf("record line %q: %v", line, err)
			}
			// The table printed is TOML that names this key.
			_, table, ok := strings.Cut(out, "[[policies.dkim.config.keys]]\n")
			if !ok {
				t.Fatalf("no table in the output:\n%s", out)
			}
			table, _, _ = strings.Cut(table, "\n\n")
			var keys struct {
				Domain   string `toml:"domain"`
				Selector string `toml:"selector"`
				KeyFile  string `toml:"key_file"`
			}
			if _, err := toml.Decode(table, &keys); err != nil {
				t.Fatalf("table %q: %v", table, err)
			}
			if keys.Domain != tc.domain || keys.Selector != selector || keys.KeyFile != file {
				t.Errorf("table %+v", keys)
			}
			if hint := strings.Contains(out, "mta dkim gen -rsa"); hint == tc.rsa {
				t.Errorf("advice to add an RSA key: %v, want %v:\n%s", hint, !tc.rsa, out)
			}
		})
	}

	existing := filepath.Join(dir, "ed25519.key")
	before, _ := os.ReadFile(existing)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"exists", []string{"example.org", "s", existing}, "exists; not overwritten"},
		{"no args", nil, "usage: mta dkim gen"},
		{"too few", []string{"example.org", "s"}, "usage: mta dkim gen"},
		{"too many", []string{"example.org", "s", filepath.Join(dir, "x.key"), "y"}, "usage: mta dkim gen"},
		{"bad domain", []string{"exa_mple.org", "s", filepath.Join(dir, "x.key")}, `invalid domain name "exa_mple.org"`},
		{"bad selector", []string{"example.org", "s_1", filepath.Join(dir, "x.key")}, `selector "s_1": character '_'`},
		{"empty selector", []string{"example.org", "", filepath.Join(dir, "x.key")}, "empty selector"},
		{"empty file", []string{"example.org", "s", ""}, "empty KEYFILE"},
		{"flag after args", []string{"example.org", "s", filepath.Join(dir, "x.key"), "-rsa"}, "usage: mta dkim gen"},
	} {
		out, errOut, code := mta(tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) || out != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 2 and %q", tc.name, code, out, errOut, tc.want)
		}
	}
	if after, _ := os.ReadFile(existing); !bytes.Equal(before, after) {
		t.Errorf("existing key file changed")
	}
	if _, err := os.Stat(filepath.Join(dir, "x.key")); err == nil {
		t.Errorf("a key file was written on bad input")
	}
	if _, errOut, code := mta("-h"); code != 0 || !strings.Contains(errOut, "-rsa") {
		t.Errorf("-h: exit %d: %s", code, errOut)
	}
}
