// Package queue is the durable outgoing queue: it stores messages accepted
// for remote recipients, schedules delivery attempts through transports, and
// retries temporary failures with backoff (RFC 5321 §4.5.4.1).
//
// A message is a record in a bstore database plus its content. A listener
// writes the content to a Spool: in memory up to SpoolMemory bytes, beyond
// that to a temporary file. Writes of all goroutines share transactions
// (group commit): the contents of the in-memory messages added at once are
// appended to a segment file with one write and one fdatasync, then their
// records are written in one transaction, so many SMTP sessions adding at
// once cost a few syncs per group and no file per message. A larger message
// becomes a file of its own in the queue directory. When Add returns, the
// content and the record are durable, and the record names only content
// that was durable before it.
//
// A segment file is removed when none of its messages is queued any more.
// One whose messages are mostly gone is compacted: the rest, waiting for a
// retry, are copied to a segment of the compactor's, so that a message
// waiting days keeps no segment of others and the disk holds little more
// than the queue's content.
//
// The scheduler keeps in memory only the messages due within a window
// (Options.window, 5 minutes) and those being delivered, up to maxLoaded:
// a loader reads them from an index on their due time as they come due, as
// Postfix's active queue takes from its deferred queue. Memory and start-up
// time do not grow with the queue: Open reads the segments' records, not
// the messages'.
//
// On disk, in the queue directory:
//
//	index.db   the records (bstore)
//	<id>       the content of a message with Segment 0 (larger than SpoolMemory); id in lower-case hex
//	seg/<n>    segment n: contents one after another, at the records' Offset
//	tmp/       spill files of spools, removed at Open
//
// Delivery is at least once: a message being delivered when the process dies
// is delivered again after a restart.
package queue

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
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
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

var (
	ErrClosed   = errors.New("queue: closed")          // Add after Close.
	ErrNotFound = errors.New("queue: no such message") // Retry of an unknown or finished message.
)

// Router picks the transport for a delivery attempt of a message of
// account, from the domain of its sender (zero for the null reverse-path or
// an address literal) to the recipients at to (zero for an address
// literal), after attempts earlier attempts. core/route implements it.
// Route is called with the queue's lock held: it must be quick. A panic in
// Route is recovered (core/guard): the attempt fails temporarily.
type Router interface {
	Route(account string, from, to mailaddr.Domain, attempts int) (transport string)
}

// Deliverer makes a delivery attempt through the named transport. An error
// means the transport is unavailable (not configured, plugin down): every
// recipient of the request then fails temporarily with the error's text.
// A panic in Deliver is recovered (core/guard) and fails every recipient of
// the request temporarily.
type Deliverer interface {
	Deliver(ctx context.Context, transport string, req *sdk.DeliverRequest) (*sdk.DeliverResult, error)
}

// Notice describes recipients of a message that failed permanently, or that
// are still pending after Options.DelayAfter attempts, for a delivery status
// notification (RFC 3464).
type Notice struct {
	Delayed    bool // Still pending (a delay), rather than failed.
	QueueID    string
	Account    string
	From       string // Where the DSN goes; empty for the null reverse-path: no DSN (RFC 5321 §4.5.5).
	Options    sdk.DeliverOptions
	Queued     time.Time
	Message    *io.SectionReader // The content, readable until Notify returns; nil if it could not be opened.
	Recipients []Rcpt            // The failed (State Failed) or delayed recipients, with their last result; see Queue.RetryUntil.
	// Key is the same for the same notice made again: QueueID, "/", and a
	// hash of the kind and the recipients. Give it as Envelope.NoticeKey.
	Key string
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
	// DelayAfter is the number of failed attempts after which a recipient
	// still pending is reported once as delayed. Default 5.
	DelayAfter int
	// Notify, if set, is called for recipients that failed permanently or
	// were delayed, before their state is stored: a DSN it queues is not lost
	// if the process dies, and one it queues with Envelope.NoticeKey set to
	// Notice.Key is not queued twice when the notice is made again after a
	// restart. It is called from the
	// delivery goroutine, with a deadline of NotifyTimeout. It returns nil
	// once the DSN is queued, or if there is none to send; an error (the
	// disk is full) or a panic (recovered, core/guard) keeps the notice
	// due, stored: a failed recipient is stored as Failing, a delayed one
	// with DelayUnreported, and Notify is called again for them after a
	// backoff (1 minute doubling up to an hour, times BackoffScale), without
	// another delivery attempt, also after a restart.
	Notify func(ctx context.Context, n Notice) error
	// NotifyTimeout is the deadline of one Notify call. Default 1 minute.
	NotifyTimeout time.Duration
	// KeepRetired, if set, returns how long a message that leaves the
	// queue is kept as a Retired record with its attempts, by the account
	// that sent it (empty for relayed mail and notices); zero: not kept.
	KeepRetired func(account string) time.Duration

	pruneInterval time.Duration // Between prunings of expired retired messages; tests set it. Default 1 hour.
	window        time.Duration // How far ahead messages due are kept in memory; tests set it. Default loadWindow.
	maxLoaded     int           // Messages kept in memory at most, but for those added due at once; tests set it. Default 20,000.
	segmentSize   int64         // Size past which a new segment is started; tests set it. Default 64 MiB.
}

