// Package queue is the durable outgoing queue: it stores messages accepted
// for remote recipients, schedules delivery attempts through transports, and
// retries temporary failures with backoff (RFC 5321 §4.5.4.1).
//
// A message is a file in the queue directory plus a record in a bstore
// database next to it. When Add returns, both are fsynced. Writes of all
// goroutines share transactions (group commit), so many SMTP sessions adding
// at once cost one fsync per group, not per message.
//
// Delivery is at least once: a message being delivered when the process dies
// is delivered again after a restart.
package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mjl-/bstore"

	"github.com/switchyard-mta/switchyard/sdk"
)

var (
	ErrClosed   = errors.New("queue: closed")          // Add after Close.
	ErrNotFound = errors.New("queue: no such message") // Retry of an unknown or finished message.
)

// Router picks the transport for a delivery attempt to the recipients at
// toDomain, after attempts earlier attempts. core/route implements it. Route
// is called with the queue's lock held: it must be quick.
type Router interface {
	Route(account, from, toDomain string, attempts int) (transport string)
}

// Deliverer makes a delivery attempt through the named transport. An error
// means the transport is unavailable (not configured, plugin down): every
// recipient of the request then fails temporarily with the error's text.
type Deliverer interface {
	Deliver(ctx context.Context, transport string, req *sdk.DeliverRequest) (*sdk.DeliverResult, error)
}

// Failure describes recipients of a message that failed permanently, for a
// delivery status notification (RFC 3464).
type Failure struct {
	QueueID    string
	Account    string
	From       string // Where the DSN goes; empty for the null reverse-path: no DSN (RFC 5321 §4.5.5).
	Options    sdk.DeliverOptions
	Queued     time.Time
	Path       string // The message file; it exists until OnFailure returns.
	Recipients []Rcpt // The failed recipients, with their last result.
}

// Options configure a queue. Zero values get the defaults given.
type Options struct {
	BackoffScale      float64       // Multiplies the retry intervals (7.5 minutes, doubling). Default 1.
	MaxAttempts       int           // Before a temporary failure becomes permanent. Default 9.
	MaxParallel       int           // Deliveries in progress at once. Default 64.
	MaxPerDestination int           // Deliveries at once to one transport and domain. Default 16.
	DeliverTimeout    time.Duration // Deadline of one Deliver call. Default 10 minutes.
	Log               *slog.Logger  // Default: discard.
	Router            Router        // Default: every delivery through "direct".
	Deliverer         Deliverer     // Required for Start.
	// OnFailure, if set, is called for recipients that failed permanently,
	// before their state is stored: a DSN it queues is not lost if the
	// process dies. It is called from the delivery goroutine.
	OnFailure func(ctx context.Context, f Failure)
}

const (
	dbFile   = "index.db"
	spoolDir = "tmp"
)

// Queue is an open queue directory.
type Queue struct {
	dir    string
	opts   Options
	log    *slog.Logger
	db     *bstore.DB
	dirf   *os.File
	commit *committer
	lastID atomic.Int64
	closed atomic.Bool
	wake   chan struct{} // Capacity 1; wakes the dispatcher.
	wg     sync.WaitGroup

	mu      sync.Mutex
	msgs    map[int64]*entry // Messages with pending recipients or a delivery in progress.
	due     jobHeap          // Jobs not in progress, by due time.
	running int              // Deliveries in progress.
	active  map[dest]int     // Deliveries in progress, by destination.
	waiting map[dest][]*job  // Due jobs held back by MaxPerDestination, in order.
	ctx     context.Context  // Set by Start; deliveries run under it.
	stop    context.CancelFunc

	closeOnce sync.Once
	closeErr  error
}

