package dane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"
)

// errAny in a test case wants any error.
var errAny = errors.New("any error")

var now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newCert makes a certificate for names valid from notBefore to notAfter,
// signed by parent, or self-signed when parent is nil.
func newCert(t *testing.T, cn string, names []string, isCA bool, notBefore, notAfter time.Time, parent *testCert) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		DNSNames:              names,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  isCA,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCert{cert: c, key: key}
}

type pki struct {
	root, inter, leaf, expired, other *testCert
}

func newPKI(t *testing.T) pki {
	from, until := now.Add(-24*time.Hour), now.Add(365*24*time.Hour)
	root := newCert(t, "Test Root", nil, true, from, until, nil)
	inter := newCert(t, "Test Intermediate", nil, true, from, until, root)
	return pki{
		root:    root,
		inter:   inter,
		leaf:    newCert(t, "mx.example.org", []string{"mx.example.org"}, false, from, until, inter),
		expired: newCert(t, "mx.example.org", []string{"mx.example.org"}, false, from, now.Add(-time.Hour), inter),
		other:   newCert(t, "other", []string{"other.example"}, false, from, until, nil),
	}
}

func record(t *testing.T, usage, selector, matching uint8, c *testCert) TLSA {
	t.Helper()
	r, err := NewRecord(usage, selector, matching, c.cert)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestVerifyAllCombinations(t *testing.T) {
	p := newPKI(t)
	names := []string{"example.org", "mx.example.org."}
	fullChain := []*x509.Certificate{p.leaf.cert, p.inter.cert, p.root.cert}
	for _, sel := range []uint8{SelectorCert, SelectorSPKI} {
		for _, mt := range []uint8{MatchFull, MatchSHA256, MatchSHA512} {
			for _, tc := range []struct {
				name    string
				usage   uint8
				target  *testCert
				chain   []*x509.Certificate
				wantErr error
			}{
				{"ee", UsageDANEEE, p.leaf, fullChain, nil},
				{"ee other key", UsageDANEEE, p.other, fullChain, ErrNoMatch},
				{"ta root in chain", UsageDANETA, p.root, fullChain, nil},
				{"ta intermediate in chain", UsageDANETA, p.inter, fullChain, nil},
				{"ta not a chain cert", UsageDANETA, p.other, fullChain, errAny},
				{"ta on leaf", UsageDANETA, p.leaf, fullChain, ErrNoMatch},
				{"pkix-ee unusable", UsagePKIXEE, p.leaf, fullChain, ErrNoUsable},
				{"pkix-ta unusable", UsagePKIXTA, p.root, fullChain, ErrNoUsable},
			} {
				r := record(t, tc.usage, sel, mt, tc.target)
				res, err := Verify([]TLSA{r}, tc.chain, names, now)
				if tc.wantErr == errAny && err != nil {
					continue
				}
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("%s %s: err %v, want %v", tc.name, r, err, tc.wantErr)
					continue
				}
				if err == nil && res.Record.String() != r.String() {
					t.Errorf("%s: result record %s, want %s", tc.name, res.Record, r)
				}
				if err == nil && tc.usage == UsageDANETA && res.Name != "mx.example.org" {
					t.Errorf("%s: matched name %q", tc.name, res.Name)
				}
				// One flipped bit in a digest never matches, nor a
				// truncated certificate or key.
				bad := r
				bad.Data = append([]byte(nil), r.Data...)
				if mt == MatchFull {
					bad.Data = bad.Data[:len(bad.Data)-1]
				} else {
					bad.Data[len(bad.Data)-1] ^= 1
				}
				if _, err := Verify([]TLSA{bad}, tc.chain, names, now); err == nil {
					t.Errorf("%s: corrupted record %s verified", tc.name, bad)
				}
			}
		}
	}
}

