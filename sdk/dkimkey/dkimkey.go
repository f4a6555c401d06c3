// Package dkimkey makes, reads and publishes DKIM signing keys (RFC 6376):
// ed25519 keys (RFC 8463) or RSA keys of 1024 to 4096 bits (RFC 8301 §3.2),
// kept as PEM files, and the TXT record of a public key that verifiers find
// at SELECTOR._domainkey.DOMAIN (RFC 6376 §3.6.2.1).
//
//	signer, pemData, err := dkimkey.Generate(false) // ed25519
//	record, err := dkimkey.Record(signer.Public())  // "v=DKIM1; k=ed25519; p=..."
//	line := dkimkey.ZoneRecord("2026a", "example.org", record)
//	// 2026a._domainkey.example.org. IN TXT "v=DKIM1; k=ed25519; p=..."
package dkimkey

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

const (
	// MinRSABits is the smallest RSA key accepted: RFC 8301 §3.2 has
	// signers use at least 1024 bits and verifiers refuse smaller keys.
	MinRSABits = 1024
	// MaxRSABits is the largest RSA key accepted: verifiers must handle
	// keys up to 4096 bits (RFC 8301 §3.2), not beyond, so a larger key
	// would sign mail that some cannot verify.
	MaxRSABits = 4096
	// GenerateRSABits is the size of the RSA keys Generate makes, as RFC
	// 8301 §3.2 advises signers ("SHOULD use RSA keys of at least 2048
	// bits").
	GenerateRSABits = 2048
	// maxKeyFile bounds what Load reads: a PEM RSA key of 16384 bits is
	// under 13 KB.
	maxKeyFile = 1 << 20
	// maxTXTString is the longest character-string of a TXT record (RFC
	// 1035 §3.3: a length octet, then that many octets).
	maxTXTString = 255
	// maxName is the longest domain name in presentation form without the
	// trailing dot (RFC 1035 §2.3.4: 255 octets on the wire).
	maxName = 253
)

// ErrKey is the error of key data that is not a usable DKIM private key.
var ErrKey = errors.New("dkimkey: unusable key")

// Generate makes a new signing key: ed25519 (RFC 8463), or RSA of
// GenerateRSABits bits if rsaKey. It returns the key and its PKCS #8 PEM
// encoding ("PRIVATE KEY"), to write to a file only its owner reads.
func Generate(rsaKey bool) (crypto.Signer, []byte, error) {
	var key crypto.Signer
	if rsaKey {
		k, err := rsa.GenerateKey(rand.Reader, GenerateRSABits)
		if err != nil {
			return nil, nil, fmt.Errorf("dkimkey: generating an RSA key: %w", err)
		}
		key = k
	} else {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("dkimkey: generating an ed25519 key: %w", err)
		}
		key = k
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("dkimkey: encoding the key: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Load reads the private key in the PEM file at path, as Parse does.
func Load(path string) (crypto.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dkimkey: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("dkimkey: reading %s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes, not a PEM key file", ErrKey, path, maxKeyFile)
	}
	k, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// Parse returns the private key of PEM data: a "PRIVATE KEY" block (PKCS #8,
// RFC 5208) holding an ed25519 or RSA key, or an "RSA PRIVATE KEY" block
// (PKCS #1, RFC 8017 Appendix A.1.2), as openssl genrsa -traditional and
// older tools write. Other PEM blocks, such as a certificate, are skipped;
// the data must hold exactly one private key. Encrypted keys, other key
// types (DKIM has no ECDSA, RFC 8463 §3) and RSA keys under MinRSABits or
// over MaxRSABits are errors wrapping ErrKey.
func Parse(data []byte) (crypto.Signer, error) {
	var found *pem.Block
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		switch {
		case b.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED"):
			return nil, fmt.Errorf("%w: the key is encrypted; write it unencrypted (openssl pkey -in KEY -out PLAIN) and protect the file instead", ErrKey)
		case b.Type == "PRIVATE KEY" || b.Type == "RSA PRIVATE KEY":
			if found != nil {
				return nil, fmt.Errorf("%w: more than one private key in the PEM data", ErrKey)
			}
			found = b
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			// "EC PRIVATE KEY", "DSA PRIVATE KEY", "OPENSSH PRIVATE KEY".
			return nil, fmt.Errorf("%w: PEM block %q: want an ed25519 or RSA key as \"PRIVATE KEY\" (PKCS #8) or \"RSA PRIVATE KEY\" (PKCS #1)", ErrKey, b.Type)
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: no PEM \"PRIVATE KEY\" or \"RSA PRIVATE KEY\" block", ErrKey)
	}
	var key any
	var err error
	if found.Type == "RSA PRIVATE KEY" {
		key, err = x509.ParsePKCS1PrivateKey(found.Bytes)
	} else {
		key, err = x509.ParsePKCS8PrivateKey(found.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKey, found.Type, err)
	}
	return checkKey(key)
}

// checkKey returns key as a signer if DKIM can use it.
func checkKey(key any) (crypto.Signer, error) {
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < MinRSABits {
			return nil, fmt.Errorf("%w: RSA key of %d bits; DKIM needs at least %d (RFC 8301 §3.2), and %d are advised", ErrKey, bits, MinRSABits, GenerateRSABits)
		} else if bits > MaxRSABits {
			return nil, fmt.Errorf("%w: RSA key of %d bits; verifiers need handle no more than %d (RFC 8301 §3.2)", ErrKey, bits, MaxRSABits)
		}
		return k, nil
	}
	return nil, fmt.Errorf("%w: %T keys cannot sign DKIM; want ed25519 (RFC 8463) or RSA (RFC 6376 §3.3)", ErrKey, key)
}

