package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mjl-/bstore"
	bolt "go.etcd.io/bbolt"
)

var (
	// ErrQuota means the change would take the account over its
	// max_storage; nothing was stored. SMTP answers 452 4.2.2 (RFC 3463),
	// IMAP NO [OVERQUOTA] (RFC 9208 §4.3).
	ErrQuota = errors.New("store: quota exceeded")
	// ErrNoMailbox means the named (or selected) mailbox does not exist
	// (any more). IMAP answers NO [NONEXISTENT], or [TRYCREATE] for APPEND,
	// COPY and MOVE (RFC 9051 §7.1).
	ErrNoMailbox = errors.New("store: no such mailbox")
	// ErrMailboxExists is returned by CreateMailbox and RenameMailbox for a
	// name in use. IMAP: NO [ALREADYEXISTS] (RFC 5530).
	ErrMailboxExists = errors.New("store: mailbox exists")
	// ErrBadName is returned for an invalid mailbox name, keyword or
	// account name; the wrapped text says which and why.
	ErrBadName = errors.New("store: invalid name")
	// ErrNotAllowed is returned for operations the store refuses, such as
	// deleting Inbox or a mailbox with children; the wrapped text says
	// which. IMAP: NO [CANNOT] (RFC 5530).
	ErrNotAllowed = errors.New("store: not allowed")
)

// AccountConfig is what mta.toml says about an account that the store
// enforces.
type AccountConfig struct {
	// MaxStorage is the quota in bytes: the sum of the sizes of all the
	// account's messages (the STORAGE resource of RFC 9208 §5.1), copies
	// counted each time. Zero: unlimited.
	MaxStorage int64
}

// mail is the Store's part for mailboxes: the open accounts.
type mail struct {
	dir      string // <data_dir>/accounts
	incoming string // <data_dir>/accounts/.incoming: files of Incoming messages.

	mu         sync.Mutex
	open       map[string]*Account // Every account opened since Open; closed by Close.
	configured map[string]bool     // Those in the last SetAccounts.
}

// openMail prepares the accounts directory under dir, and removes Incoming
// files a previous process left behind: they were never delivered, or are
// linked from the accounts they were delivered to.
func openMail(dir string) (*mail, error) {
	m := &mail{
		dir:        filepath.Join(dir, "accounts"),
		incoming:   filepath.Join(dir, "accounts", ".incoming"),
		open:       map[string]*Account{},
		configured: map[string]bool{},
	}
	if err := os.RemoveAll(m.incoming); err != nil {
		return nil, fmt.Errorf("store: clean %s: %w", m.incoming, err)
	}
	if err := os.MkdirAll(m.incoming, 0o700); err != nil {
		return nil, fmt.Errorf("store: create %s: %w", m.incoming, err)
	}
	return m, nil
}

// close closes all open accounts.
func (m *mail) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, a := range m.open {
		if err := a.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close account %s: %w", a.name, err))
		}
	}
	clear(m.open)
	clear(m.configured)
	return errors.Join(errs...)
}

// SetAccounts makes the store serve exactly these accounts' mailboxes, with
// their limits; call it at start and again when the configuration changes.
// An account is opened when first listed: a new one is created with the
// standard mailboxes, subscribed (Inbox, and Sent, Drafts, Archive, Junk,
// Trash with their SpecialUse); an existing one is checked and repaired
// after a crash (see Check), each repair logged as a warning on log (nil:
// not logged). An account no longer listed is refused by Account from then
// on; its data stays on disk.
func (s *Store) SetAccounts(ctx context.Context, accounts map[string]AccountConfig, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := s.mail
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	configured := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(accounts)) {
		a := m.open[name]
		if a == nil {
			var err error
			a, err = openAccount(ctx, m, name, log)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			m.open[name] = a
		}
		a.maxStorage.Store(accounts[name].MaxStorage)
		configured[name] = true
	}
	m.configured = configured
	return errors.Join(errs...)
}

// Account returns a configured account (see SetAccounts), or ErrNotFound.
// The Account stays valid until the Store is closed.
func (s *Store) Account(name string) (*Account, error) {
	m := s.mail
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.configured[name] {
		return nil, fmt.Errorf("%w: account %q", ErrNotFound, name)
	}
	return m.open[name], nil
}

