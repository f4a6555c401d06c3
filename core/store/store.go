// Package store keeps what Switchyard knows about its accounts beyond
// mta.toml: credentials, and each account's mailboxes and messages.
//
// Credentials live in a bstore database, <dir>/accounts.db. A password is
// stored only as a bcrypt hash, checked for SMTP AUTH PLAIN (RFC 4616) and
// LOGIN; SASL mechanism plugins (e.g. SCRAM, RFC 5802) store their own
// per-mechanism secrets derived from the password, so the clear password is
// never kept anywhere.
//
// # Mailboxes and messages
//
// Each account has its own directory, <dir>/accounts/<name>/, with
// index.db, a bstore database of its mailboxes and message records, and
// msg/<id/1000>/<id>, one file per message holding its exact bytes. One
// database per account rather than one for all: bbolt allows one writer a
// file, so deliveries to different accounts commit in parallel instead of
// queueing behind each other; an account's data is one directory to back
// up, move or remove; and damage stays within one account. The cost, one
// commit per account for a message to N accounts, is what atomic delivery
// per account needs anyway. The message bytes are written and synced once
// (Store.NewIncoming) and hard-linked into each account (Account.Deliver),
// under <dir>/accounts/.incoming, on the same file system.
//
// Delivery is crash-safe and ordered so that only orphan files, never
// dangling records, can result: the file is synced, linked into the
// account and its directory synced, then the record committed; only then
// may SMTP answer 250. An expunge commits first and removes files after.
// Opening an account removes files without a record and recomputes the
// mailbox counts (Account.Check).
//
// Mailboxes follow IMAP4rev2 (RFC 9051): hierarchy separator "/", Inbox
// named case-insensitively, UIDVALIDITY unique per account over time, UIDs
// never reused, counts (messages, unseen, deleted, size) updated in the
// transaction of each change, SPECIAL-USE (RFC 6154) on the standard
// mailboxes, UIDPLUS (RFC 4315) results from Copy and Move, and a
// mod-sequence per change (RFC 7162) for ordering and future CONDSTORE.
// Every change is one write transaction; reads run in parallel with it.
//
// Changes are announced in commit order to Watchers of the account, as
// plain events. An IMAP session keeps its own View of the selected mailbox
// (its UIDs, hence its sequence numbers) and turns events into untagged
// responses with View.Poll. The store does not feed go-imap's
// imapserver.MailboxTracker: that tracker computes sequence numbers against
// one shared in-memory list of the mailbox, which a database-backed store
// would have to keep in memory per open mailbox and update in lock step
// with its commits; and the store would import go-imap for the SMTP path
// and the CLI too. A View needs neither, as in mox.
//
// The store keeps no parsed form of messages besides the header length:
// delivery, on the SMTP 250 path, only scans for the end of the header
// while copying. Envelope, body structure and sections are parsed on FETCH
// from the bytes (Account.OpenMessage), with go-imap's imapserver helpers.
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
var dbTypes = []any{Credentials{}, TLSPublicKey{}, Suppression{}}

// Store is the account database. Its methods are safe for concurrent use.
type Store struct {
	db    *bstore.DB
	cache *authCache
	mail  *mail // Mailboxes and messages, per account.
}

// Open opens or creates <dir>/accounts.db, and <dir>/accounts for the
// accounts' mailboxes (see SetAccounts). It fails with ErrInUse if another
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
	// Holding the lock on accounts.db, this process owns the accounts.
	m, err := openMail(dir)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Store{db: db, cache: newAuthCache(), mail: m}, nil
}

// Close closes the database and the accounts' databases.
func (s *Store) Close() error {
	merr := s.mail.close()
	if err := errors.Join(merr, s.db.Close()); err != nil {
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