// Record returns the DKIM key record of pub, an ed25519.PublicKey or an
// *rsa.PublicKey, to publish as a TXT record at SELECTOR._domainkey.DOMAIN:
// "v=DKIM1; k=ed25519; p=" and the base64 of the 32-byte key itself (RFC
// 8463 §4), or "v=DKIM1; k=rsa; p=" and the base64 of its DER
// SubjectPublicKeyInfo (RFC 6376 §3.6.1, as OpenDKIM and every verifier
// takes it).
func Record(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", fmt.Errorf("%w: ed25519 public key of %d bytes", ErrKey, len(k))
		}
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(k), nil
	case *rsa.PublicKey:
		if k.N == nil || k.N.BitLen() < MinRSABits || k.N.BitLen() > MaxRSABits {
			return "", fmt.Errorf("%w: RSA public key not of %d to %d bits (RFC 8301 §3.2)", ErrKey, MinRSABits, MaxRSABits)
		}
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrKey, err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	}
	return "", fmt.Errorf("%w: %T public keys cannot verify DKIM", ErrKey, pub)
}

// Name returns the owner name of the key record of selector and domain,
// absolute: "SELECTOR._domainkey.DOMAIN." (RFC 6376 §3.6.2.1). domain is in
// A-labels; a trailing dot on it is dropped.
func Name(selector, domain string) string {
	return selector + "._domainkey." + strings.TrimSuffix(domain, ".") + "."
}

// TXTData returns record as the RDATA of a TXT record in a zone file: quoted
// character-strings of at most 255 octets each (RFC 1035 §3.3.14), which
// verifiers join with nothing in between (RFC 6376 §3.6.2.2). A quote or a
// backslash is escaped with a backslash, any other octet outside printable
// ASCII as \DDD (RFC 1035 §5.1); escapes are never split.
func TXTData(record string) string {
	var b strings.Builder
	for first := true; first || record != ""; first = false {
		n := min(len(record), maxTXTString)
		if !first {
			b.WriteByte(' ')
		}
		b.WriteByte('"')
		for i := 0; i < n; i++ {
			switch c := record[i]; {
			case c == '"' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c < 0x20 || c >= 0x7f:
				fmt.Fprintf(&b, "\\%03d", c)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
		record = record[n:]
	}
	return b.String()
}

// ZoneRecord returns the zone-file line that publishes record for selector
// and domain, without a TTL (the zone's $TTL applies) or a line end:
//
//	SELECTOR._domainkey.DOMAIN. IN TXT "v=DKIM1; k=rsa; p=MIIB..." "...AQAB"
//
// domain is in A-labels; see Name and TXTData.
func ZoneRecord(selector, domain, record string) string {
	return Name(selector, domain) + " IN TXT " + TXTData(record)
}

// ZoneRecordFile returns the zone-file line, as ZoneRecord, of the public
// key of the private key file at keyFile, for selector and domain. domain
// may be in U-labels or A-labels; the line has A-labels. Invalid names and
// unusable keys are errors.
func ZoneRecordFile(keyFile, selector, domain string) (string, error) {
	d, err := CheckName(selector, domain)
	if err != nil {
		return "", err
	}
	key, err := Load(keyFile)
	if err != nil {
		return "", err
	}
	record, err := Record(key.Public())
	if err != nil {
		return "", err
	}
	return ZoneRecord(selector, d.ASCII, record), nil
}

// CheckSelector checks that s is a selector as RFC 6376 §3.1 writes it:
// labels of letters, digits and inner hyphens separated by periods
// (sub-domain of RFC 5321 §4.1.2), each of 1 to 63 octets.
func CheckSelector(s string) error {
	if s == "" {
		return fmt.Errorf("dkimkey: empty selector")
	}
	if len(s) > maxName {
		return fmt.Errorf("dkimkey: selector %q is over %d octets", s, maxName)
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("dkimkey: selector %q: empty or over-long label (RFC 6376 §3.1)", s)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("dkimkey: selector %q: a label starts or ends with a hyphen (RFC 6376 §3.1)", s)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("dkimkey: selector %q: character %q; want letters, digits, hyphens and periods (RFC 6376 §3.1)", s, c)
			}
		}
	}
	return nil
}

// CheckName checks selector (CheckSelector) and domain (a domain name in
// U-labels or A-labels, as mailaddr.ParseDomain takes it), and that the
// name of their key record fits in DNS. It returns the parsed domain.
func CheckName(selector, domain string) (mailaddr.Domain, error) {
	if err := CheckSelector(selector); err != nil {
		return mailaddr.Domain{}, err
	}
	d, err := mailaddr.ParseDomain(domain)
	if err != nil {
		return mailaddr.Domain{}, fmt.Errorf("dkimkey: %w", err)
	}
	if n := Name(selector, d.ASCII); len(n)-1 > maxName {
		return mailaddr.Domain{}, fmt.Errorf("dkimkey: %s is over %d octets (RFC 1035 §2.3.4)", n, maxName)
	}
	return d, nil
}
