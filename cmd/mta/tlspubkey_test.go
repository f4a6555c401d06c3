package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchyard-mta/switchyard/core/store"
)

// TestTLSPubKey runs every tlspubkey command with no server running, on
// keys that gen made, and the input errors that exit 2.
func TestTLSPubKey(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "mta.toml")
	err := os.WriteFile(conf, []byte(`hostname = "mail.example.org"
data_dir = "data"
[domains."example.org"]
[accounts.alice]
domain = "example.org"
addresses = ["alice@example.org", "A.Smith@example.org"]
[accounts.bob]
domain = "example.org"
addresses = ["bob@example.org"]
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	mta := func(stdin string, argv ...string) (string, string, int) {
		t.Helper()
		var out, errOut bytes.Buffer
		if len(argv) >= 2 {
			argv = append(argv[:2:2], append([]string{"-config", conf}, argv[2:]...)...)
		}
		code := run(argv, strings.NewReader(stdin), &out, &errOut)
		return out.String(), errOut.String(), code
	}
	ok := func(stdin string, argv ...string) string {
		t.Helper()
		out, errOut, code := mta(stdin, argv...)
		if code != 0 {
			t.Fatalf("mta %q: exit %d: %s", argv, code, errOut)
		}
		return out
	}

	stem := filepath.Join(dir, "laptop")
	out := ok("", "tlspubkey", "gen", stem)
	for _, f := range []struct {
		ext  string
		mode os.FileMode
	}{{".key", 0o600}, {".crt", 0o644}, {".p12", 0o600}} {
		fi, err := os.Stat(stem + f.ext)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&^f.mode != 0 {
			t.Errorf("%s: mode %v, want at most %v", f.ext, fi.Mode().Perm(), f.mode)
		}
	}
	pair, err := tls.LoadX509KeyPair(stem+".crt", stem+".key")
	if err != nil {
		t.Fatalf("gen's key and certificate: %v", err)
	}
	if pair.Leaf.Subject.CommonName != "laptop" {
		t.Errorf("CN %q, want laptop", pair.Leaf.Subject.CommonName)
	}
	sum := sha256.Sum256(pair.Leaf.RawSubjectPublicKeyInfo)
	fp := store.TLSFingerprint(sum[:])
	if !strings.Contains(out, "fingerprint: "+fp+"\n") || !strings.Contains(out, "openssl pkcs12 -export") {
		t.Errorf("gen output:\n%s", out)
	}
	if _, errOut, code := mta("", "tlspubkey", "gen", stem); code != 2 || !strings.Contains(errOut, "exists") {
		t.Errorf("gen over existing files: exit %d, %s", code, errOut)
	}
	if openssl, err := exec.LookPath("openssl"); err != nil {
		t.Log("openssl not installed: the PKCS #12 file is not checked")
	} else if b, err := exec.Command(openssl, "pkcs12", "-info", "-in", stem+".p12", "-passin", "pass:", "-noenc").CombinedOutput(); err != nil {
		t.Errorf("openssl pkcs12 -info: %v\n%s", err, b)
	} else if !bytes.Contains(b, []byte("PRIVATE KEY")) || !bytes.Contains(b, []byte("subject=CN")) {
		t.Errorf("openssl pkcs12 -info shows no key and certificate:\n%s", b)
	}

	certPEM, err := os.ReadFile(stem + ".crt")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := os.ReadFile(stem + ".key")
	ok(string(certPEM), "tlspubkey", "add", "-no-imap-preauth", "a.smith@EXAMPLE.org")
	out = ok("", "tlspubkey", "list")
	if !strings.Contains(out, fp) || !strings.Contains(out, "A.Smith@example.org") || !strings.Contains(out, "laptop") ||
		!strings.Contains(out, "ed25519") || !strings.Contains(out, "never") {
		t.Errorf("list:\n%s", out)
	}
	out = ok("", "tlspubkey", "get", fp)
	if !strings.Contains(out, "imap preauth: no") || !strings.Contains(out, "account:      alice") {
		t.Errorf("get:\n%s", out)
	}
	if b, _ := pem.Decode([]byte(out[strings.Index(out, "-----BEGIN"):])); b == nil || !bytes.Equal(b.Bytes, pair.Leaf.Raw) {
		t.Errorf("get shows another certificate:\n%s", out)
	}
	ok("", "tlspubkey", "set-preauth", fp+"=", "true") // Padding is allowed.
	if out = ok("", "tlspubkey", "get", fp); !strings.Contains(out, "imap preauth: yes") {
		t.Errorf("after set-preauth true:\n%s", out)
	}
	if out = ok("", "tlspubkey", "list", "bob"); out != "no TLS public keys\n" {
		t.Errorf("list bob:\n%s", out)
	}

	// A second key, with the private key piped along: only the
	// certificate is kept.
	ok("", "tlspubkey", "gen", filepath.Join(dir, "phone"))
	phoneKey, _ := os.ReadFile(filepath.Join(dir, "phone.key"))
	phoneCert, _ := os.ReadFile(filepath.Join(dir, "phone.crt"))
	ok(string(phoneKey)+string(phoneCert), "tlspubkey", "add", "bob@example.org", "Bob's phone")
	if out = ok("", "tlspubkey", "list", "bob"); !strings.Contains(out, "Bob's phone") {
		t.Errorf("list bob:\n%s", out)
	}

	for _, tc := range []struct {
		name  string
		stdin string
		argv  []string
		want  string
	}{
		{"added twice", string(certPEM), []string{"tlspubkey", "add", "bob@example.org"}, "already added, for A.Smith@example.org (account alice)"},
		{"unknown address", string(certPEM), []string{"tlspubkey", "add", "carol@example.org"}, "not an address of any account"},
		{"account name for address", string(certPEM), []string{"tlspubkey", "add", "alice"}, "invalid address"},
		{"separator address", string(certPEM), []string{"tlspubkey", "add", "alice+x@example.org"}, "not an address"},
		{"no certificate", string(keyPEM), []string{"tlspubkey", "add", "alice@example.org"}, "no PEM CERTIFICATE"},
		{"garbage", "\x00\xff", []string{"tlspubkey", "add", "alice@example.org"}, "no PEM CERTIFICATE"},
		{"bad certificate", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", []string{"tlspubkey", "add", "alice@example.org"}, "certificate:"},
		{"control in name", string(certPEM), []string{"tlspubkey", "add", "alice@example.org", "a\tb"}, "control characters"},
		{"unknown flag", string(certPEM), []string{"tlspubkey", "add", "-preauth", "alice@example.org"}, "not defined"},
		{"too many", string(certPEM), []string{"tlspubkey", "add", "alice@example.org", "x", "y"}, "usage"},
		{"list unknown account", "", []string{"tlspubkey", "list", "carol"}, `no account "carol"`},
		{"bad fingerprint", "", []string{"tlspubkey", "get", "abc"}, "invalid fingerprint"},
		{"unknown key", "", []string{"tlspubkey", "rm", strings.Repeat("A", 43)}, "no such key"},
		{"set-preauth maybe", "", []string{"tlspubkey", "set-preauth", fp, "maybe"}, "want true or false"},
		{"set-preauth no value", "", []string{"tlspubkey", "set-preauth", fp}, "usage"},
		{"gen no stem", "", []string{"tlspubkey", "gen"}, "usage"},
		{"group", "", []string{"tlspubkey"}, "which one"},
	} {
		if _, errOut, code := mta(tc.stdin, tc.argv...); code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, want 2 and %q in:\n%s", tc.name, code, tc.want, errOut)
		}
	}

	ok("", "tlspubkey", "rm", fp)
	if out = ok("", "tlspubkey", "list", "alice"); out != "no TLS public keys\n" {
		t.Errorf("after rm:\n%s", out)
	}
	if _, errOut, code := mta("", "tlspubkey", "get", fp); code != 2 || !strings.Contains(errOut, "no such key") {
		t.Errorf("get after rm: exit %d, %s", code, errOut)
	}
}

// TestArgsLikeFlags: a positional argument that starts with "-", as a
// base64url fingerprint may, is no flag for a command without flags of its
// own; -config still is, before or after it.
func TestArgsLikeFlags(t *testing.T) {
	for _, argv := range [][]string{
		{"tlspubkey", "get", "-config", "X", "-abc"},
		{"tlspubkey", "get", "-abc", "-config", "X"},
		{"tlspubkey", "get", "-config=X", "--", "-abc"},
	} {
		var out, errOut bytes.Buffer
		code := run(argv, nil, &out, &errOut)
		// The configuration X does not exist: exit 2 for that, not for a flag.
		if code != 2 || strings.Contains(errOut.String(), "flag provided but not defined") || !strings.Contains(errOut.String(), "invalid configuration") {
			t.Errorf("%q: exit %d\n%s", argv, code, errOut.String())
		}
	}
}