const (
	dbFile     = "index.db"
	spoolDir   = "tmp"
	segmentDir = "seg"
)

// Queue is an open queue directory.
type Queue struct {
	dir    string
	opts   Options
	log    *slog.Logger
	db     *bstore.DB
	dirf   *os.File
	segs   *segments
	commit *committer
	bufs   sync.Pool // Of *[]byte, for spools.
	holds  holdRules
	lastID atomic.Int64
	queued atomic.Int64 // Messages stored: counted at Open, then kept by the committer.
	// lastAttempt is the ID of the last Attempt.
	lastAttempt atomic.Int64
	closed      atomic.Bool
	wake        chan struct{} // Capacity 1; wakes the dispatcher.
	loadWake    chan struct{} // Capacity 1; wakes the loader.
	workers     workers       // Run the deliveries.
	wg          sync.WaitGroup

	mu sync.Mutex
	// msgs are the messages the scheduler has in memory: those due within
	// Options.window (up to maxLoaded), and those with a delivery in
	// progress or waiting for its destination. The others are on disk
	// only, and the loader reads them as they come due (see loadDue).
	// Where a message is in memory, its entry is what counts; its record
	// may lag behind it.
	msgs map[int64]*entry
	// settling counts, by message, the changes submitted as the message
	// left memory and not yet stored: until they are, its record is
	// stale, and neither the loader nor an operator's command reads it.
	settling map[int64]int
	// recent, while the loader reads records, holds the messages that
	// left memory since it started: the records it read of them may be
	// stale.
	recent map[int64]bool
	// spilled: a message due within the window is not in memory because
	// maxLoaded was reached; the loader runs again when room frees up.
	spilled bool
	due     jobHeap         // Jobs not in progress, by due time.
	running int             // Deliveries in progress.
	active  map[dest]int    // Deliveries in progress, by destination.
	waiting map[dest][]*job // Due jobs held back by MaxPerDestination, in order.
	ctx     context.Context // Set by Start; deliveries run under it.
	stop    context.CancelFunc

	closeOnce sync.Once
	closeErr  error
}

