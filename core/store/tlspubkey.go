package store

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/mjl-/bstore"
)

// TLSPublicKey is a TLS client public key that logs in an account (mta
// tlspubkey): only the key counts, not the certificate around it, which
// is kept for the operator to see and is never verified.
type TLSPublicKey struct {
	// Fingerprint is the SHA-256 of the SubjectPublicKeyInfo, base64url
	// without padding (TLSFingerprint).
	Fingerprint    string
	Account        string    `bstore:"nonzero,index"`
	LoginAddress   string    `bstore:"nonzero"` // One of the account's addresses.
	Name           string    // Default: the certificate's subject CN.
	Type           string    `bstore:"nonzero"` // "ed25519", "ecdsa-P-256", "rsa-2048", ...
	NoIMAPPreauth  bool      // IMAP logs in by AUTHENTICATE EXTERNAL, not PREAUTH.
	CertificateDER []byte    `bstore:"nonzero"`
	Created        time.Time `bstore:"nonzero"`
	LastUsed       time.Time // Zero: never; updated at most every usedResolution.
}

// usedResolution is how stale LastUsed may be: a login by key writes to
// the database at most this often, not on every connection.
const usedResolution = time.Minute

// ErrKeyExists is returned by AddTLSPublicKey for a key stored already.
var ErrKeyExists = errors.New("store: TLS public key already added")

// TLSFingerprint returns the fingerprint of a public key by the SHA-256 of
// its SubjectPublicKeyInfo: base64url without padding.
func TLSFingerprint(spkiSHA256 []byte) string {
	return base64.RawURLEncoding.EncodeToString(spkiSHA256)
}

// NewTLSPublicKey returns the record of cert's public key for account,
// logging in as login, named name or else by the certificate's subject CN.
// Nothing of cert is verified but that it parses.
func NewTLSPublicKey(cert *x509.Certificate, account, login, name string, noIMAPPreauth bool, now time.Time) (TLSPublicKey, error) {
	typ, err := keyType(cert.PublicKey)
	if err != nil {
		return TLSPublicKey{}, err
	}
	if name == "" {
		name = cert.Subject.CommonName
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return TLSPublicKey{
		Fingerprint:    TLSFingerprint(sum[:]),
		Account:        account,
		LoginAddress:   login,
		Name:           name,
		Type:           typ,
		NoIMAPPreauth:  noIMAPPreauth,
		CertificateDER: cert.Raw,
		Created:        now,
	}, nil
}

// keyType names a public key's algorithm and size.
func keyType(pub any) (string, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return "ed25519", nil
	case *ecdsa.PublicKey:
		return "ecdsa-" + k.Curve.Params().Name, nil
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa-%d", k.N.BitLen()), nil
	}
	return "", fmt.Errorf("store: unsupported public key type %T", pub)
}

// AddTLSPublicKey stores k, or fails with ErrKeyExists if its key is
// stored already, for any account: a key logs in one account.
func (s *Store) AddTLSPublicKey(ctx context.Context, k TLSPublicKey) error {
	err := s.db.Write(ctx, func(tx *bstore.Tx) error {
		err := tx.Get(&TLSPublicKey{Fingerprint: k.Fingerprint})
		if err == nil {
			return ErrKeyExists
		} else if !errors.Is(err, bstore.ErrAbsent) {
			return err
		}
		return tx.Insert(&k)
	})
	if err != nil && !errors.Is(err, ErrKeyExists) {
		return fmt.Errorf("store: add TLS public key: %w", err)
	}
	return err
}

// TLSPublicKey returns the key with fingerprint, or fails with ErrNotFound.
func (s *Store) TLSPublicKey(ctx context.Context, fingerprint string) (TLSPublicKey, error) {
	k := TLSPublicKey{Fingerprint: fingerprint}
	err := s.db.Get(ctx, &k)
	if errors.Is(err, bstore.ErrAbsent) {
		return TLSPublicKey{}, fmt.Errorf("%w: TLS public key %s", ErrNotFound, fingerprint)
	} else if err != nil {
		return TLSPublicKey{}, fmt.Errorf("store: read TLS public key: %w", err)
	}
	return k, nil
}

// TLSPublicKeys returns the keys of account, or of every account if it is
// empty, by account and creation.
func (s *Store) TLSPublicKeys(ctx context.Context, account string) ([]TLSPublicKey, error) {
	q := bstore.QueryDB[TLSPublicKey](ctx, s.db)
	if account != "" {
		q.FilterNonzero(TLSPublicKey{Account: account})
	}
	l, err := q.SortAsc("Account", "Created").List()
	if err != nil {
		return nil, fmt.Errorf("store: list TLS public keys: %w", err)
	}
	return l, nil
}

// RemoveTLSPublicKey removes the key with fingerprint, or fails with
// ErrNotFound; the next connection with it is not logged in.
func (s *Store) RemoveTLSPublicKey(ctx context.Context, fingerprint string) error {
	err := s.db.Delete(ctx, &TLSPublicKey{Fingerprint: fingerprint})
	if errors.Is(err, bstore.ErrAbsent) {
		return fmt.Errorf("%w: TLS public key %s", ErrNotFound, fingerprint)
	} else if err != nil {
		return fmt.Errorf("store: remove TLS public key: %w", err)
	}
	return nil
}

// SetTLSPublicKeyPreauth sets whether IMAP connections with the key start
// logged in (PREAUTH), or fails with ErrNotFound.
func (s *Store) SetTLSPublicKeyPreauth(ctx context.Context, fingerprint string, preauth bool) error {
	return s.updateKey(ctx, fingerprint, func(k *TLSPublicKey) bool {
		k.NoIMAPPreauth = !preauth
		return true
	})
}

// TLSPublicKeyUsed records that the key logged in at t, unless it did
// less than usedResolution before.
func (s *Store) TLSPublicKeyUsed(ctx context.Context, fingerprint string, t time.Time) error {
	return s.updateKey(ctx, fingerprint, func(k *TLSPublicKey) bool {
		if t.Sub(k.LastUsed) < usedResolution {
			return false
		}
		k.LastUsed = t
		return true
	})
}

// updateKey changes the key with fingerprint by f, written if f says so.
func (s *Store) updateKey(ctx context.Context, fingerprint string, f func(*TLSPublicKey) bool) error {
	// A read first: most calls of TLSPublicKeyUsed change nothing.
	k, err := s.TLSPublicKey(ctx, fingerprint)
	if err != nil || !f(&k) {
		return err
	}
	err = s.db.Write(ctx, func(tx *bstore.Tx) error {
		cur := TLSPublicKey{Fingerprint: fingerprint}
		if err := tx.Get(&cur); err != nil {
			return err
		}
		if !f(&cur) {
			return nil
		}
		return tx.Update(&cur)
	})
	if errors.Is(err, bstore.ErrAbsent) {
		return fmt.Errorf("%w: TLS public key %s", ErrNotFound, fingerprint)
	} else if err != nil {
		return fmt.Errorf("store: update TLS public key: %w", err)
	}
	return nil
}