// Account is one account's mailboxes and messages. Its methods are safe for
// concurrent use by any number of sessions.
type Account struct {
	name string
	dir  string // <data_dir>/accounts/<name>
	db   *bstore.DB
	mail *mail

	maxStorage atomic.Int64

	// wmu serializes changes: each is one write transaction, then the
	// removal of the files it freed, then the broadcast of its events, so
	// that watchers see events in commit order (and Check sees no file
	// being linked).
	wmu      sync.Mutex
	watchers map[*Watcher]struct{} // Guarded by wmu.
}

// accountMeta is the account's one record of its own: counters that
// outlive mailboxes.
type accountMeta struct {
	ID int64 // Always 1.
	// ModSeq counts changes: each write transaction that changes mailboxes
	// or messages takes the next value, stamps its messages and events with
	// it (the mod-sequence of RFC 7162 §3.1.1, account-wide).
	ModSeq int64
	// UIDValidityNext is the UIDVALIDITY of the next mailbox created (RFC
	// 9051 §2.3.1.1). Starts at the account's creation time in seconds, so
	// that a re-created account does not repeat old values; never reused.
	UIDValidityNext uint32 `bstore:"nonzero"`
}

// accountTypes are the types stored in each account's index.db.
var accountTypes = []any{accountMeta{}, Mailbox{}, Message{}, flagBlock{}, subscription{}, deliveryKey{}}

// standardMailboxes are created with every account, subscribed.
var standardMailboxes = [...]struct {
	Name string
	Use  SpecialUse
}{
	{Inbox, ""},
	{"Sent", Sent},
	{"Drafts", Drafts},
	{"Archive", Archive},
	{"Junk", Junk},
	{"Trash", Trash},
}

