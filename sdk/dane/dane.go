// Package dane verifies a TLS server's certificate chain against TLSA records:
// DNS-Based Authentication of Named Entities (RFC 6698), with the operational
// updates of RFC 7671 and the rules for SMTP of RFC 7672.
//
// For SMTP only DANE-TA(2) and DANE-EE(3) records are usable; PKIX-TA(0) and
// PKIX-EE(1) are not (RFC 7672 §3.1.3). TLSA records count only when they come
// from a DNSSEC-signed zone through a trusted validating resolver; looking them
// up and judging that is the caller's job (see sdk/dnsresolve).
//
// Verification never falls back: when a destination has usable TLSA records
// and Verify fails, the connection must not be used, neither with TLS nor in
// plaintext (RFC 7672 §2.2).
package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Certificate usages (RFC 6698 §2.1.1, names from RFC 7218 §2.1).
const (
	UsagePKIXTA uint8 = 0 // Unusable for SMTP (RFC 7672 §3.1.3).
	UsagePKIXEE uint8 = 1 // Unusable for SMTP (RFC 7672 §3.1.3).
	UsageDANETA uint8 = 2 // Trust anchor: chain and names checked (RFC 7672 §3.1.2).
	UsageDANEEE uint8 = 3 // End entity: only the key or certificate (RFC 7672 §3.1.1).
)

// Selectors (RFC 6698 §2.1.2).
const (
	SelectorCert uint8 = 0 // The full DER certificate.
	SelectorSPKI uint8 = 1 // The DER SubjectPublicKeyInfo.
)

// Matching types (RFC 6698 §2.1.3).
const (
	MatchFull   uint8 = 0 // Data is the selected content itself.
	MatchSHA256 uint8 = 1 // Data is its SHA-256 digest.
	MatchSHA512 uint8 = 2 // Data is its SHA-512 digest.
)

// Errors returned by Verify; a failure with usable records means the
// connection must not be used (RFC 7672 §2.2).
var (
	// ErrNoUsable: no record is usable; TLS is still required but its
	// certificate is not verified (RFC 7672 §2.2). Check with Usable first.
	ErrNoUsable = errors.New("dane: no usable tlsa records")
	ErrNoCerts  = errors.New("dane: peer sent no certificate")
	// ErrNoMatch: no usable record matches the chain.
	ErrNoMatch = errors.New("dane: no tlsa record matches the certificate chain")
	// ErrName: a DANE-TA record matched, but the leaf certificate is not for
	// any allowed name (RFC 7672 §3.2.2).
	ErrName = errors.New("dane: certificate does not match the allowed names")
)

// TLSA is the data of one TLSA record (RFC 6698 §2.1).
type TLSA struct {
	Usage        uint8
	Selector     uint8
	MatchingType uint8
	Data         []byte // Certificate association data.
}

// String formats r as in a zone file: "3 1 1 <hex>".
func (r TLSA) String() string {
	return fmt.Sprintf("%d %d %d %s", r.Usage, r.Selector, r.MatchingType, hex.EncodeToString(r.Data))
}

// Usable reports whether r can authenticate an SMTP server: usage DANE-TA or
// DANE-EE (RFC 7672 §3.1.3), a known selector and a known matching type
// (RFC 7671 §4: records with unknown parameters are unusable).
func (r TLSA) Usable() bool {
	return (r.Usage == UsageDANETA || r.Usage == UsageDANEEE) &&
		(r.Selector == SelectorCert || r.Selector == SelectorSPKI) &&
		(r.MatchingType == MatchFull || r.MatchingType == MatchSHA256 || r.MatchingType == MatchSHA512)
}

// Usable reports whether at least one record is usable. With TLSA records of
// which none is usable, TLS is required but not verified (RFC 7672 §2.2).
func Usable(records []TLSA) bool {
	for _, r := range records {
		if r.Usable() {
			return true
		}
	}
	return false
}

// NewRecord computes the record data for cert, e.g. the "3 1 1" record an
// operator publishes for a server's key (RFC 7671 §5.1 recommends DANE-EE(3)
// SPKI(1) SHA2-256(1)).
func NewRecord(usage, selector, matchingType uint8, cert *x509.Certificate) (TLSA, error) {
	r := TLSA{Usage: usage, Selector: selector, MatchingType: matchingType}
	data, err := association(r, cert)
	if err != nil {
		return TLSA{}, err
	}
	r.Data = data
	return r, nil
}

// association returns the data that r's selector and matching type give for cert.
func association(r TLSA, cert *x509.Certificate) ([]byte, error) {
	var b []byte
	switch r.Selector {
	case SelectorCert:
		b = cert.Raw
	case SelectorSPKI:
		b = cert.RawSubjectPublicKeyInfo
	default:
		return nil, fmt.Errorf("dane: unknown selector %d", r.Selector)
	}
	switch r.MatchingType {
	case MatchFull:
		return b, nil
	case MatchSHA256:
		h := sha256.Sum256(b)
		return h[:], nil
	case MatchSHA512:
		h := sha512.Sum512(b)
		return h[:], nil
	}
	return nil, fmt.Errorf("dane: unknown matching type %d", r.MatchingType)
}