// Open opens the queue in dir, creating it if needed. It removes message and
// segment files that no record names (left by a crash during Add, or during
// or after a removal) and all files in the spool directory, so spools must not
// be written before Open returns.
func Open(ctx context.Context, dir string, opts Options) (*Queue, error) {
	if opts.BackoffScale <= 0 {
		opts.BackoffScale = 1
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 9
	}
	if opts.DelayAfter <= 0 {
		opts.DelayAfter = 5
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
	if opts.NotifyTimeout <= 0 {
		opts.NotifyTimeout = time.Minute
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.pruneInterval <= 0 {
		opts.pruneInterval = time.Hour
	}
	if opts.segmentSize <= 0 {
		opts.segmentSize = defaultSegmentSize
	}
	if opts.window <= 0 {
		opts.window = loadWindow
	}
	if opts.maxLoaded <= 0 {
		opts.maxLoaded = 20_000
	}
	spool := filepath.Join(dir, spoolDir)
	if err := os.MkdirAll(spool, 0o750); err != nil {
		return nil, fmt.Errorf("create queue directory: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, segmentDir), 0o750); err != nil {
		return nil, fmt.Errorf("create segment directory: %w", err)
	}
	// The database is locked while open: another process with the queue open
	// makes this wait for ctx, before anything is cleaned up.
	db, err := bstore.Open(ctx, filepath.Join(dir, dbFile), &bstore.Options{Perm: 0o640}, DBTypes...)
	if err != nil {
		return nil, fmt.Errorf("open queue database: %w", err)
	}
	// Their IDs only grow: full pages where they are appended make the
	// database, and the pages a scan of it maps, about a third smaller.
	if err := db.HintAppend(true, Msg{}, Attempt{}, Retired{}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open queue database: %w", err)
	}
	if err := removeAll(spool); err != nil {
		db.Close()
		return nil, err
	}
	q := &Queue{
		dir:      dir,
		opts:     opts,
		log:      opts.Log,
		db:       db,
		wake:     make(chan struct{}, 1),
		loadWake: make(chan struct{}, 1),
		workers:  newWorkers(),
		msgs:     map[int64]*entry{},
		settling: map[int64]int{},
		active:   map[dest]int{},
		waiting:  map[dest][]*job{},
		segs:     &segments{dir: filepath.Join(dir, segmentDir), max: opts.segmentSize, log: opts.Log, m: map[int64]*segment{}, kick: make(chan struct{}, 1)},
	}
	loadStart := time.Now()
	queued, err := q.load(ctx)
	if err == nil {
		q.log.Info("queue opened", slog.Int("messages", queued), slog.Duration("duration", time.Since(loadStart)))
		err = q.loadHoldRules(ctx)
	}
	if err == nil {
		err = q.openDirs()
	}
	if err != nil {
		q.dirf.Close()
		q.segs.close()
		db.Close()
		return nil, err
	}
	q.queued.Store(int64(queued))
	q.commit = newCommitter(db, q.dirf, q.segs, q.msgPath, q.settled, &q.queued, q.log)
	return q, nil
}

// openDirs opens the queue and segment directories, for syncing.
func (q *Queue) openDirs() error {
	var err error
	if q.dirf, err = os.Open(q.dir); err != nil {
		return fmt.Errorf("open queue directory: %w", err)
	}
	if q.segs.dirf, err = os.Open(q.segs.dir); err != nil {
		return fmt.Errorf("open segment directory: %w", err)
	}
	// The segment directory's entry must be durable before a segment in it.
	if err := q.dirf.Sync(); err != nil {
		return fmt.Errorf("sync queue directory: %w", err)
	}
	return nil
}

// load reconciles the records with the message and segment files, opens
// the segments, seeds the ID counter, and sets Due of records from before
// it existed. It reads the segments' records and the records of message
// files, not every message, so it takes about as long for a million
// messages as for ten. It returns the number of queued messages; none is
// kept in memory: the loader reads those due soon (see loadDue).
func (q *Queue) load(ctx context.Context) (int, error) {
	files, err := os.ReadDir(q.dir)
	if err != nil {
		return 0, fmt.Errorf("read queue directory: %w", err)
	}
	segFiles, err := os.ReadDir(q.segs.dir)
	if err != nil {
		return 0, fmt.Errorf("read segment directory: %w", err)
	}
	// IDs only grow: a new message never reuses the ID of an earlier one,
	// also across restarts, as long as the clock does not jump back.
	last := time.Now().UnixMicro()
	count := 0
	for _, f := range files {
		id, err := parseID(f.Name())
		if err != nil || !f.Type().IsRegular() {
			continue
		}
		last = max(last, id)
		m, err := bstore.QueryDB[Msg](ctx, q.db).FilterID(id).Get()
		if err == nil && m.Segment == 0 {
			count++
			continue
		} else if err != nil && err != bstore.ErrAbsent {
			return 0, fmt.Errorf("read queue: %w", err)
		}
		// Moved in by an Add whose record was never committed, or copied
		// out of its segment by an earlier version that did not finish.
		if err := os.Remove(q.msgPath(id)); err != nil {
			return 0, fmt.Errorf("remove orphan message file: %w", err)
		}
		q.log.Info("removed orphan message file", slog.String("queueid", formatID(id)))
	}
	recs := map[int64]segmentRecord{}
	err = bstore.QueryDB[segmentRecord](ctx, q.db).ForEach(func(r segmentRecord) error {
		recs[r.N] = r
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read queue segments: %w", err)
	}
	for _, f := range segFiles {
		n, ok := parseSegment(f.Name())
		if !ok || !f.Type().IsRegular() {
			continue
		}
		fi, err := f.Info()
		if err != nil {
			return 0, fmt.Errorf("read segment directory: %w", err)
		}
		// Never appended to again: its tail may be torn.
		q.segs.last = max(q.segs.last, n)
		r, ok := recs[n]
		delete(recs, n)
		if !ok {
			// No record: appended to by Adds whose records were never
			// committed, or left by a crash during or after the removal of
			// its messages, or written by a version without segment
			// records.
			if r, err = q.countSegment(ctx, n); err != nil {
				return 0, err
			}
		}
		if r.Messages == 0 {
			if err := os.Remove(q.segs.path(n)); err != nil {
				return 0, fmt.Errorf("remove unused segment file: %w", err)
			}
			continue
		}
		file, err := os.Open(q.segs.path(n))
		if err != nil {
			return 0, fmt.Errorf("open segment file: %w", err)
		}
		seg := &segment{n: n, f: file, size: fi.Size(), live: r.Messages, bytes: r.Bytes}
		q.segs.m[n] = seg
		q.segs.checkLocked(seg)
		count += r.Messages
	}
	for n := range recs {
		// Only possible if someone removed the file: its messages are gone.
		if err := q.dropSegment(ctx, n); err != nil {
			return 0, err
		}
	}
	if m, err := bstore.QueryDB[Msg](ctx, q.db).SortDesc("ID").Limit(1).Get(); err == nil {
		last = max(last, m.ID)
	} else if err != bstore.ErrAbsent {
		return 0, fmt.Errorf("read queue: %w", err)
	}
	if r, err := bstore.QueryDB[Retired](ctx, q.db).SortDesc("ID").Limit(1).Get(); err == nil {
		last = max(last, r.ID) // A retired message keeps its ID.
	} else if err != bstore.ErrAbsent {
		return 0, fmt.Errorf("read retired messages: %w", err)
	}
	q.lastID.Store(last)
	if a, err := bstore.QueryDB[Attempt](ctx, q.db).SortDesc("ID").Limit(1).Get(); err == nil {
		q.lastAttempt.Store(a.ID)
	} else if err != bstore.ErrAbsent {
		return 0, fmt.Errorf("read delivery attempts: %w", err)
	}
	var undated []int64
	if err := bstore.QueryDB[Msg](ctx, q.db).FilterEqual("Due", time.Time{}).IDs(&undated); err != nil {
		return 0, fmt.Errorf("read queue: %w", err)
	}
	if err := q.date(ctx, undated); err != nil {
		return 0, err
	}
	return count, nil
}

// countSegment counts the messages in segment n from their records, and
// stores the count if there are any.
func (q *Queue) countSegment(ctx context.Context, n int64) (segmentRecord, error) {
	r := segmentRecord{N: n}
	err := q.db.Write(ctx, func(tx *bstore.Tx) error {
		err := bstore.QueryTx[Msg](tx).FilterEqual("Segment", n).ForEach(func(m Msg) error {
			r.Messages++
			r.Bytes += m.Size
			return nil
		})
		if err != nil || r.Messages == 0 {
			return err
		}
		return tx.Insert(&r)
	})
	if err != nil {
		return r, fmt.Errorf("count messages of segment %d: %w", n, err)
	}
	return r, nil
}

// dropSegment removes the messages of segment n, whose file is gone, and
// its record.
func (q *Queue) dropSegment(ctx context.Context, n int64) error {
	err := q.db.Write(ctx, func(tx *bstore.Tx) error {
		var ids []int64
		if err := bstore.QueryTx[Msg](tx).FilterEqual("Segment", n).IDs(&ids); err != nil {
			return err
		}
		for _, id := range ids {
			q.log.Error("message content missing, dropping message", slog.String("queueid", formatID(id)), slog.Int64("segment", n))
			if err := deleteAttempts(tx, id); err != nil {
				return err
			}
			if err := tx.Delete(&Msg{ID: id}); err != nil {
				return err
			}
		}
		return tx.Delete(&segmentRecord{N: n})
	})
	if err != nil {
		return fmt.Errorf("remove records without content: %w", err)
	}
	return nil
}

// date sets Due and Domains of the records of ids, stored before they
// existed.
func (q *Queue) date(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	err := q.db.Write(ctx, func(tx *bstore.Tx) error {
		for _, id := range ids {
			m := Msg{ID: id}
			if err := tx.Get(&m); err != nil {
				return err
			}
			m.stamp()
			if err := tx.Update(&m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set due times of queued messages: %w", err)
	}
	return nil
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

func (q *Queue) spoolDir() string {
	return filepath.Join(q.dir, spoolDir)
}

// Add queues the message in s for the envelope's recipients and returns its
// queue ID. It consumes s, also when it fails. When Add returns nil, the
// message survives a crash or power loss, and it is due for delivery at once,
// or at env.ReleaseAt.
// ctx is only checked before the message is stored.
func (q *Queue) Add(ctx context.Context, env Envelope, s *Spool) (string, error) {
	defer s.Discard()
	if env.NoticeKey != "" {
		r, err := bstore.QueryDB[noticeRecord](ctx, q.db).FilterID(env.NoticeKey).Get()
		if err == nil {
			return formatID(r.MsgID), nil // Queued already.
		} else if err != bstore.ErrAbsent {
			return "", fmt.Errorf("queue: notice %s: %w", env.NoticeKey, err)
		}
	}
	id := q.lastID.Add(1)
	// Counted as settling until it is scheduled here: the loader may read
	// its record first, and must leave it to Add.
	q.mu.Lock()
	q.settling[id]++
	q.mu.Unlock()
	m, err := q.add(ctx, id, env, s)
	if err != nil {
		q.mu.Lock()
		q.settledLocked(id)
		q.mu.Unlock()
		return "", err
	}
	q.mu.Lock()
	q.settledLocked(id)
	if q.wantLocked(m, time.Now()) {
		q.scheduleLocked(m)
	}
	q.mu.Unlock()
	q.kick()
	return formatID(id), nil
}

func (q *Queue) add(ctx context.Context, id int64, env Envelope, s *Spool) (*Msg, error) {
	switch {
	case s.q != q:
		return nil, errors.New("queue: spool of another queue")
	case s.done:
		return nil, errSpoolDone
	case s.err != nil:
		return nil, s.err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if q.closed.Load() {
		return nil, ErrClosed
	}
	if len(env.Recipients) == 0 {
		return nil, errors.New("queue: message without recipients")
	}
	now := time.Now()
	m := &Msg{
		ID:         id,
		Account:    env.Account,
		From:       env.From,
		Options:    env.Options,
		Size:       s.size,
		Queued:     now,
		Recipients: make([]Rcpt, len(env.Recipients)),
	}
	first := now
	if env.ReleaseAt.After(now) {
		first = env.ReleaseAt
	}
	from := strings.ToLower(addressDomain(env.From).ASCII)
	for i, r := range env.Recipients {
		m.Recipients[i] = Rcpt{Recipient: r, Domain: domainOf(r.Address), NextAttempt: first}
		if q.holds.holds(env.Account, from, m.Recipients[i].Domain) {
			m.Recipients[i].State = Held
		}
	}
	o := op{insert: m}
	if env.NoticeKey != "" {
		of, _, _ := strings.Cut(env.NoticeKey, "/")
		n, err := parseID(of)
		if err != nil {
			return nil, fmt.Errorf("queue: notice key %q: %w", env.NoticeKey, err)
		}
		o.notice = &noticeRecord{Key: env.NoticeKey, MsgID: id, Of: n}
	}
	m.MessageID, m.Subject = s.msgID, s.subject
	if s.f == nil {
		m.MessageID, m.Subject = headerFields(*s.buf)
		o.data = *s.buf // The committer appends it to a segment.
	} else if err := q.moveIn(id, s); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	o.done = done
	err := q.commit.submit(o)
	if err == nil {
		if err = <-done; err != nil {
			err = fmt.Errorf("store queued message: %w", err)
		}
	}
	if err != nil && o.data == nil {
		os.Remove(q.msgPath(id))
	}
	return m, err
}

// moveIn makes the spill file of s the file of message id, synced; the
// committer syncs the directory before the record names the file.
func (q *Queue) moveIn(id int64, s *Spool) error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("write spool file: %w", err)
	}
	// Renaming first lets the file's fsync (on ext4, a journal commit) also
	// make the new directory entry durable.
	name := q.msgPath(id)
	if err := os.Rename(s.f.Name(), name); err != nil {
		return fmt.Errorf("move message into queue: %w", err)
	}
	err := s.f.Sync()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	s.f = nil
	if err != nil {
		os.Remove(name)
		return fmt.Errorf("sync queued message: %w", err)
	}
	return nil
}

// domainOf returns the key recipients are grouped by: the A-labels of
// addr's domain (so bücher.example and xn--bcher-kva.example go together),
// an address literal in lower case, or, for an address that does not parse
// (the queue takes what its callers checked), its domain in lower case.
func domainOf(addr string) string {
	if a, err := mailaddr.ParseAddress(addr); err == nil {
		if a.Literal != "" {
			return strings.ToLower(a.Literal)
		}
		return a.Domain.ASCII
	}
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return ""
	}
	return strings.ToLower(addr[i+1:])
}

// addressDomain returns the domain of addr, zero if it has none or is an
// address literal.
func addressDomain(addr string) mailaddr.Domain {
	a, _ := mailaddr.ParseAddress(addr)
	return a.Domain
}

// MsgInfo is a queued message as List shows it.
type MsgInfo struct {
	ID         string
	Account    string
	From       string
	MessageID  string
	Subject    string
	Options    sdk.DeliverOptions
	Size       int64
	Queued     time.Time
	Recipients []Rcpt
	// Delivering are the domains (as Rcpt.Domain) whose pending
	// recipients are being delivered now.
	Delivering []string
}

// DeliveringTo reports whether r, a recipient of m, is being delivered.
func (m MsgInfo) DeliveringTo(r Rcpt) bool {
	return r.State == Pending && slices.Contains(m.Delivering, r.Domain)
}

// List returns the queued messages, oldest first, as last stored, with
// the deliveries in progress now.
func (q *Queue) List(ctx context.Context) ([]MsgInfo, error) {
	l, _, err := q.Select(ctx, Filter{}, nil)
	return l, err
}

// Select returns the queued messages f matches, as List would, and how
// many messages are queued. route is as for Filter.Match. Messages with
// f.IDs are read by ID, those a recipient filter can match by
// Msg.Domains, the others are matched as they are read, so only those
// selected are kept.
func (q *Queue) Select(ctx context.Context, f Filter, route func(MsgInfo, Rcpt) string) ([]MsgInfo, int, error) {
	now := time.Now()
	// Deliveries in progress are known only after reading, and a recipient
	// being delivered is pending: "delivering" is matched as pending first.
	first := f
	if f.State == "delivering" {
		first.State = "pending"
	}
	query := bstore.QueryDB[Msg](ctx, q.db)
	if len(f.IDs) > 0 {
		query.FilterIDs(parseIDs(f.IDs))
	} else if d := f.toDomain(); d != "" {
		query.FilterIn("Domains", d)
	}
	var l []MsgInfo
	err := query.SortAsc("ID").ForEach(func(m Msg) error {
		if mi := info(&m); first.Match(mi, now, route) {
			l = append(l, mi)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list queue: %w", err)
	}
	total := int(q.queued.Load())
	q.mu.Lock()
	for i := range l {
		l[i].Delivering = q.deliveringLocked(l[i].ID)
	}
	q.mu.Unlock()
	if f.State == "delivering" {
		l = slices.DeleteFunc(l, func(m MsgInfo) bool { return !f.Match(m, now, route) })
	}
	return l, total, nil
}

// parseIDs returns the queue IDs of ids that are well formed; the others
// match no message.
func parseIDs(ids []string) []int64 {
	l := make([]int64, 0, len(ids))
	for _, s := range ids {
		if n, err := parseID(s); err == nil {
			l = append(l, n)
		}
	}
	return l
}

// Get returns queued message id as List would; ErrNotFound if there is
// none.
func (q *Queue) Get(ctx context.Context, id string) (MsgInfo, error) {
	m, err := getByID[Msg](ctx, q, id, "queued message")
	if err != nil {
		return MsgInfo{}, err
	}
	mi := info(&m)
	q.mu.Lock()
	mi.Delivering = q.deliveringLocked(mi.ID)
	q.mu.Unlock()
	return mi, nil
}

// getByID reads the record of type T with queue ID id; ErrNotFound if
// there is none. what names the record in errors.
func getByID[T any](ctx context.Context, q *Queue, id, what string) (T, error) {
	var zero T
	n, err := parseID(id)
	if err != nil {
		return zero, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	v, err := bstore.QueryDB[T](ctx, q.db).FilterID(n).Get()
	if err == bstore.ErrAbsent {
		return zero, fmt.Errorf("%w: %s", ErrNotFound, id)
	} else if err != nil {
		return zero, fmt.Errorf("%s %s: %w", what, id, err)
	}
	return v, nil
}

func info(m *Msg) MsgInfo {
	return MsgInfo{ID: formatID(m.ID), Account: m.Account, From: m.From, MessageID: m.MessageID, Subject: m.Subject, Options: m.Options, Size: m.Size, Queued: m.Queued, Recipients: m.Recipients}
}

// deliveringLocked returns the domains of message id being delivered now.
func (q *Queue) deliveringLocked(id string) []string {
	n, _ := parseID(id)
	e := q.msgs[n]
	if e == nil {
		return nil
	}
	var l []string
	for domain, j := range e.jobs {
		if j.running {
			l = append(l, domain)
		}
	}
	return l
}

// Reschedule makes the pending recipients of message id due at at, and
// its notices that Notify could not queue yet due by then, and returns
// once that is durable; it reports whether the message had any. A
// recipient being delivered gets its next attempt from that attempt's end,
// as if not rescheduled.
func (q *Queue) Reschedule(ctx context.Context, id string, at time.Time) (bool, error) {
	return q.change(ctx, id, func(e *entry) bool {
		changed := false
		for i := range e.msg.Recipients {
			r := &e.msg.Recipients[i]
			if r.State == Pending {
				r.NextAttempt, changed = at, true
			}
			if r.unreported() && r.NotifyAt.After(at) {
				r.NotifyAt, changed = at, true
			}
		}
		if changed {
			for domain := range e.jobs {
				q.dueLocked(e, domain, at)
			}
		}
		return changed
	})
}

// Hold stops the delivery of message id's pending recipients until
// Release, and returns once that is durable; it reports whether the
// message had any. An attempt in progress ends as usual: delivered or
// failed, or held after a temporary failure.
func (q *Queue) Hold(ctx context.Context, id string) (bool, error) {
	return q.change(ctx, id, func(e *entry) bool {
		changed := false
		for i := range e.msg.Recipients {
			if r := &e.msg.Recipients[i]; r.State == Pending {
				r.State, changed = Held, true
			}
		}
		// Jobs waiting in the heap go; one in progress or held back for
		// its destination finds no recipient to attempt.
		for domain, j := range e.jobs {
			if j.index < 0 {
				continue
			}
			if at, ok := e.due(domain); ok {
				j.due = at
				q.due.fix(j)
			} else {
				heap.Remove(&q.due, j.index)
				delete(e.jobs, domain)
			}
		}
		return changed
	})
}

// Release makes message id's held recipients pending and due now, and
// returns once that is durable; it reports whether the message had any.
func (q *Queue) Release(ctx context.Context, id string) (bool, error) {
	now := time.Now()
	return q.change(ctx, id, func(e *entry) bool {
		changed := false
		for i := range e.msg.Recipients {
			if r := &e.msg.Recipients[i]; r.State == Held {
				r.State, r.NextAttempt, changed = Pending, now, true
			}
		}
		for _, r := range e.msg.Recipients {
			if r.State == Pending {
				q.dueLocked(e, r.Domain, now)
			}
		}
		return changed
	})
}

// operatorFailure is the result of a recipient the operator failed.
var operatorFailure = sdk.RecipientResult{Status: sdk.StatusPermanent, EnhancedCode: "5.0.0", Text: "delivery cancelled by the mail server's operator"}

// Fail fails message id's pending and held recipients permanently, with a
// DSN to the sender that says the operator did it, and returns once that is
// durable; it reports whether the message had any. A recipient being
// delivered fails when that attempt ends, unless it is delivered.
func (q *Queue) Fail(ctx context.Context, id string) (bool, error) {
	now := time.Now()
	return q.change(ctx, id, func(e *entry) bool {
		busy := map[string]bool{} // Domains with an attempt under way.
		for domain, j := range e.jobs {
			busy[domain] = j.index < 0
		}
		changed := false
		for i := range e.msg.Recipients {
			r := &e.msg.Recipients[i]
			if r.State != Pending && r.State != Held {
				continue
			}
			changed = true
			if busy[r.Domain] {
				e.fail = true // At the attempt's end.
				continue
			}
			failByOperator(r, now)
		}
		// The notices are made as those Notify could not queue before.
		for _, r := range e.msg.Recipients {
			if r.State == Failing {
				q.dueLocked(e, r.Domain, now)
			}
		}
		return changed
	})
}

// failByOperator makes r failed by the operator, its DSN due now.
func failByOperator(r *Rcpt, now time.Time) {
	r.State, r.NotifyAt, r.Last, r.DelayUnreported = Failing, now, operatorFailure, false
	r.Last.Address = r.Address
}

// Drop removes message id without a DSN. If a delivery of it is under
// way (or waits for its destination), its recipients are held at once and
// the message goes when that attempt ends; otherwise it goes now, durably
// before Drop returns.
func (q *Queue) Drop(ctx context.Context, id string) error {
	n, err := parseID(id)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	q.mu.Lock()
	e, _, err := q.entryLocked(ctx, n)
	if err != nil || e.dropped {
		q.mu.Unlock()
		if err == nil || errors.Is(err, ErrNotFound) {
			err = fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return err
	}
	busy := false
	for domain, j := range e.jobs {
		if j.index < 0 {
			busy = true
			continue
		}
		heap.Remove(&q.due, j.index)
		delete(e.jobs, domain)
	}
	var o op
	if busy {
		e.dropped = true
		for i := range e.msg.Recipients {
			if r := &e.msg.Recipients[i]; r.State == Pending || r.State == Failing {
				r.State = Held
			}
		}
		o = op{update: e.msg.clone()}
	} else {
		q.forgetLocked(e)
		o = q.retireOp(e.msg, true, time.Now())
		o.evicted = true
		q.log.Info("message dropped by the operator", slog.String("queueid", id))
	}
	done := make(chan error, 1)
	o.done = done
	err = q.submitLocked(o)
	q.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// dueLocked makes e's job at domain due at at: a new job if there is
// none; one in progress or held back for its destination keeps its turn.
func (q *Queue) dueLocked(e *entry, domain string, at time.Time) {
	switch j := e.jobs[domain]; {
	case j == nil:
		j = &job{e: e, domain: domain, due: at, index: -1}
		e.jobs[domain] = j
		heap.Push(&q.due, j)
	case j.index >= 0:
		j.due = at
		q.due.fix(j)
	}
}

// change applies f to message id's entry under the lock and, if f reports
// a change, stores the message and waits until that is durable.
func (q *Queue) change(ctx context.Context, id string, f func(e *entry) bool) (bool, error) {
	n, err := parseID(id)
	if err != nil {
		return false, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	q.mu.Lock()
	e, read, err := q.entryLocked(ctx, n)
	if err != nil || e.dropped {
		q.mu.Unlock()
		if err == nil || errors.Is(err, ErrNotFound) {
			err = fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		return false, err
	}
	if !f(e) {
		if read {
			// Its record is as it is: it may go back at once.
			q.evictLocked(e, time.Now())
		}
		q.mu.Unlock()
		return false, nil
	}
	done := make(chan error, 1)
	o := op{update: e.msg.clone(), done: done}
	o.evicted = q.evictLocked(e, time.Now())
	err = q.submitLocked(o)
	q.mu.Unlock()
	if err != nil {
		return false, err
	}
	q.kick()
	select {
	case err := <-done:
		return err == nil, err
	case <-ctx.Done():
		return false, ctx.Err()
	}
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
		q.segs.close()
		q.closeErr = q.db.Close()
	})
	return q.closeErr
}

func (m *Msg) clone() *Msg {
	c := *m
	c.Recipients = slices.Clone(m.Recipients)
	return &c
}
