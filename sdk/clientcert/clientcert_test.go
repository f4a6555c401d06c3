package clientcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, blocks ...*pem.Block) string {
		t.Helper()
		var b []byte
		for _, bl := range blocks {
			b = append(b, pem.EncodeToMemory(bl)...)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pkcs8 := func(k crypto.Signer) *pem.Block {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	certDER, err := SelfSigned(edKey, "laptop")
	if err != nil {
		t.Fatal(err)
	}
	certBlock := &pem.Block{Type: "CERTIFICATE", Bytes: certDER}

	// Bare keys of each kind: a minimal certificate made for them.
	for name, file := range map[string]string{
		"ed25519 PKCS #8": write("ed.key", pkcs8(edKey)),
		"ECDSA SEC 1":     write("ec.key", &pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}),
		"RSA PKCS #1":     write("rsa.key", &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}),
		"after a comment": write("comment.key", &pem.Block{Type: "COMMENT", Bytes: []byte("x")}, pkcs8(edKey)),
	} {
		c, err := Load("", file)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if c.Leaf == nil || len(c.Certificate) != 1 || c.Leaf.CheckSignature(c.Leaf.SignatureAlgorithm, c.Leaf.RawTBSCertificate, c.Leaf.Signature) != nil {
			t.Errorf("%s: no self-signed certificate", name)
			continue
		}
		if c.Leaf.NotAfter.Year() != 9999 || len(c.Leaf.ExtKeyUsage) != 1 || c.Leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
			t.Errorf("%s: certificate %v, %v", name, c.Leaf.NotAfter, c.Leaf.ExtKeyUsage)
		}
	}

	// A certificate given, in its own file or next to the key.
	for name, c := range map[string][2]string{
		"cert file":     {write("laptop.crt", certBlock), write("laptop.key", pkcs8(edKey))},
		"key then cert": {"", write("both.pem", pkcs8(edKey), certBlock)},
	} {
		got, err := Load(c[0], c[1])
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if string(got.Certificate[0]) != string(certDER) {
			t.Errorf("%s: another certificate", name)
		}
	}

	for name, c := range map[string]struct{ cert, key, want string }{
		"cert of another key": {write("other.crt", certBlock), write("ec2.key", pkcs8(ecKey)), "does not match"},
		"no key":              {"", write("cert-only.pem", certBlock), "rather than a key"},
		"no PEM":              {"", write("empty.key"), "no PEM private key"},
		"garbage key":         {"", write("garbage.key", &pem.Block{Type: "PRIVATE KEY", Bytes: []byte("xx")}), "PRIVATE KEY"},
		"missing key file":    {"", filepath.Join(dir, "absent.key"), "no such file"},
		"missing cert file":   {filepath.Join(dir, "absent.crt"), write("k.key", pkcs8(edKey)), "no such file"},
	} {
		if _, err := Load(c.cert, c.key); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", name, err, c.want)
		}
	}
}
