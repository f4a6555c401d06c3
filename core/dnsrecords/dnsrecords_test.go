package dnsrecords

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/sdk/dkimkey"
)

const base = `
hostname = "mail.example.org"
[plugins.transport-socks]
path = "bin/plugins/transport-socks"
[plugins.proxy]
path = "/usr/lib/switchyard/transport-socks"
[plugins.transport-direct]
path = "bin/plugins/transport-direct"
[plugins.transport-submission]
path = "bin/plugins/transport-submission"
[domains."example.org"]
[domains."Bücher.example"]
`

func parse(t *testing.T, extra string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "mta.toml"), []byte(base+extra))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// newCert returns a certificate for mail.example.org: self-signed, or
// issued by a throwaway CA.
func newCert(t *testing.T, selfSigned bool) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "mail.example.org"},
		DNSNames:     []string{"mail.example.org"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	parent, signer := tmpl, key
	if !selfSigned {
		caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		parent = &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"},
			NotBefore: tmpl.NotBefore, NotAfter: tmpl.NotAfter,
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		signer = caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// find returns the data of the records of name and type.
func find(s *Set, name, typ string) []string {
	var data []string
	for _, r := range s.Records {
		if r.Name == name && r.Type == typ {
			data = append(data, r.Data)
		}
	}
	return data
}

func TestGenerate(t *testing.T) {
	tests := []struct {
		name       string
		extra      string
		domain     string
		wantSPF    string
		wantHELO   map[string]string // TXT by name, besides the domain's.
		wantAddrs  map[string]string // "A"/"AAAA" joined by name.
		wantInSPFc string            // In the SPF comment.
	}{
		{
			name:     "no transports",
			domain:   "example.org",
			wantSPF:  `"v=spf1 mx ~all"`,
			wantHELO: map[string]string{"mail.example.org.": `"v=spf1 a -all"`},
		},
		{
			name: "direct and socks with IPv4 and IPv6, EHLO as the host",
			extra: `
[transports.direct]
plugin = "transport-direct"
[transports.proxied]
plugin = "transport-socks"
[transports.proxied.config]
address = "127.0.0.1:1080"
remote_ips = ["192.0.2.10", "2001:db8::10"]
`,
			domain:   "EXAMPLE.org.",
			wantSPF:  `"v=spf1 mx ip4:192.0.2.10 ip6:2001:db8::10 ~all"`,
			wantHELO: map[string]string{"mail.example.org.": `"v=spf1 a ip4:192.0.2.10 ip6:2001:db8::10 -all"`},
		},
		{
			name: "two socks transports, one by path, with their own EHLO name; a smarthost",
			extra: `
[transports.b]
plugin = "proxy"
[transports.b.config]
remote_ips = ["2001:db8::20", "::ffff:198.51.100.7"]
remote_hostname = "Out.Example.net"
[transports.a]
plugin = "transport-socks"
[transports.a.config]
remote_ips = ["192.0.2.10"]
remote_hostname = "out.example.net"
[transports.relay]
plugin = "transport-submission"
`,
			domain:  "example.org",
			wantSPF: `"v=spf1 mx ip4:192.0.2.10 ip6:2001:db8::20 ip4:198.51.100.7 ~all"`,
			wantHELO: map[string]string{
				"mail.example.org.": `"v=spf1 a -all"`,
				"out.example.net.":  `"v=spf1 ip4:192.0.2.10 ip6:2001:db8::20 ip4:198.51.100.7 -all"`,
			},
			wantAddrs:  map[string]string{"out.example.net.": "A 192.0.2.10, AAAA 2001:db8::20, A 198.51.100.7"},
			wantInSPFc: `Transport "relay": plugin "transport-submission" may relay`,
		},
		{
			name: "socks without remote_ips is noted, not listed",
			extra: `
[transports.p]
plugin = "transport-socks"
[transports.p.config]
remote_hostname = "out.example.net"
`,
			domain:     "example.org",
			wantSPF:    `"v=spf1 mx ~all"`,
			wantHELO:   map[string]string{"mail.example.org.": `"v=spf1 a -all"`},
			wantInSPFc: `Transport "p": SOCKS transport without remote_ips`,
		},
		{
			name:     "IDNA domain in A-labels",
			domain:   "bücher.example",
			wantSPF:  `"v=spf1 mx ~all"`,
			wantHELO: map[string]string{"mail.example.org.": `"v=spf1 a -all"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Generate(parse(t, tc.extra), tc.domain, nil)
			if err != nil {
				t.Fatal(err)
			}
			d := s.Domain + "."
			if got := find(s, d, "MX"); len(got) != 1 || got[0] != "10 mail.example.org." {
				t.Errorf("MX %q", got)
			}
			if got := find(s, d, "TXT"); len(got) != 1 || got[0] != tc.wantSPF {
				t.Errorf("SPF %q, want %s", got, tc.wantSPF)
			}
			var txtNames, addrNames int
			for _, r := range s.Records {
				switch {
				case r.Type == "TXT" && r.Name != d && !strings.HasPrefix(r.Name, "_"):
					txtNames++
					if r.Data != tc.wantHELO[r.Name] {
						t.Errorf("HELO SPF %s %s, want %s", r.Name, r.Data, tc.wantHELO[r.Name])
					}
				case r.Type == "A" || r.Type == "AAAA":
					addrNames++
				}
			}
			if txtNames != len(tc.wantHELO) {
				t.Errorf("%d HELO SPF records, want %d", txtNames, len(tc.wantHELO))
			}
			for name, want := range tc.wantAddrs {
				var got []string
				for _, r := range s.Records {
					if r.Name == name && (r.Type == "A" || r.Type == "AAAA") {
						got = append(got, r.Type+" "+r.Data)
					}
				}
				if strings.Join(got, ", ") != want {
					t.Errorf("addresses of %s: %q, want %q", name, got, want)
				}
			}
			if tc.wantAddrs == nil && addrNames > 0 {
				t.Errorf("unexpected address records")
			}
			if tc.wantInSPFc != "" && !strings.Contains(s.Records[1].Comment, tc.wantInSPFc) {
				t.Errorf("SPF comment %q lacks %q", s.Records[1].Comment, tc.wantInSPFc)
			}
			if got := find(s, "_dmarc."+d, "TXT"); len(got) != 1 || got[0] != `"v=DMARC1; p=quarantine; rua=mailto:postmaster@`+s.Domain+`"` {
				t.Errorf("DMARC %q", got)
			}
			if got := find(s, "_smtp._tls."+d, "TXT"); len(got) != 1 || got[0] != `"v=TLSRPTv1; rua=mailto:postmaster@`+s.Domain+`"` {
				t.Errorf("TLSRPT %q", got)
			}
			if got := find(s, "_mta-sts."+d, "TXT"); len(got) != 1 || got[0] != `"v=STSv1; id=`+MTASTSID(s.Policy)+`"` {
				t.Errorf("MTA-STS %q", got)
			}
			if len(find(s, "_25._tcp.mail.example.org.", "TLSA")) != 0 || len(s.Notes) != 1 {
				t.Errorf("without a certificate: TLSA published, or notes %q", s.Notes)
			}
			checkZone(t, s)
		})
	}
}

// checkZone parses every record line of s.Zone() as a zone file would.
func checkZone(t *testing.T, s *Set) {
	t.Helper()
	var n int
	for _, l := range strings.Split(s.Zone(), "\n") {
		if l == "" || strings.HasPrefix(l, ";") {
			continue
		}
		rr, err := dns.NewRR(l)
		if err != nil || rr == nil {
			t.Errorf("zone line %q: %v", l, err)
			continue
		}
		if !strings.HasSuffix(rr.Header().Name, ".") || dns.TypeToString[rr.Header().Rrtype] != s.Records[n].Type {
			t.Errorf("zone line %q parsed as %v", l, rr)
		}
		n++
	}
	if n != len(s.Records) {
		t.Errorf("%d record lines in the zone, want %d", n, len(s.Records))
	}
}

func TestDomainErrors(t *testing.T) {
	cfg := parse(t, "")
	for _, d := range []string{"example.net", "", "sub.example.org", "a..b"} {
		if _, err := Generate(cfg, d, nil); err == nil {
			t.Errorf("%q: no error", d)
		} else if d == "example.net" && !errors.Is(err, ErrDomain) {
			t.Errorf("%q: %v, want ErrDomain", d, err)
		}
	}
	bad := []string{
		`remote_ips = ["192.0.2.300"]`,
		`remote_ips = "192.0.2.1"`,
		`remote_ips = [1]`,
		`remote_ips = ["fe80::1%eth0"]`,
		`remote_ips = ["192.0.2.1"]` + "\nremote_hostname = 5",
	}
	for _, b := range bad {
		cfg := parse(t, "[transports.p]\nplugin = \"transport-socks\"\n[transports.p.config]\n"+b+"\n")
		if _, err := Generate(cfg, "example.org", nil); err == nil || !strings.Contains(err.Error(), "transports.p.config.remote_") {
			t.Errorf("%s: error %v", b, err)
		}
	}
}

func TestTLSA(t *testing.T) {
	cfg := parse(t, "")
	for _, selfSigned := range []bool{true, false} {
		cert := newCert(t, selfSigned)
		s, err := Generate(cfg, "example.org", cert)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		want := "3 1 1 " + hex.EncodeToString(sum[:])
		if got := find(s, "_25._tcp.mail.example.org.", "TLSA"); len(got) != 1 || got[0] != want {
			t.Errorf("TLSA %q, want %q", got, want)
		}
		if len(s.Notes) != 0 {
			t.Errorf("notes %q", s.Notes)
		}
		wantMode := "mode: enforce\n"
		if selfSigned {
			wantMode = "mode: testing\n"
		}
		if !strings.Contains(s.Policy, wantMode) {
			t.Errorf("self-signed %v: policy %q", selfSigned, s.Policy)
		}
		checkZone(t, s)
	}
}

func TestMTASTS(t *testing.T) {
	cert := newCert(t, false)
	p1, mode := MTASTSPolicy("mail.example.org", cert)
	want := "version: STSv1\nmode: enforce\nmx: mail.example.org\nmax_age: 604800\n"
	if p1 != want || mode != "enforce" {
		t.Errorf("policy %q mode %q, want %q", p1, mode, want)
	}
	p2, _ := MTASTSPolicy("mail.example.org", newCert(t, false))
	p3, _ := MTASTSPolicy("mx2.example.org", cert)
	id := MTASTSID(p1)
	if MTASTSID(p2) != id {
		t.Errorf("id differs for equal policies")
	}
	if MTASTSID(p3) == id {
		t.Errorf("id equal for another hostname")
	}
	if len(id) < 1 || len(id) > 32 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Errorf("id %q: want 1 to 32 alphanumerics (RFC 8461 §3.1)", id)
	}
	// The record follows the configuration's hostname.
	a, _ := Generate(parse(t, ""), "example.org", cert)
	cfg := parse(t, "")
	cfg.Hostname = "mx2.example.org"
	b, _ := Generate(cfg, "example.org", cert)
	if a.Records[len(a.Records)-3].Data == b.Records[len(b.Records)-3].Data || a.Policy == b.Policy {
		t.Errorf("MTA-STS record unchanged with the hostname: %v", a.Records[len(a.Records)-3])
	}
}

func TestTXTSplit(t *testing.T) {
	var quoted []string
	want := "v=spf1 mx"
	for i := range 20 {
		ip := fmt.Sprintf("2001:db8::%x", i+0x100)
		quoted = append(quoted, `"`+ip+`"`)
		want += " ip6:" + ip
	}
	extra := "[transports.p]\nplugin = \"transport-socks\"\n[transports.p.config]\nremote_ips = [" + strings.Join(quoted, ", ") + "]\n"
	s, err := Generate(parse(t, extra), "example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	rr, err := dns.NewRR(s.Records[1].String())
	if err != nil {
		t.Fatal(err)
	}
	parts := rr.(*dns.TXT).Txt
	if len(parts) < 2 || len(parts[0]) != 255 || strings.Join(parts, "") != want+" ~all" {
		t.Errorf("split SPF %q", parts)
	}
}

// TestDKIM: the records of policy-dkimsign's keys for the domain, by
// selector, and none for another domain's or another plugin's keys.
func TestDKIM(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, rsa bool) (string, string) {
		key, pemData, err := dkimkey.Generate(rsa)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pemData, 0o600); err != nil {
			t.Fatal(err)
		}
		record, err := dkimkey.Record(key.Public())
		if err != nil {
			t.Fatal(err)
		}
		return p, record
	}
	ed, edRecord := write("ed.pem", false)
	rsa, rsaRecord := write("rsa.pem", true)
	other, _ := write("other.pem", false)
	cfg := parse(t, fmt.Sprintf(`[plugins.dkim]
path = "bin/plugins/policy-dkimsign"
[plugins.script]
path = "bin/plugins/policy-script"
[policies.sign]
plugin = "dkim"
[[policies.sign.config.keys]]
domain = "example.org"
selector = "s2"
key_file = %q
[[policies.sign.config.keys]]
domain = "EXAMPLE.org"
selector = "s1"
key_file = %q
[[policies.sign.config.keys]]
domain = "example.net"
selector = "s1"
key_file = %q
[policies.other]
plugin = "script"
[[policies.other.config.keys]]
domain = "example.org"
selector = "s3"
key_file = %q
`, rsa, ed, other, other))
	s, err := Generate(cfg, "example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := find(s, "s1._domainkey.example.org.", "TXT"); len(got) != 1 || got[0] != dkimkey.TXTData(edRecord) {
		t.Errorf("s1: %q", got)
	}
	if got := find(s, "s2._domainkey.example.org.", "TXT"); len(got) != 1 || got[0] != dkimkey.TXTData(rsaRecord) || !strings.Contains(got[0], `" "`) {
		t.Errorf("s2 (RSA, split): %q", got)
	}
	if got := find(s, "s3._domainkey.example.org.", "TXT"); len(got) != 0 {
		t.Errorf("another plugin's key published: %q", got)
	}
	checkZone(t, s)
	if err := os.Remove(ed); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(cfg, "example.org", nil); err == nil || !strings.Contains(err.Error(), "policies.sign.config.keys[1].key_file") {
		t.Errorf("missing key file: %v", err)
	}
}
