// Package testcert makes self-signed TLS server certificates for tests on
// loopback, with the configurations of both ends. For tests only: no
// production package imports it.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

// Cert is a self-signed ECDSA P-256 certificate for Host and 127.0.0.1,
// valid from an hour before it was made to an hour after; Leaf is set.
type Cert struct {
	Host string
	tls.Certificate
}

// New makes a certificate for host.
func New(host string) (*Cert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: host},
		DNSNames:              []string{host},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Cert{Host: host, Certificate: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}}, nil
}

// Once returns a function giving the same certificate for host on every
// call, made on the first; it fails the test if it cannot be made. For a
// package variable shared by the tests of a binary.
func Once(host string) func(testing.TB) *Cert {
	get := sync.OnceValues(func() (*Cert, error) { return New(host) })
	return func(t testing.TB) *Cert {
		t.Helper()
		c, err := get()
		if err != nil {
			t.Fatalf("testcert: %v", err)
		}
		return c
	}
}

// ServerConfig returns a server configuration serving c.
func (c *Cert) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{c.Certificate}}
}

// ClientConfig returns a client configuration that trusts c alone and
// expects c.Host.
func (c *Cert) ClientConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(c.Leaf)
	return &tls.Config{RootCAs: pool, ServerName: c.Host}
}
