// Package clientcert makes and loads the TLS client certificates that log
// a client in by its key, as SASL EXTERNAL does (RFC 4422 appendix A) on a
// server that knows the key (Switchyard's mta tlspubkey). Such a server
// looks only at the public key, so a certificate can be minimal and
// self-signed, and a private key alone is enough: Load makes the
// certificate for it.
package clientcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"
)

// noExpiry is the notAfter of a certificate without a well-defined
// expiration date (RFC 5280 §4.1.2.5).
var noExpiry = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// SelfSigned returns the DER of a minimal certificate for key, signed by
// key: subject commonName (may be empty), a random serial number, valid
// from now to no well-defined expiration, for TLS client authentication.
func SelfSigned(key crypto.Signer, commonName string) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Minute).UTC().Truncate(time.Second), // Some slack for clocks.
		NotAfter:     noExpiry,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("clientcert: self-signing: %w", err)
	}
	return der, nil
}

// Load reads a PEM private key from keyFile and its certificate from
// certFile. Without certFile, a certificate next to the key in keyFile is
// used, else a minimal one is made (SelfSigned).
func Load(certFile, keyFile string) (tls.Certificate, error) {
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	var certPEM []byte
	if certFile != "" {
		if certPEM, err = os.ReadFile(certFile); err != nil {
			return tls.Certificate{}, err
		}
	} else if hasBlock(keyPEM, "CERTIFICATE") {
		certPEM = keyPEM
	}
	if certPEM != nil {
		c, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("clientcert: %w", err)
		}
		return c, nil
	}
	key, err := ParsePrivateKey(keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w", keyFile, err)
	}
	der, err := SelfSigned(key, "")
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// ParsePrivateKey returns the first private key of PEM data: PKCS #8
// ("PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY") or PKCS #1 ("RSA PRIVATE
// KEY"), of type ed25519, ECDSA or RSA.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil, errors.New("no PEM private key")
		}
		var key any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Type, err)
		}
		switch k := key.(type) {
		case ed25519.PrivateKey, *ecdsa.PrivateKey, *rsa.PrivateKey:
			return k.(crypto.Signer), nil
		}
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
}

// hasBlock reports whether PEM data has a block of type typ.
func hasBlock(data []byte, typ string) bool {
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return false
		} else if b.Type == typ {
			return true
		}
	}
}
