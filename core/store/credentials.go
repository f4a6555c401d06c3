package store

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/mjl-/bstore"
	"golang.org/x/crypto/bcrypt"
)

// Passwords are hashed with bcrypt at cost 10 (about 50-100 ms a check)
// rather than argon2id: both make offline guessing costly, but bcrypt needs
// 4 KiB a check where argon2id's memory-hardness needs tens of MiB, which a
// flood of AUTH attempts on a public listener would turn into memory
// exhaustion. bcrypt reads at most 72 bytes; SetPassword refuses longer
// passwords instead of silently truncating them.
const bcryptCost = 10

// dummyHash is compared against when an account has no password, so that a
// check fails in the same time as one with a wrong password. Its cost must
// be bcryptCost.
const dummyHash = "$2a$10$S7V2nDW88vCq9Z5USaRZUuA3XbO1Bk5CfcGt5Pnzx8v7JGnYIK7de"

// ErrBadPassword is returned by SetPassword for an empty password or one
// longer than 72 bytes.
var ErrBadPassword = errors.New("store: password must be 1 to 72 bytes")

// SetPassword sets account's password and replaces all its derived
// per-mechanism secrets with derived (nil: none), in one transaction:
// secrets derived from the old password must not outlive it.
func (s *Store) SetPassword(ctx context.Context, account, password string, derived map[string][]byte) error {
	if account == "" {
		return errors.New("store: empty account name")
	}
	if password == "" || len(password) > 72 {
		return ErrBadPassword
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
	if err != nil {
		return fmt.Errorf("store: hash password: %w", err)
	}
	err = s.db.Write(ctx, func(tx *bstore.Tx) error {
		c, found, err := get(tx, account)
		if err != nil {
			return err
		}
		c.PasswordHash = string(hash)
		c.Secrets = maps.Clone(derived)
		return put(tx, c, found)
	})
	if err != nil {
		return fmt.Errorf("store: set password of %s: %w", account, err)
	}
	return nil
}

// SetSecrets replaces all of account's per-mechanism secrets with secrets,
// keeping its password.
func (s *Store) SetSecrets(ctx context.Context, account string, secrets map[string][]byte) error {
	if account == "" {
		return errors.New("store: empty account name")
	}
	err := s.db.Write(ctx, func(tx *bstore.Tx) error {
		c, found, err := get(tx, account)
		if err != nil {
			return err
		}
		c.Secrets = maps.Clone(secrets)
		return put(tx, c, found)
	})
	if err != nil {
		return fmt.Errorf("store: set secrets of %s: %w", account, err)
	}
	return nil
}

// CheckPassword reports whether password is account's password. An unknown
// account or one without a password fails like a wrong password, and in
// about the same time. The error is for database failures only.
func (s *Store) CheckPassword(ctx context.Context, account, password string) (bool, error) {
	var hash string
	err := s.db.Read(ctx, func(tx *bstore.Tx) error {
		c, _, err := get(tx, account)
		hash = c.PasswordHash
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: check password of %s: %w", account, err)
	}
	if hash == "" {
		bcrypt.CompareHashAndPassword([]byte(dummyHash), []byte(password))
		return false, nil
	}
	return s.cache.check(account, password, hash, func() bool {
		// Constant time: the comparison is of hashes, with subtle.ConstantTimeCompare.
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
	}), nil
}

// HasPassword reports whether account has a password set.
func (s *Store) HasPassword(ctx context.Context, account string) (bool, error) {
	var has bool
	err := s.db.Read(ctx, func(tx *bstore.Tx) error {
		c, _, err := get(tx, account)
		has = c.PasswordHash != ""
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: read credentials of %s: %w", account, err)
	}
	return has, nil
}

// Secret returns account's secret for a SASL mechanism, or ErrNotFound.
func (s *Store) Secret(ctx context.Context, account, mechanism string) ([]byte, error) {
	var secret []byte
	var ok bool
	err := s.db.Read(ctx, func(tx *bstore.Tx) error {
		c, _, err := get(tx, account)
		secret, ok = c.Secrets[mechanism]
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: read secret of %s: %w", account, err)
	}
	if !ok {
		return nil, fmt.Errorf("%w: %s secret of %s", ErrNotFound, mechanism, account)
	}
	return secret, nil
}
