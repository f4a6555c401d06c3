package store

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"
)

func selfSigned(t *testing.T, key crypto.Signer, cn string) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewTLSPublicKey(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	now := time.Now()
	for _, tc := range []struct {
		key      crypto.Signer
		typ      string
		cn, name string
		want     string
	}{
		{ed, "ed25519", "laptop", "", "laptop"},
		{ec, "ecdsa-P-384", "phone", "my phone", "my phone"},
		{rs, "rsa-2048", "", "", ""},
	} {
		cert := selfSigned(t, tc.key, tc.cn)
		k, err := NewTLSPublicKey(cert, "alice", "alice@example.org", tc.name, true, now)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		if k.Type != tc.typ || k.Name != tc.want || k.Fingerprint != TLSFingerprint(sum[:]) || len(k.Fingerprint) != 43 ||
			!k.NoIMAPPreauth || string(k.CertificateDER) != string(cert.Raw) || !k.Created.Equal(now) {
			t.Errorf("%s: %+v", tc.typ, k)
		}
	}
}

func TestTLSPublicKeys(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	_, ed2, _ := ed25519.GenerateKey(rand.Reader)
	t0 := time.Now().Truncate(time.Second)
	a, err := NewTLSPublicKey(selfSigned(t, ed, "laptop"), "alice", "alice@example.org", "", false, t0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewTLSPublicKey(selfSigned(t, ed2, "phone"), "bob", "bob@example.org", "", false, t0.Add(time.Second))
	for _, k := range []TLSPublicKey{a, b} {
		if err := s.AddTLSPublicKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	// The same key again, for any account, in another certificate.
	again, _ := NewTLSPublicKey(selfSigned(t, ed, "renewed"), "bob", "bob@example.org", "", false, t0)
	if err := s.AddTLSPublicKey(ctx, again); !errors.Is(err, ErrKeyExists) {
		t.Errorf("adding a key twice: %v, want ErrKeyExists", err)
	}
	if l, err := s.TLSPublicKeys(ctx, ""); err != nil || len(l) != 2 || l[0].Account != "alice" || l[1].Account != "bob" {
		t.Errorf("all keys: %v %+v", err, l)
	}
	if l, err := s.TLSPublicKeys(ctx, "bob"); err != nil || len(l) != 1 || l[0].Name != "phone" {
		t.Errorf("bob's keys: %v %+v", err, l)
	}

	if err := s.SetTLSPublicKeyPreauth(ctx, a.Fingerprint, false); err != nil {
		t.Fatal(err)
	}
	if k, err := s.TLSPublicKey(ctx, a.Fingerprint); err != nil || !k.NoIMAPPreauth || k.Name != "laptop" {
		t.Errorf("after SetTLSPublicKeyPreauth false: %v %+v", err, k)
	}

	// Uses are recorded at most once a minute.
	used := t0.Add(time.Hour)
	for _, u := range []time.Time{used, used.Add(30 * time.Second)} {
		if err := s.TLSPublicKeyUsed(ctx, a.Fingerprint, u); err != nil {
			t.Fatal(err)
		}
	}
	if k, _ := s.TLSPublicKey(ctx, a.Fingerprint); !k.LastUsed.Equal(used) {
		t.Errorf("LastUsed %v, want %v", k.LastUsed, used)
	}
	if err := s.TLSPublicKeyUsed(ctx, a.Fingerprint, used.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if k, _ := s.TLSPublicKey(ctx, a.Fingerprint); !k.LastUsed.Equal(used.Add(2 * time.Minute)) {
		t.Errorf("LastUsed %v, want two minutes later", k.LastUsed)
	}

	if err := s.RemoveTLSPublicKey(ctx, a.Fingerprint); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"get":         func() error { _, err := s.TLSPublicKey(ctx, a.Fingerprint); return err }(),
		"remove":      s.RemoveTLSPublicKey(ctx, a.Fingerprint),
		"set-preauth": s.SetTLSPublicKeyPreauth(ctx, a.Fingerprint, true),
		"used":        s.TLSPublicKeyUsed(ctx, a.Fingerprint, used),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s after remove: %v, want ErrNotFound", name, err)
		}
	}
	if l, _ := s.TLSPublicKeys(ctx, "alice"); len(l) != 0 {
		t.Errorf("alice's keys after remove: %+v", l)
	}
}
