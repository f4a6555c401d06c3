package certs

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"testing"
)

func TestSelfSigned(t *testing.T) {
	dir := t.TempDir()
	c1, gen, err := Load("", "", true, dir, "mail.example.org")
	if err != nil || !gen {
		t.Fatalf("first load: generated %v, err %v", gen, err)
	}
	leaf, err := x509.ParseCertificate(c1.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("mail.example.org"); err != nil {
		t.Fatalf("certificate not for hostname: %v", err)
	}
	c2, gen, err := Load("", "", true, dir, "mail.example.org")
	if err != nil || gen {
		t.Fatalf("second load: generated %v, err %v", gen, err)
	}
	if string(c1.Certificate[0]) != string(c2.Certificate[0]) {
		t.Fatal("second load generated a new certificate")
	}
	cf, kf := SelfSignedPaths(dir)
	if _, _, err := Load(cf, kf, false, "", ""); err != nil {
		t.Fatalf("loading the files directly: %v", err)
	}
	if _, _, err := Load(filepath.Join(dir, "missing.pem"), kf, false, "", ""); err == nil {
		t.Fatal("missing certificate file loaded")
	}
	if ServerConfig(c1).MinVersion != tls.VersionTLS12 {
		t.Fatal("TLS minimum is not 1.2")
	}
}