// Open opens the queue in dir, creating it if needed. It removes message
// files without a record (left by a crash during Add) and all files in the
// spool directory, so listeners must not write to it before Open returns.
func Open(ctx context.Context, dir string, opts Options) (*Queue, error) {
	if opts.BackoffScale <= 0 {
		opts.BackoffScale = 1
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 9
	}
	if opts.MaxParallel <= 0 {
		opts.MaxParallel = 64
	}
	if opts.MaxPerDestination <= 0 {
		opts.MaxPerDestination = 16
	}
	if opts.DeliverTimeout <= 0 {
		opts.DeliverTimeout = 10 * time.Minute
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	spool := filepath.Join(dir, spoolDir)
	if err := os.MkdirAll(spool, 0o750); err != nil {
		return nil, fmt.Errorf("create queue directory: %w", err)
	}
	// The database is locked while open: another process with the queue open
	// makes this wait for ctx, before anything is cleaned up.
	db, err := bstore.Open(ctx, filepath.Join(dir, dbFile), &bstore.Options{Perm: 0o640}, DBTypes...)
	if err != nil {
		return nil, fmt.Errorf("open queue database: %w", err)
	}
	if err := removeAll(spool); err != nil {
		db.Close()
		return nil, err
	}
	q := &Queue{
		dir:     dir,
		opts:    opts,
		log:     opts.Log,
		db:      db,
		wake:    make(chan struct{}, 1),
		msgs:    map[int64]*entry{},
		active:  map[dest]int{},
		waiting: map[dest][]*job{},
	}
	msgs, err := q.load(ctx)
	if err == nil {
		q.dirf, err = os.Open(dir)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	q.commit = newCommitter(db, q.dirf, q.msgPath, q.log)
	for _, m := range msgs {
		q.scheduleLocked(m)
	}
	return q, nil
}

// load reads the records, reconciles them with the message files and seeds
// the ID counter.
func (q *Queue) load(ctx context.Context) ([]*Msg, error) {
	var msgs []*Msg
	err := bstore.QueryDB[Msg](ctx, q.db).ForEach(func(m Msg) error {
		msgs = append(msgs, &m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read queue: %w", err)
	}
	files, err := os.ReadDir(q.dir)
	if err != nil {
		return nil, fmt.Errorf("read queue directory: %w", err)
	}
	// IDs only grow: a new message never reuses the ID of an earlier one,
	// also across restarts, as long as the clock does not jump back.
	last := time.Now().UnixMicro()
	present := map[int64]bool{}
	for _, f := range files {
		id, err := parseID(f.Name())
		if err != nil || !f.Type().IsRegular() {
			continue
		}
		last = max(last, id)
		present[id] = true
	}
	known := map[int64]bool{}
	var missing []int64
	msgs = slices.DeleteFunc(msgs, func(m *Msg) bool {
		last = max(last, m.ID)
		known[m.ID] = true
		if !present[m.ID] {
			missing = append(missing, m.ID)
			return true
		}
		return false
	})
	q.lastID.Store(last)
	for id := range present {
		if !known[id] {
			// Moved in by an Add whose record was never committed.
			if err := os.Remove(q.msgPath(id)); err != nil {
				return nil, fmt.Errorf("remove orphan message file: %w", err)
			}
			q.log.Info("removed orphan message file", slog.String("queueid", formatID(id)))
		}
	}
	if len(missing) > 0 {
		// Only possible if someone removed files: the messages are gone.
		for _, id := range missing {
			q.log.Error("message file missing, dropping message", slog.String("queueid", formatID(id)))
		}
		err := q.db.Write(ctx, func(tx *bstore.Tx) error {
			_, err := bstore.QueryTx[Msg](tx).FilterIDs(missing).Delete()
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("remove records without file: %w", err)
		}
	}
	return msgs, nil
}

func removeAll(dir string) error {
	files, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read spool directory: %w", err)
	}
	for _, f := range files {
		if err := os.RemoveAll(filepath.Join(dir, f.Name())); err != nil {
			return fmt.Errorf("clean spool directory: %w", err)
		}
	}
	return nil
}

// formatID returns the external form of a message ID: lower-case hex.
func formatID(id int64) string {
	return strconv.FormatInt(id, 16)
}

func parseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 16, 64)
	if err == nil && (id <= 0 || formatID(id) != s) {
		err = fmt.Errorf("not a queue id: %q", s)
	}
	return id, err
}

func (q *Queue) msgPath(id int64) string {
	return filepath.Join(q.dir, formatID(id))
}

// SpoolDir returns a directory on the queue's file system for listeners to
// write messages to before they Add them.
func (q *Queue) SpoolDir() string {
	return filepath.Join(q.dir, spoolDir)
}

// Add queues the message in the file at path for the envelope's recipients
// and returns its queue ID. The file must be in SpoolDir (or elsewhere on the
// same file system) and need not be synced. Add takes ownership of the file:
// it is moved into the queue, or removed if Add fails. When Add returns nil,
// the message survives a crash or power loss, and it is due for delivery at
// once. ctx is only checked before the file is moved.
func (q *Queue) Add(ctx context.Context, env Envelope, path string) (string, error) {
	id := q.lastID.Add(1)
	m, err := q.add(ctx, id, env, path)
	if err != nil {
		os.Remove(path)
		os.Remove(q.msgPath(id))
		return "", err
	}
	q.mu.Lock()
	q.scheduleLocked(m)
	q.mu.Unlock()
	q.kick()
	return formatID(id), nil
}

func (q *Queue) add(ctx context.Context, id int64, env Envelope, path string) (*Msg, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if q.closed.Load() {
		return nil, ErrClosed
	}
	if len(env.Recipients) == 0 {
		return nil, errors.New("queue: message without recipients")
	}
	// Renaming first lets the file's fsync (on ext4, a journal commit) also
	// make the new directory entry durable; the committer's directory fsync,
	// once per group, makes sure of it on any file system.
	name := q.msgPath(id)
	if err := os.Rename(path, name); err != nil {
		return nil, fmt.Errorf("move message into queue: %w", err)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("open queued message: %w", err)
	}
	fi, err := f.Stat()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("sync queued message: %w", err)
	}
	now := time.Now()
	m := &Msg{
		ID:         id,
		Account:    env.Account,
		From:       env.From,
		Options:    env.Options,
		Size:       fi.Size(),
		Queued:     now,
		Recipients: make([]Rcpt, len(env.Recipients)),
	}
	for i, r := range env.Recipients {
		m.Recipients[i] = Rcpt{Recipient: r, Domain: domainOf(r.Address), NextAttempt: now}
	}
	done := make(chan error, 1)
	if err := q.commit.submit(op{insert: m, done: done}); err != nil {
		return nil, err
	}
	if err := <-done; err != nil {
		return nil, fmt.Errorf("store queued message: %w", err)
	}
	return m, nil
}

// domainOf returns the lower-cased domain of addr; empty if it has none.
func domainOf(addr string) string {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}

// MsgInfo is a queued message as List shows it.
type MsgInfo struct {
	ID         string
	Account    string
	From       string
	Size       int64
	Queued     time.Time
	Recipients []Rcpt
}

// List returns the queued messages, oldest first, as last stored.
func (q *Queue) List(ctx context.Context) ([]MsgInfo, error) {
	var l []MsgInfo
	err := bstore.QueryDB[Msg](ctx, q.db).SortAsc("ID").ForEach(func(m Msg) error {
		l = append(l, MsgInfo{ID: formatID(m.ID), Account: m.Account, From: m.From, Size: m.Size, Queued: m.Queued, Recipients: m.Recipients})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list queue: %w", err)
	}
	return l, nil
}

// Retry makes the pending recipients of message id due now.
func (q *Queue) Retry(ctx context.Context, id string) error {
	n, err := parseID(id)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	e := q.msgs[n]
	if e == nil {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	now := time.Now()
	for i := range e.msg.Recipients {
		if r := &e.msg.Recipients[i]; r.State == Pending {
			r.NextAttempt = now
		}
	}
	for _, j := range e.jobs {
		if j.index >= 0 {
			j.due = now
			q.due.fix(j)
		}
	}
	if err := q.commit.submit(op{update: e.msg.clone()}); err != nil {
		return err
	}
	q.kick()
	return nil
}

// Close stops deliveries, cancelling those in progress (their attempt does
// not count), stores what is pending and closes the database.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		q.closed.Store(true)
		q.mu.Lock()
		stop := q.stop
		q.stop = func() {} // Start after Close does nothing.
		q.mu.Unlock()
		if stop != nil {
			stop()
		}
		q.wg.Wait()
		q.commit.close()
		q.dirf.Close()
		q.closeErr = q.db.Close()
	})
	return q.closeErr
}

func (m *Msg) clone() *Msg {
	c := *m
	c.Recipients = slices.Clone(m.Recipients)
	return &c
}