func TestVerifyRules(t *testing.T) {
	p := newPKI(t)
	ee := record(t, UsageDANEEE, SelectorSPKI, MatchSHA256, p.leaf)
	eeExpired := record(t, UsageDANEEE, SelectorSPKI, MatchSHA256, p.expired)
	taSPKI := record(t, UsageDANETA, SelectorSPKI, MatchSHA256, p.inter)
	taFull := record(t, UsageDANETA, SelectorCert, MatchFull, p.inter)
	pkix := record(t, UsagePKIXEE, SelectorSPKI, MatchSHA256, p.leaf)
	leafOnly := []*x509.Certificate{p.leaf.cert}
	withTA := []*x509.Certificate{p.leaf.cert, p.inter.cert}
	good := []string{"mx.example.org"}
	wrong := []string{"example.net", "mx.example.net"}

	for _, tc := range []struct {
		name    string
		records []TLSA
		chain   []*x509.Certificate
		names   []string
		at      time.Time
		wantErr error
	}{
		{"ee wrong name", []TLSA{ee}, leafOnly, wrong, now, nil},
		{"ee no names", []TLSA{ee}, leafOnly, nil, now, nil},
		{"ee expired", []TLSA{eeExpired}, []*x509.Certificate{p.expired.cert}, good, now, nil},
		{"ee before validity", []TLSA{ee}, leafOnly, good, now.Add(-48 * time.Hour), nil},
		{"ta in chain", []TLSA{taSPKI}, withTA, good, now, nil},
		{"ta in chain wrong name", []TLSA{taSPKI}, withTA, wrong, now, ErrName},
		{"ta not in chain, spki", []TLSA{taSPKI}, leafOnly, good, now, ErrNoMatch},
		{"ta not in chain, full cert in record", []TLSA{taFull}, leafOnly, good, now, nil},
		{"ta not in chain wrong name", []TLSA{taFull}, leafOnly, wrong, now, ErrName},
		{"ta expired leaf", []TLSA{taSPKI}, []*x509.Certificate{p.expired.cert, p.inter.cert}, good, now, nil},
		{"ta leaf not yet valid", []TLSA{taSPKI}, withTA, good, now.Add(-48 * time.Hour), nil},
		{"unusable and ee", []TLSA{pkix, ee}, leafOnly, nil, now, nil},
		{"mismatching ee, matching ta", []TLSA{eeExpired, taSPKI}, withTA, good, now, nil},
		{"unusable only", []TLSA{pkix}, leafOnly, good, now, ErrNoUsable},
		{"no records", nil, leafOnly, good, now, ErrNoUsable},
		{"no certificates", []TLSA{ee}, nil, good, now, ErrNoCerts},
	} {
		_, err := Verify(tc.records, tc.chain, tc.names, tc.at)
		switch {
		case tc.name == "ta expired leaf" || tc.name == "ta leaf not yet valid":
			// Normal validity checks apply to DANE-TA (RFC 7672 §3.1.2).
			var invalid x509.CertificateInvalidError
			if !errors.As(err, &invalid) || invalid.Reason != x509.Expired {
				t.Errorf("%s: err %v, want an expired certificate error", tc.name, err)
			}
		case !errors.Is(err, tc.wantErr):
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.wantErr)
		}
	}
}

func TestWildcardName(t *testing.T) {
	p := newPKI(t)
	from, until := now.Add(-time.Hour), now.Add(time.Hour)
	wild := newCert(t, "wild", []string{"*.example.org"}, false, from, until, p.inter)
	ta := record(t, UsageDANETA, SelectorCert, MatchSHA256, p.inter)
	chain := []*x509.Certificate{wild.cert, p.inter.cert}
	if _, err := Verify([]TLSA{ta}, chain, []string{"mx.example.org"}, now); err != nil {
		t.Errorf("wildcard leftmost label: %v", err)
	}
	// A wildcard covers one label only (RFC 7672 §3.2.3, RFC 6125 §6.4.3).
	if _, err := Verify([]TLSA{ta}, chain, []string{"a.mx.example.org", "example.org"}, now); !errors.Is(err, ErrName) {
		t.Errorf("wildcard over two labels: err %v, want ErrName", err)
	}
}

