package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchyard-mta/switchyard/core/certs"
)

func TestDNSRecords(t *testing.T) {
	dir := t.TempDir()
	conf := `hostname = "mail.example.org"
data_dir = "data"
[tls]
self_signed = true
[plugins.transport-socks]
path = "bin/transport-socks"
[transports.proxied]
plugin = "transport-socks"
[transports.proxied.config]
remote_ips = ["192.0.2.10", "2001:db8::10"]
[domains."example.org"]
`
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("mta.toml", conf)
	badIPs := write("badips.toml", strings.Replace(conf, "192.0.2.10", "192.0.2.300", 1))
	invalid := write("invalid.toml", "hostname = 1\n")

	// Before the first start: no certificate, no TLSA.
	var out, errOut bytes.Buffer
	if code := run([]string{"dns", "records", "-config", good, "example.org"}, nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if strings.Contains(out.String(), " IN TLSA ") || !strings.Contains(out.String(), "No TLSA record") {
		t.Errorf("without a certificate:\n%s", out.String())
	}

	// The certificate `mta serve` generates.
	cert, _, err := certs.Load("", "", true, filepath.Join(dir, "data"), "mail.example.org")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.Leaf.RawSubjectPublicKeyInfo)
	out.Reset()
	if code := run([]string{"dns", "records", "-config", good, "example.org."}, nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{
		"\nexample.org. IN MX 10 mail.example.org.\n",
		"\nexample.org. IN TXT \"v=spf1 mx ip4:192.0.2.10 ip6:2001:db8::10 ~all\"\n",
		"\nmail.example.org. IN TXT \"v=spf1 a ip4:192.0.2.10 ip6:2001:db8::10 -all\"\n",
		"\n_25._tcp.mail.example.org. IN TLSA 3 1 1 " + hex.EncodeToString(sum[:]) + "\n",
		"\n;   mode: testing\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	tests := []struct {
		name string
		argv []string
		want int
	}{
		{"unknown domain", []string{"dns", "records", "-config", good, "example.net"}, 2},
		{"no domain", []string{"dns", "records", "-config", good}, 2},
		{"two domains", []string{"dns", "records", "-config", good, "example.org", "example.net"}, 2},
		{"bad remote_ips", []string{"dns", "records", "-config", badIPs, "example.org"}, 2},
		{"invalid configuration", []string{"dns", "records", "-config", invalid, "example.org"}, 2},
		{"help", []string{"dns", "records", "-h"}, 0},
	}
	for _, tc := range tests {
		out.Reset()
		errOut.Reset()
		if code := run(tc.argv, nil, &out, &errOut); code != tc.want {
			t.Errorf("%s: exit %d, want %d; stderr %s", tc.name, code, tc.want, errOut.String())
		}
		if tc.want == 2 && out.Len() > 0 {
			t.Errorf("%s: printed %s", tc.name, out.String())
		}
	}
}