// checkAccountName refuses names that are not a plain directory name.
func checkAccountName(name string) error {
	switch {
	case name == "", strings.HasPrefix(name, "."), strings.ContainsAny(name, `/\`),
		!utf8.ValidString(name), strings.ContainsFunc(name, unicode.IsControl):
		return fmt.Errorf("%w: account %q", ErrBadName, name)
	}
	return nil
}

// openAccount opens or creates an account and repairs it.
func openAccount(ctx context.Context, m *mail, name string, log *slog.Logger) (*Account, error) {
	if err := checkAccountName(name); err != nil {
		return nil, err
	}
	dir := filepath.Join(m.dir, name)
	if err := os.MkdirAll(filepath.Join(dir, "msg"), 0o700); err != nil {
		return nil, fmt.Errorf("store: create account %s: %w", name, err)
	}
	path := filepath.Join(dir, "index.db")
	db, err := bstore.Open(ctx, path, &bstore.Options{Timeout: openTimeout, Perm: 0o600}, accountTypes...)
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrInUse, path)
	} else if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	a := &Account{name: name, dir: dir, db: db, mail: m, watchers: map[*Watcher]struct{}{}}
	created := false
	err = db.Write(ctx, func(tx *bstore.Tx) error {
		if err := tx.Get(&accountMeta{ID: 1}); err != bstore.ErrAbsent {
			return err
		}
		created = true
		meta := accountMeta{ID: 1, UIDValidityNext: uint32(time.Now().Unix())}
		for _, sm := range standardMailboxes {
			mb := Mailbox{Name: sm.Name, SpecialUse: sm.Use, UIDValidity: meta.UIDValidityNext, UIDNext: 1}
			meta.UIDValidityNext++
			if err := tx.Insert(&mb); err != nil {
				return err
			}
			if err := tx.Insert(&subscription{Name: sm.Name}); err != nil {
				return err
			}
		}
		return tx.Insert(&meta)
	})
	if err == nil && created {
		err = errors.Join(syncDir(m.dir), syncDir(dir))
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: create account %s: %w", name, err)
	}
	problems, err := a.check(ctx, true)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: repair account %s: %w", name, err)
	}
	for _, p := range problems {
		log.Warn("account repaired", slog.String("account", name), slog.String("problem", p))
	}
	return a, nil
}

// Name returns the account's name.
func (a *Account) Name() string { return a.name }

// Quota returns the account's usage (sum of message sizes) and limit in
// bytes (0: unlimited), as RFC 9208 GETQUOTAROOT reports them.
func (a *Account) Quota(ctx context.Context) (used, limit int64, err error) {
	err = a.db.Read(ctx, func(tx *bstore.Tx) error {
		used, err = usage(tx)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("store: quota of %s: %w", a.name, err)
	}
	return used, a.maxStorage.Load(), nil
}

// usage sums the sizes of all messages, from the mailbox counts.
func usage(tx *bstore.Tx) (int64, error) {
	var n int64
	err := bstore.QueryTx[Mailbox](tx).ForEach(func(mb Mailbox) error {
		n += mb.Size
		return nil
	})
	return n, err
}

// checkQuota fails with ErrQuota if adding size bytes would take the
// account over its limit.
func (a *Account) checkQuota(tx *bstore.Tx, size int64) error {
	limit := a.maxStorage.Load()
	if limit <= 0 || size <= 0 {
		return nil
	}
	used, err := usage(tx)
	if err != nil {
		return err
	}
	if used+size > limit {
		return fmt.Errorf("%w: account %s uses %d of %d bytes, %d more refused", ErrQuota, a.name, used, limit, size)
	}
	return nil
}

// msgPath is where message id's file is: 1000 files a directory.
func (a *Account) msgPath(id int64) string {
	return filepath.Join(a.dir, "msg", strconv.FormatInt(id/1000, 10), strconv.FormatInt(id, 10))
}

// change is one write transaction in progress, with what must happen
// around its commit.
type change struct {
	tx     *bstore.Tx
	modseq int64    // Of this change, if it changes anything.
	origin *Watcher // Watcher of the session making the change, or nil.
	events []Event
	linked []string        // Files linked; removed if the transaction fails.
	dirs   map[string]bool // Directories to sync before the commit.
	remove []string        // Files to remove once committed.
}

func (c *change) emit(e Event) {
	e.ModSeq = c.modseq
	e.origin = c.origin
	c.events = append(c.events, e)
}

// link makes dst a hard link to src, creating its directory, and marks the
// directory for syncing.
func (c *change) link(src, dst string) error {
	dir := filepath.Dir(dst)
	if !c.dirs[dir] {
		if err := os.Mkdir(dir, 0o700); err == nil {
			c.dirs[filepath.Dir(dir)] = true
		} else if !errors.Is(err, fs.ErrExist) {
			return err
		}
		c.dirs[dir] = true
	}
	err := os.Link(src, dst)
	if errors.Is(err, fs.ErrExist) {
		// Left by a process that crashed before committing the record
		// with this ID, which was then reused; not yet cleaned.
		if err = os.Remove(dst); err == nil {
			err = os.Link(src, dst)
		}
	}
	if err != nil {
		return err
	}
	c.linked = append(c.linked, dst)
	return nil
}

// write runs fn as one write transaction. Once it commits, files fn freed
// are removed and its events are sent to watchers, all before the next
// change starts.
func (a *Account) write(ctx context.Context, origin *Watcher, fn func(c *change) error) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	c := &change{origin: origin, dirs: map[string]bool{}}
	err := a.db.Write(ctx, func(tx *bstore.Tx) error {
		c.tx = tx
		meta := accountMeta{ID: 1}
		if err := tx.Get(&meta); err != nil {
			return err
		}
		c.modseq = meta.ModSeq + 1
		if err := fn(c); err != nil {
			return err
		}
		for dir := range c.dirs {
			if err := syncDir(dir); err != nil {
				return err
			}
		}
		if len(c.events) == 0 {
			return nil
		}
		if err := tx.Get(&meta); err != nil { // fn may have changed it.
			return err
		}
		meta.ModSeq = c.modseq
		return tx.Update(&meta)
	})
	if err != nil {
		for _, p := range c.linked {
			os.Remove(p)
		}
		return err
	}
	for _, p := range c.remove {
		os.Remove(p) // A failure leaves an orphan, removed at the next open.
	}
	a.broadcast(c.events)
	return nil
}

// syncDir makes directory entries created in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Check verifies the account's index against its records and files:
// mailbox counts, UIDNEXT, HIGHESTMODSEQ, keywords and the flag index
// recomputed from the message records, every message with its file, and no
// file without a message. It returns the problems found, none if consistent. Opening an
// account runs the same check and repairs what it finds.
func (a *Account) Check(ctx context.Context) ([]string, error) {
	return a.check(ctx, false)
}

// check is Check, repairing if fix is set: counts and the flag index are
// rewritten, records whose file is missing deleted (the message was lost),
// files without a record removed (a crash before the commit, or before removing the files
// of an expunge).
func (a *Account) check(ctx context.Context, fix bool) (problems []string, rerr error) {
	a.wmu.Lock() // No file is linked or removed meanwhile.
	defer a.wmu.Unlock()

	files := map[int64]string{}
	msgDir := filepath.Join(a.dir, "msg")
	err := filepath.WalkDir(msgDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		id, perr := strconv.ParseInt(d.Name(), 10, 64)
		if perr != nil || a.msgPath(id) != path {
			problems = append(problems, "stray file "+path)
			if fix {
				return os.Remove(path)
			}
			return nil
		}
		files[id] = path
		return nil
	})
	if err != nil {
		return nil, err
	}

	problem := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	run := a.db.Read
	if fix {
		run = a.db.Write
	}
	err = run(ctx, func(tx *bstore.Tx) error {
		meta := accountMeta{ID: 1}
		if err := tx.Get(&meta); err != nil {
			return err
		}
		mailboxes, err := bstore.QueryTx[Mailbox](tx).List()
		if err != nil {
			return err
		}
		want := map[int64]*Mailbox{}
		for _, mb := range mailboxes {
			w := mb
			w.Counts = Counts{}
			w.UIDNext = 1
			w.Keywords = nil
			want[mb.ID] = &w
		}
		maxModSeq := int64(0)
		var lost []Message
		entries := map[int64][]indexEntry{} // The flag index recomputed, by mailbox.
		err = bstore.QueryTx[Message](tx).ForEach(func(m Message) error {
			if _, ok := files[m.ID]; !ok {
				problem("message %d (mailbox %d, uid %d): file missing", m.ID, m.MailboxID, m.UID)
				lost = append(lost, m)
				if !fix { // Still in the index until the repair.
					entries[m.MailboxID] = append(entries[m.MailboxID], m.entry())
				}
				return nil
			}
			entries[m.MailboxID] = append(entries[m.MailboxID], m.entry())
			delete(files, m.ID)
			w := want[m.MailboxID]
			w.Counts.add(m, 1)
			w.UIDNext = max(w.UIDNext, m.UID+1)
			w.HighestModSeq = max(w.HighestModSeq, m.ModSeq)
			w.Keywords = mergeKeywords(w.Keywords, m.Keywords)
			maxModSeq = max(maxModSeq, m.ModSeq)
			return nil
		})
		if err != nil {
			return err
		}
		for _, mb := range mailboxes {
			w := want[mb.ID]
			w.UIDNext = max(w.UIDNext, mb.UIDNext)                   // Never lower: UIDs of expunged messages stay used.
			w.Keywords = mergeKeywords(mb.Keywords, w.Keywords)      // Keywords stay defined.
			w.HighestModSeq = max(w.HighestModSeq, mb.HighestModSeq) // Expunges raise it too.
			maxModSeq = max(maxModSeq, w.HighestModSeq)
			if w.Counts != mb.Counts {
				problem("mailbox %s: counts %+v, recomputed %+v", mb.Name, mb.Counts, w.Counts)
			}
			if w.UIDNext != mb.UIDNext {
				problem("mailbox %s: uidnext %d, messages up to uid %d", mb.Name, mb.UIDNext, w.UIDNext-1)
			}
			if w.HighestModSeq != mb.HighestModSeq {
				problem("mailbox %s: highestmodseq %d, messages up to %d", mb.Name, mb.HighestModSeq, w.HighestModSeq)
			}
			if !slices.Equal(w.Keywords, mb.Keywords) {
				problem("mailbox %s: keywords %v, messages have %v", mb.Name, mb.Keywords, w.Keywords)
			}
			if fix && !mailboxEqual(*w, mb) {
				if err := tx.Update(w); err != nil {
					return err
				}
			}
		}
		if fix {
			for _, m := range lost {
				if err := tx.Delete(&m); err != nil {
					return err
				}
			}
		}
		for _, mb := range mailboxes {
			l := entries[mb.ID]
			slices.SortFunc(l, func(a, b indexEntry) int { return cmp.Compare(a.UID, b.UID) })
			if differs, err := indexDiffers(tx, mb.ID, l); err != nil {
				return err
			} else if !differs {
				continue
			}
			problem("mailbox %s: flag index differs from its %d messages", mb.Name, len(l))
			if fix {
				if err := indexRebuild(tx, mb.ID, l); err != nil {
					return err
				}
			}
		}
		if meta.ModSeq < maxModSeq {
			problem("account modseq %d, records up to %d", meta.ModSeq, maxModSeq)
			meta.ModSeq = maxModSeq
			if fix {
				if err := tx.Update(&meta); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, id := range slices.Sorted(maps.Keys(files)) {
		problem("orphan file %s", files[id])
		if fix {
			if err := os.Remove(files[id]); err != nil {
				return nil, err
			}
		}
	}
	return problems, nil
}

func mailboxEqual(a, b Mailbox) bool {
	return a.Counts == b.Counts && a.UIDNext == b.UIDNext && a.HighestModSeq == b.HighestModSeq && slices.Equal(a.Keywords, b.Keywords)
}