func TestUsable(t *testing.T) {
	for _, tc := range []struct {
		records []TLSA
		want    bool
	}{
		{nil, false},
		{[]TLSA{{Usage: 0, Selector: 1, MatchingType: 1}, {Usage: 1, Selector: 0, MatchingType: 0}}, false},
		{[]TLSA{{Usage: 3, Selector: 2, MatchingType: 1}}, false},
		{[]TLSA{{Usage: 3, Selector: 1, MatchingType: 3}}, false},
		{[]TLSA{{Usage: 4, Selector: 1, MatchingType: 1}}, false},
		{[]TLSA{{Usage: 1, Selector: 1, MatchingType: 1}, {Usage: 2, Selector: 0, MatchingType: 2}}, true},
		{[]TLSA{{Usage: 3, Selector: 1, MatchingType: 1}}, true},
	} {
		if got := Usable(tc.records); got != tc.want {
			t.Errorf("Usable(%v) = %v, want %v", tc.records, got, tc.want)
		}
	}
}

func TestNewRecordString(t *testing.T) {
	p := newPKI(t)
	r := record(t, 3, 1, 1, p.leaf)
	if len(r.Data) != 32 || r.String()[:6] != "3 1 1 " || len(r.String()) != 6+64 {
		t.Errorf("3 1 1 record %q", r)
	}
	if _, err := NewRecord(3, 2, 1, p.leaf.cert); err == nil {
		t.Error("unknown selector accepted")
	}
	if _, err := NewRecord(3, 1, 9, p.leaf.cert); err == nil {
		t.Error("unknown matching type accepted")
	}
}

// TestConfigHandshake runs real TLS handshakes over loopback with Config.
func TestConfigHandshake(t *testing.T) {
	p := newPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvCfg := &tls.Config{Certificates: []tls.Certificate{{
		Certificate: [][]byte{p.leaf.cert.Raw, p.inter.cert.Raw},
		PrivateKey:  p.leaf.key,
	}}}
	serverErrs := make(chan error)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := tls.Server(c, srvCfg)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			err = tc.Handshake()
			if err == nil {
				_, err = tc.Write([]byte("ok"))
			}
			tc.Close()
			serverErrs <- err
		}
	}()

	ee := record(t, UsageDANEEE, SelectorSPKI, MatchSHA256, p.leaf)
	ta := record(t, UsageDANETA, SelectorSPKI, MatchSHA512, p.root)
	taInter := record(t, UsageDANETA, SelectorCert, MatchSHA256, p.inter)
	wrongEE := record(t, UsageDANEEE, SelectorSPKI, MatchSHA256, p.other)
	good := []string{"example.org", "mx.example.org"}
	for _, tc := range []struct {
		name    string
		records []TLSA
		names   []string
		wantErr error
	}{
		{"dane-ee", []TLSA{ee}, nil, nil},
		{"dane-ta intermediate", []TLSA{taInter}, good, nil},
		{"dane-ta wrong name", []TLSA{taInter}, []string{"example.net"}, ErrName},
		{"dane-ta root not sent", []TLSA{ta}, good, ErrNoMatch},
		{"mismatch", []TLSA{wrongEE}, good, ErrNoMatch},
		{"unusable", []TLSA{{Usage: UsagePKIXEE, Selector: 1, MatchingType: 1, Data: ee.Data}}, good, ErrNoUsable},
	} {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), Config(tc.records, tc.names, "mx.example.org"))
		if err == nil {
			buf := make([]byte, 2)
			_, err = conn.Read(buf)
			if err == nil && string(buf) != "ok" {
				t.Errorf("%s: read %q", tc.name, buf)
			}
			conn.Close()
		}
		serr := <-serverErrs
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: handshake err %v, want %v", tc.name, err, tc.wantErr)
		}
		if (serr == nil) != (tc.wantErr == nil) {
			t.Errorf("%s: server err %v, want failure %v", tc.name, serr, tc.wantErr != nil)
		}
	}
}