// matches reports whether the usable record r matches cert.
func matches(r TLSA, cert *x509.Certificate) bool {
	data, err := association(r, cert)
	return err == nil && bytes.Equal(data, r.Data)
}

// Result tells how a chain was verified.
type Result struct {
	Record TLSA   // The record that matched.
	Name   string // For DANE-TA, the allowed name the leaf matched; empty for DANE-EE.
}

// Verify checks chain, the certificates as the server sent them (leaf first),
// against records. One matching usable record suffices (RFC 6698 §2.1).
//
// A DANE-EE(3) record must match the leaf; its names and validity dates are
// ignored (RFC 7672 §3.1.1). A DANE-TA(2) record must match a trust anchor:
// a certificate the server sent after the leaf, or the certificate given in
// full by a "2 0 0" record (RFC 7671 §5.2.2); the chain must build from the
// leaf to it with the usual checks at time now, and the leaf must be valid for
// one of allowedNames (RFC 7672 §3.1.2, §3.2.2: the next-hop domain, its
// CNAME expansion, the MX host name, the TLSA base domain), wildcards allowed
// in the leftmost label (RFC 7672 §3.2.3). A "2 1 0" record without its
// certificate in the chain cannot be used as an anchor here.
func Verify(records []TLSA, chain []*x509.Certificate, allowedNames []string, now time.Time) (Result, error) {
	if !Usable(records) {
		return Result{}, ErrNoUsable
	}
	if len(chain) == 0 {
		return Result{}, ErrNoCerts
	}
	leaf := chain[0]
	for _, r := range records {
		if r.Usable() && r.Usage == UsageDANEEE && matches(r, leaf) {
			return Result{Record: r}, nil
		}
	}
	var taErr error
	for _, r := range records {
		if !r.Usable() || r.Usage != UsageDANETA {
			continue
		}
		name, err := verifyTA(r, chain, allowedNames, now)
		if err == nil {
			return Result{Record: r, Name: name}, nil
		}
		if !errors.Is(err, ErrNoMatch) && taErr == nil {
			taErr = err
		}
	}
	if taErr != nil {
		return Result{}, taErr
	}
	return Result{}, ErrNoMatch
}

// verifyTA verifies chain against the DANE-TA record r and returns the
// allowed name the leaf matched.
func verifyTA(r TLSA, chain []*x509.Certificate, allowedNames []string, now time.Time) (string, error) {
	anchors := x509.NewCertPool()
	found := false
	intermediates := x509.NewCertPool()
	for _, c := range chain[1:] {
		intermediates.AddCert(c)
		if matches(r, c) {
			anchors.AddCert(c)
			found = true
		}
	}
	if !found && r.Selector == SelectorCert && r.MatchingType == MatchFull {
		// The record carries the anchor itself (RFC 7671 §5.2.2).
		// Like one sent in the chain, it must be an issuer, not the leaf's key.
		c, err := x509.ParseCertificate(r.Data)
		if err == nil && !bytes.Equal(c.RawSubjectPublicKeyInfo, chain[0].RawSubjectPublicKeyInfo) {
			anchors.AddCert(c)
			found = true
		}
	}
	if !found {
		return "", ErrNoMatch
	}
	leaf := chain[0]
	name := ""
	for _, n := range allowedNames {
		n = strings.TrimSuffix(n, ".")
		if n != "" && leaf.VerifyHostname(n) == nil {
			name = n
			break
		}
	}
	if name == "" {
		return "", fmt.Errorf("%w: %q", ErrName, allowedNames)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         anchors,
		Intermediates: intermediates,
		CurrentTime:   now,
		// SMTP does not require the serverAuth purpose; RFC 7672 sets none.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return "", fmt.Errorf("dane: chain to the DANE-TA anchor: %w", err)
	}
	return name, nil
}

// Config returns a client TLS configuration that sends serverName as SNI
// (RFC 7672 §8.1: the TLSA base domain) and aborts the handshake unless Verify
// accepts the server's chain: Go's PKIX verification is replaced, not added
// to (InsecureSkipVerify with VerifyConnection). With no usable record every
// handshake fails (ErrNoUsable); check Usable first. A failed handshake must
// not be retried in plaintext (RFC 7672 §2.2).
func Config(records []TLSA, allowedNames []string, serverName string) *tls.Config {
	return &tls.Config{
		ServerName:         serverName,
		InsecureSkipVerify: true, // Verified by VerifyConnection below.
		MinVersion:         tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := Verify(records, cs.PeerCertificates, allowedNames, time.Now())
			return err
		},
	}
}
