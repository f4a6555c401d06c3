// Package store keeps what Switchyard knows about its accounts beyond
// mta.toml: credentials now, mailboxes and messages later.
//
// Credentials live in a bstore database, <dir>/accounts.db. A password is
// stored only as a bcrypt hash, checked for SMTP AUTH PLAIN (RFC 4616) and
// LOGIN; SASL mechanism plugins (e.g. SCRAM, RFC 5802) store their own
// per-mechanism secrets derived from the password, so the clear password is
// never kept anywhere.
package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mjl-/bstore"
	bolt "go.etcd.io/bbolt"
)

var (
	// ErrInUse means another process has the database open; stop it first.
	ErrInUse = errors.New("store: database in use by another process")
	// ErrNotFound is returned by lookups that find nothing.
	ErrNotFound = errors.New("store: not found")
)

// openTimeout bounds waiting for the database file lock, so that a second
// process fails with ErrInUse instead of hanging.
const openTimeout = time.Second

// Credentials are an account's login secrets.
type Credentials struct {
	Account string // Account name in mta.toml; the key.
	// PasswordHash is a bcrypt hash; empty: no password set, every
	// password check fails.
	PasswordHash string
	// Secrets derived from the password by SASL mechanism plugins (e.g.
	// salted SCRAM keys), by mechanism name. Replaced as a whole whenever
	// the password changes.
	Secrets map[string][]byte
	Updated time.Time `bstore:"nonzero"`
}

// dbTypes are all types stored in accounts.db, registered at Open.
var dbTypes = []any{Credentials{}}

// Store is the account database. Its methods are safe for concurrent use.
type Store struct {
	db    *bstore.DB
	cache *authCache
}

// Open opens or creates <dir>/accounts.db. It fails with ErrInUse if another
// process has it open.
func Open(ctx context.Context, dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create %s: %w", dir, err)
	}
	path := filepath.Join(dir, "accounts.db")
	db, err := bstore.Open(ctx, path, &bstore.Options{Timeout: openTimeout, Perm: 0o600}, dbTypes...)
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrInUse, path)
	} else if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return &Store{db: db, cache: newAuthCache()}, nil
}

// Close closes the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// get reads account's credentials; found is false if there are none yet.
func get(tx *bstore.Tx, account string) (c Credentials, found bool, err error) {
	c = Credentials{Account: account}
	if account == "" {
		return c, false, nil // Not a valid key; no such account.
	}
	err = tx.Get(&c)
	if err == bstore.ErrAbsent {
		return Credentials{Account: account}, false, nil
	}
	return c, err == nil, err
}

// put stores c, inserting it unless found.
func put(tx *bstore.Tx, c Credentials, found bool) error {
	c.Updated = time.Now()
	if found {
		return tx.Update(&c)
	}
	return tx.Insert(&c)
}
