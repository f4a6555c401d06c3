package dkimkey

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// parseRecord reads a key record's tags and its public key.
func parseRecord(t *testing.T, record string) (map[string]string, crypto.PublicKey) {
	t.Helper()
	tags := map[string]string{}
	for tag := range strings.SplitSeq(record, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(tag), "=")
		if !ok {
			t.Fatalf("record %q: tag %q without =", record, tag)
		}
		tags[k] = v
	}
	p, err := base64.StdEncoding.DecodeString(tags["p"])
	if err != nil {
		t.Fatalf("record %q: p=: %v", record, err)
	}
	if tags["k"] == "ed25519" {
		if len(p) != ed25519.PublicKeySize {
			t.Fatalf("ed25519 p= of %d bytes, want the raw 32 (RFC 8463 §4)", len(p))
		}
		return tags, ed25519.PublicKey(p)
	}
	pub, err := x509.ParsePKIXPublicKey(p)
	if err != nil {
		t.Fatalf("rsa p= is not a SubjectPublicKeyInfo: %v", err)
	}
	return tags, pub
}

func TestGenerate(t *testing.T) {
	for _, tc := range []struct {
		rsa  bool
		k    string
		bits int
	}{{false, "ed25519", 0}, {true, "rsa", GenerateRSABits}} {
		key, pemData, err := Generate(tc.rsa)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := pem.Decode(pemData); b == nil || b.Type != "PRIVATE KEY" {
			t.Fatalf("%s: PEM %q, want a PRIVATE KEY block", tc.k, pemData)
		}
		back, err := Parse(pemData)
		if err != nil {
			t.Fatalf("%s: parsing what Generate wrote: %v", tc.k, err)
		}
		if !back.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
			t.Fatalf("%s: parsed another key", tc.k)
		}
		if r, ok := key.(*rsa.PrivateKey); ok != tc.rsa || ok && r.N.BitLen() != tc.bits {
			t.Fatalf("%s: generated %T", tc.k, key)
		}
		record, err := Record(key.Public())
		if err != nil {
			t.Fatal(err)
		}
		if want := "v=DKIM1; k=" + tc.k + "; p="; !strings.HasPrefix(record, want) {
			t.Fatalf("record %q, want it to start with %q", record, want)
		}
		tags, pub := parseRecord(t, record)
		if len(tags) != 3 || !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
			t.Fatalf("record %q: tags %v, or another public key", record, tags)
		}
	}
}

func pemBlock(typ string, der []byte, headers map[string]string) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Headers: headers, Bytes: der})
}

func TestParse(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edDER, _ := x509.MarshalPKCS8PrivateKey(edKey)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	ecSEC1, _ := x509.MarshalECPrivateKey(ecKey)
	small, err := os.ReadFile("testdata/rsa512.pem") // openssl genrsa -traditional 512
	if err != nil {
		t.Fatal(err)
	}
	cert := pemBlock("CERTIFICATE", []byte("not parsed"), nil)

	for _, tc := range []struct {
		name string
		data []byte
		want crypto.PublicKey // Nil: an error containing err.
		err  string
	}{
		{"ed25519 PKCS #8", pemBlock("PRIVATE KEY", edDER, nil), edKey.Public(), ""},
		{"rsa PKCS #8", pemBlock("PRIVATE KEY", rsaDER, nil), rsaKey.Public(), ""},
		{"rsa PKCS #1", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey), nil), rsaKey.Public(), ""},
		{"after a certificate", append(append([]byte("a comment\n"), cert...), pemBlock("PRIVATE KEY", edDER, nil)...), edKey.Public(), ""},
		{"empty", nil, nil, "no PEM"},
		{"not PEM", edDER, nil, "no PEM"},
		{"certificate only", cert, nil, "no PEM"},
		{"two keys", append(pemBlock("PRIVATE KEY", edDER, nil), pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey), nil)...), nil, "more than one private key"},
		{"PKCS #8 encrypted", pemBlock("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}, nil), nil, "encrypted"},
		{"PEM encrypted", pemBlock("RSA PRIVATE KEY", []byte{1, 2, 3}, map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}), nil, "encrypted"},
		{"ecdsa PKCS #8", pemBlock("PRIVATE KEY", ecDER, nil), nil, "*ecdsa.PrivateKey keys cannot sign DKIM"},
		{"ecdsa SEC 1", pemBlock("EC PRIVATE KEY", ecSEC1, nil), nil, `"EC PRIVATE KEY"`},
		{"corrupt DER", pemBlock("PRIVATE KEY", edDER[:len(edDER)-1], nil), nil, "PRIVATE KEY:"},
		{"PKCS #1 in a PKCS #8 block", pemBlock("PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey), nil), nil, "PRIVATE KEY:"},
		{"rsa 512 bits", small, nil, "RSA key of 512 bits; DKIM needs at least 1024"},
	} {
		key, err := Parse(tc.data)
		if tc.want == nil {
			if err == nil || !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %T, %v; want an ErrKey containing %q", tc.name, key, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
		} else if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(tc.want) {
			t.Errorf("%s: another key", tc.name)
		}
	}
}

func TestRSASizes(t *testing.T) {
	if testing.Short() {
		t.Skip("generates an RSA key of 4097 bits")
	}
	big, err := rsa.GenerateKey(rand.Reader, 4097)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(big)
	if _, err := Parse(pemBlock("PRIVATE KEY", der, nil)); err == nil || !strings.Contains(err.Error(), "4097 bits") {
		t.Errorf("4097-bit key: %v, want an error", err)
	}
	if _, err := Record(&big.PublicKey); !errors.Is(err, ErrKey) {
		t.Errorf("record of a 4097-bit key: %v, want an error", err)
	}
	if _, err := Record(&rsa.PublicKey{}); !errors.Is(err, ErrKey) {
		t.Errorf("record of an empty RSA key: %v, want an error", err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := Record(ec.Public()); !errors.Is(err, ErrKey) {
		t.Errorf("record of an ecdsa key: %v, want an error", err)
	}
	if _, err := Record(ed25519.PublicKey("short")); !errors.Is(err, ErrKey) {
		t.Errorf("record of a short ed25519 key: %v, want an error", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	key, pemData, err := Generate(false)
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.pem")
	os.WriteFile(good, pemData, 0o600)
	k, err := Load(good)
	if err != nil || !k.Public().(ed25519.PublicKey).Equal(key.Public()) {
		t.Fatalf("load: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "absent.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent file: %v", err)
	}
	huge := filepath.Join(dir, "huge.pem")
	os.WriteFile(huge, append(bytes.Repeat([]byte("#"), maxKeyFile), pemData...), 0o600)
	if _, err := Load(huge); !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge file: %v", err)
	}
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("hello"), 0o600)
	if _, err := Load(bad); !errors.Is(err, ErrKey) || !strings.HasPrefix(err.Error(), bad+": ") {
		t.Errorf("not a key: %v, want an ErrKey naming the file", err)
	}
}

// A record of an RSA key of 2048 or 4096 bits does not fit one TXT string:
// the zone-file line splits it, and a zone parser joins it back.
func TestZoneRecordRSA(t *testing.T) {
	for _, tc := range []struct {
		bits, strings int
	}{{2048, 2}, {4096, 3}} {
		if tc.bits == 4096 && testing.Short() {
			continue
		}
		key, err := rsa.GenerateKey(rand.Reader, tc.bits)
		if err != nil {
			t.Fatal(err)
		}
		record, err := Record(key.Public())
		if err != nil {
			t.Fatal(err)
		}
		line := ZoneRecord("sel", "Example.org.", record)
		if want := "sel._domainkey.Example.org. IN TXT \"v=DKIM1; k=rsa; p=MII"; !strings.HasPrefix(line, want) {
			t.Fatalf("%d bits: %q, want it to start with %q", tc.bits, line, want)
		}
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatalf("%d bits: zone parser: %v\n%s", tc.bits, err, line)
		}
		txt := rr.(*dns.TXT)
		if len(txt.Txt) != tc.strings {
			t.Errorf("%d bits: %d strings, want %d", tc.bits, len(txt.Txt), tc.strings)
		}
		for i, s := range txt.Txt {
			if len(s) > 255 || i < len(txt.Txt)-1 && len(s) != 255 {
				t.Errorf("%d bits: string %d of %d octets", tc.bits, i, len(s))
			}
		}
		joined := strings.Join(txt.Txt, "")
		if joined != record {
			t.Fatalf("%d bits: joined %q, want %q", tc.bits, joined, record)
		}
		_, pub := parseRecord(t, joined)
		if !key.PublicKey.Equal(pub) {
			t.Fatalf("%d bits: the record holds another key", tc.bits)
		}
		// On the wire too: each string's length octet.
		buf := make([]byte, 2048)
		if _, err := dns.PackRR(rr, buf, 0, nil, false); err != nil {
			t.Fatalf("%d bits: packing: %v", tc.bits, err)
		}
	}
}

func TestTXTData(t *testing.T) {
	a255 := strings.Repeat("a", 255)
	for _, tc := range []struct {
		in, want string
	}{
		{"", `""`},
		{"v=DKIM1; p=", `"v=DKIM1; p="`},
		{a255, `"` + a255 + `"`},
		{a255 + "b", `"` + a255 + `" "b"`},
		{`q"b\` + "\x00\xff", `"q\"b\\\000\255"`},
		{strings.Repeat(`"`, 256), `"` + strings.Repeat(`\"`, 255) + `" "\""`},
	} {
		got := TXTData(tc.in)
		if got != tc.want {
			t.Errorf("TXTData(%q) = %q, want %q", tc.in, got, tc.want)
			continue
		}
		rr, err := dns.NewRR("x. IN TXT " + got)
		if err != nil {
			t.Errorf("%q: zone parser: %v", got, err)
			continue
		}
		// miekg/dns keeps escapes in its strings; pack and unpack to get octets.
		buf := make([]byte, 4096)
		n, err := dns.PackRR(rr, buf, 0, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		var wire []byte
		for rd := buf[n-int(rr.Header().Rdlength) : n]; len(rd) > 0; rd = rd[1+int(rd[0]):] {
			wire = append(wire, rd[1:1+int(rd[0])]...)
		}
		if string(wire) != tc.in {
			t.Errorf("%q: on the wire %q, want %q", got, wire, tc.in)
		}
	}
}

func TestCheckName(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, tc := range []struct {
		selector, domain string
		ascii            string // "": an error containing err.
		err              string
	}{
		{"s1", "example.org", "example.org", ""},
		{"2026-01.mail", "Example.ORG.", "example.org", ""},
		{"s", "bücher.example", "xn--bcher-kva.example", ""},
		{"", "example.org", "", "empty selector"},
		{"a_b", "example.org", "", `character '_'`},
		{"-a", "example.org", "", "hyphen"},
		{"a.", "example.org", "", "empty or over-long label"},
		{long + "a", "example.org", "", "over-long label"},
		{"s", "exa mple.org", "", "invalid domain"},
		{"s", "", "", "invalid domain"},
		{long + "." + long, long + "." + long + ".org", "", "over 253 octets"},
	} {
		d, err := CheckName(tc.selector, tc.domain)
		if tc.ascii != "" {
			if err != nil || d.ASCII != tc.ascii {
				t.Errorf("CheckName(%q, %q) = %q, %v; want %q", tc.selector, tc.domain, d.ASCII, err, tc.ascii)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("CheckName(%q, %q) = %v, want an error containing %q", tc.selector, tc.domain, err, tc.err)
		}
	}
}

func TestZoneRecordFile(t *testing.T) {
	dir := t.TempDir()
	key, pemData, _ := Generate(false)
	path := filepath.Join(dir, "k.pem")
	os.WriteFile(path, pemData, 0o600)
	line, err := ZoneRecordFile(path, "s1", "BÜCHER.example")
	if err != nil {
		t.Fatal(err)
	}
	record, _ := Record(key.Public())
	if want := `s1._domainkey.xn--bcher-kva.example. IN TXT "` + record + `"`; line != want {
		t.Fatalf("got %q, want %q", line, want)
	}
	if _, err := ZoneRecordFile(path, "s_1", "example.org"); err == nil {
		t.Errorf("bad selector: no error")
	}
	if _, err := ZoneRecordFile(filepath.Join(dir, "absent"), "s1", "example.org"); err == nil {
		t.Errorf("absent key file: no error")
	}
}

// FuzzParse: key files are the operator's, but a bad one gets an error,
// never a panic, and a key that parses can sign and be published.
func FuzzParse(f *testing.F) {
	_, pemData, _ := Generate(false)
	f.Add(pemData)
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nMA==\n-----END RSA PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nMA==\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrKey) {
				t.Fatalf("error %v does not wrap ErrKey", err)
			}
			return
		}
		if _, err := Record(key.Public()); err != nil {
			t.Fatalf("parsed key without a record: %v", err)
		}
	})
}
