package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mjl-/bstore"

	"github.com/switchyard-mta/switchyard/core/guard"
	"github.com/switchyard-mta/switchyard/sdk"
)

// DBTypes are the types stored in the queue database.
var DBTypes = []any{Msg{}, HoldRule{}, Attempt{}, Retired{}, noticeRecord{}, segmentRecord{}}

// noticeRecord says that the notice with Key (Envelope.NoticeKey) was
// queued as message MsgID, about message Of. It is kept until Of leaves
// the queue, so that the notice is not queued again, even once it was
// delivered.
type noticeRecord struct {
	Key   string `bstore:"typename QueueNotice"`
	MsgID int64
	Of    int64 `bstore:"index"`
}

// segmentRecord counts the queued messages with content in segment N and
// their bytes. It is stored in the transactions that change them, so Open
// reads these instead of every message.
type segmentRecord struct {
	N        int64 `bstore:"noauto,typename QueueSegment"`
	Messages int
	Bytes    int64
}

// Msg is a queued message. Its content is Size bytes at Offset in segment
// file Segment, or, if Segment is 0, the file named by the formatted ID in
// the queue directory.
type Msg struct {
	ID         int64              `bstore:"noauto,typename QueueMsg"` // See Queue.Add for how IDs are assigned.
	Account    string             // Authenticated sender account; empty for relayed mail.
	From       string             // MAIL FROM; empty for the null reverse-path.
	MessageID  string             // Of the header, for log lines; empty if none.
	Subject    string             // Of the header as sent (RFC 2047 encoded words not decoded), for retired records.
	Options    sdk.DeliverOptions // ESMTP parameters of the message.
	Size       int64              // Bytes of content.
	Segment    int64              `bstore:"index"` // Segment file with the content; 0: a file of its own. Changed only by the committer: an insert, and a relocation.
	Offset     int64              // Of the content in Segment.
	Queued     time.Time          `bstore:"nonzero"`
	Recipients []Rcpt
	// Due is when the queue next needs the message: the earliest wake of
	// its recipients (Rcpt.wake), or never if none has one. The committer
	// sets it as it stores the record; the scheduler reads the messages
	// due soon by it, so that those due later stay on disk only.
	Due time.Time `bstore:"index"`
	// Domains are those of the recipients (Rcpt.Domain), each once, set
	// with Due: a command with a recipient filter reads only the messages
	// that can match, not the whole queue.
	Domains []string `bstore:"index"`
}

// stamp sets the fields of m the committer derives as it stores it.
func (m *Msg) stamp() {
	m.Due = m.nextWake()
	m.Domains = m.Domains[:0]
	for _, r := range m.Recipients {
		if !slices.Contains(m.Domains, r.Domain) {
			m.Domains = append(m.Domains, r.Domain)
		}
	}
}

// never is Msg.Due of a message no recipient of which has a wake: held,
// or only done recipients. A zero Due is a record from before Due existed,
// set at Open.
var never = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// nextWake returns what Due of m is.
func (m *Msg) nextWake() time.Time {
	due := never
	for i := range m.Recipients {
		if at, ok := m.Recipients[i].wake(); ok && at.Before(due) {
			due = at
		}
	}
	return due
}

// State is where a recipient is in its delivery.
type State int

const (
	Pending   State = iota // To be attempted at NextAttempt.
	Delivered              // Accepted by the destination.
	Failed                 // Failed permanently, and its DSN (RFC 3464) queued by Notify.
	// Failing is failed permanently, but Notify could not queue the DSN
	// yet: it is called again at NotifyAt, without another delivery
	// attempt, and the recipient is Failed once it succeeds.
	Failing
	// Held is pending, but not attempted until released (mta queue
	// release); an attempt in progress when it was held ends as usual,
	// and a temporary failure leaves it held.
	Held
)

func (s State) String() string {
	switch s {
	case Delivered:
		return "delivered"
	case Failed:
		return "failed"
	case Failing:
		return "failing"
	case Held:
		return "held"
	default:
		return "pending"
	}
}

// Rcpt is one recipient of a queued message and its delivery state.
type Rcpt struct {
	sdk.Recipient
	Domain      string // Address's domain in A-labels (domainOf); recipients of one domain are delivered together.
	State       State
	Attempts    int       // Delivery attempts made so far.
	NextAttempt time.Time // When Pending: when the next attempt is due.
	LastAttempt time.Time // Zero before the first attempt.
	Last        sdk.RecipientResult
	// DelayUnreported is set on a Pending recipient whose delay notice
	// Notify could not queue: it is called again at NotifyAt, or with the
	// next attempt, whichever comes first, unless that attempt ends it.
	DelayUnreported bool
	NotifyAt        time.Time // When Failing or DelayUnreported: when Notify is called again.
	NotifyFailures  int       // Failed Notify calls for the notice still due; they back off NotifyAt.
}

// unreported reports whether a notice about r is due that Notify has not
// queued yet.
func (r *Rcpt) unreported() bool {
	return r.State == Failing || r.State == Pending && r.DelayUnreported
}

// wake returns when the job of r's domain must run for r: its next
// attempt, or the next Notify call of a notice still due; false if never.
func (r *Rcpt) wake() (time.Time, bool) {
	switch {
	case r.State == Failing:
		return r.NotifyAt, true
	case r.State != Pending:
		return time.Time{}, false
	case r.DelayUnreported && r.NotifyAt.Before(r.NextAttempt):
		return r.NotifyAt, true
	}
	return r.NextAttempt, true
}

// op is a change for the committer: at most one of insert, update,
// remove and relocate, and an attempt stored before it, if any.
type op struct {
	insert *Msg
	data   []byte        // With insert: the content, for the committer to append to a segment; nil if in its own file.
	notice *noticeRecord // With insert: the notice it is.
	// update is a copy owned by the committer. Its content stays where the
	// stored record says: only relocations move it.
	update *Msg
	remove int64 // Message ID: the record, then the file or the message's part of its segment, are removed.
	// retire, with remove, is stored in the message's place, which keeps
	// its attempts; without it they are removed with the message.
	retire   *Retired
	relocate *relocation
	attempt  *Attempt // Stored, new or replacing the one with its ID; owned by the committer.
	// evicted: the message left the scheduler's memory with this change
	// (see Queue.settling), which the committer reports once it is
	// stored or failed.
	evicted bool
	done    chan<- error
}

// relocation makes the record of message ID name the copy of its content
// at NewOffset in segment To, if it still names the content at Offset in
// segment From: compaction copied it there.
type relocation struct {
	ID, From, Offset, To, NewOffset int64
}

// effects are what the changes of a transaction do to segments and files,
// applied once it is committed.
type effects struct {
	segs     map[int64]segDelta
	files    []int64 // Messages whose own file goes.
	messages int     // Messages added less those removed.
}

type segDelta struct {
	messages int
	bytes    int64
}

func (e *effects) add(seg int64, messages int, bytes int64) {
	if seg == 0 {
		return
	}
	if e.segs == nil {
		e.segs = map[int64]segDelta{}
	}
	d := e.segs[seg]
	d.messages += messages
	d.bytes += bytes
	e.segs[seg] = d
}

// store updates the segment records by e, in tx.
func (e *effects) store(tx *bstore.Tx) error {
	for n, d := range e.segs {
		r := segmentRecord{N: n}
		err := tx.Get(&r)
		exists := err == nil
		if err != nil && !errors.Is(err, bstore.ErrAbsent) {
			return err
		}
		r.Messages += d.messages
		r.Bytes += d.bytes
		switch {
		case r.Messages <= 0 && exists:
			err = tx.Delete(&r)
		case r.Messages <= 0:
		case exists:
			err = tx.Update(&r)
		default:
			err = tx.Insert(&r)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// committer writes the changes of all goroutines in shared transactions
// (group commit): bstore fsyncs each write transaction, and one fsync per
// message would cap the queue at about one message per fsync latency. The
// content of in-memory messages of a group is appended to the current
// segment with one write and one fdatasync.
type committer struct {
	db      *bstore.DB
	dir     *os.File // The queue directory, fsynced before records name files in it.
	segs    *segments
	msgPath func(id int64) string
	settled func(ids []int64) // Called with the messages of evicted ops once their changes are stored or failed.
	queued  *atomic.Int64     // Messages stored, kept as they are added and removed.
	log     *slog.Logger
	scratch []byte // The contents of a group, concatenated.

	mu     sync.Mutex
	ops    []op
	closed bool
	wake   chan struct{} // Capacity 1.
	done   chan struct{} // Closed when run returns.
}

func newCommitter(db *bstore.DB, dir *os.File, segs *segments, msgPath func(int64) string, settled func([]int64), queued *atomic.Int64, log *slog.Logger) *committer {
	c := &committer{db: db, dir: dir, segs: segs, msgPath: msgPath, settled: settled, queued: queued, log: log, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go c.run()
	return c
}

// submit hands o to the committer. If o.done is set, it receives the result
// once the change is durable.
func (c *committer) submit(o op) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.ops = append(c.ops, o)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// sync returns once the changes submitted before it are stored (or
// failed).
func (c *committer) sync() error {
	done := make(chan error, 1)
	if err := c.submit(op{done: done}); err != nil {
		return err
	}
	return <-done
}

// close commits what was submitted and stops the committer.
func (c *committer) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	<-c.done
}

func (c *committer) run() {
	defer close(c.done)
	var spare []op
	for range c.wake {
		c.mu.Lock()
		ops, closed := c.ops, c.closed
		c.ops = spare[:0]
		c.mu.Unlock()
		if len(ops) > 0 {
			c.commitGuarded(ops)
		}
		clear(ops) // Drop references to messages.
		spare = ops
		if closed {
			return
		}
	}
}

// commitGuarded is commit, but a panic in it (a bug, a corrupt database)
// fails the changes of ops instead of the process. Waiters not yet answered
// get the error, so a listener answers with a temporary failure; a change
// is only acknowledged once it is durable, and may be durable without
// being acknowledged, as after a crash. bstore rolls back a transaction
// interrupted by a panic.
func (c *committer) commitGuarded(ops []op) {
	err := c.tryCommit(ops)
	var evicted []int64
	for _, o := range ops {
		if o.evicted {
			evicted = append(evicted, opID(o))
		}
	}
	if len(evicted) > 0 {
		c.settled(evicted)
	}
	if err == nil {
		return
	}
	lost := 0
	for _, o := range ops {
		if o.done != nil {
			o.done <- err
		} else {
			lost++
		}
	}
	if lost > 0 {
		// As for a failed write: after a restart the messages are
		// attempted again from their stored state.
		c.log.Error("storing delivery state", slog.Int("changes", lost), slog.Any("err", err))
	}
}

// tryCommit calls commit, returning a panic as its error.
func (c *committer) tryCommit(ops []op) (err error) {
	defer guard.Recover(c.log, "queue commit", &err)
	c.commit(ops)
	return nil
}

// commit makes ops durable, reports to the waiters and removes the files of
// removed messages. A waiter answered gets its op's done cleared. What
// records name is durable before the records are written, in one
// transaction: the content appended to a segment, and the directory
// entries of message files.
func (c *committer) commit(ops []op) {
	errs := make([]error, len(ops))
	c.appendContent(ops, errs)
	needDirSync := func(o op) bool { return o.insert != nil && o.data == nil }
	if slices.ContainsFunc(ops, needDirSync) {
		if err := c.dir.Sync(); err != nil {
			for i, o := range ops {
				if needDirSync(o) {
					errs[i] = fmt.Errorf("sync queue directory: %w", err)
				}
			}
		}
	}
	var todo []int // Indexes in ops of changes to write.
	for i := range ops {
		if errs[i] == nil {
			todo = append(todo, i)
		}
	}
	var done []effects // Of the transactions committed.
	// write applies the ops at idx in one transaction.
	write := func(idx []int) error {
		var eff effects
		err := c.db.Write(context.Background(), func(tx *bstore.Tx) error {
			eff = effects{}
			for _, i := range idx {
				if err := apply(tx, ops[i], &eff); err != nil {
					return err
				}
			}
			return eff.store(tx)
		})
		if err == nil {
			done = append(done, eff)
		}
		return err
	}
	if len(todo) > 0 {
		if err := write(todo); err != nil && len(todo) > 1 {
			// One failing change must not fail the others: one at a time.
			for _, i := range todo {
				errs[i] = write([]int{i})
			}
		} else if err != nil {
			errs[todo[0]] = err
		}
	}
	// Segments count their records before waiters learn of them: the
	// messages may be delivered and removed at once.
	for _, eff := range done {
		for n, d := range eff.segs {
			c.segs.committed(n, d.messages, d.bytes)
		}
		c.queued.Add(int64(eff.messages))
	}
	for i, o := range ops {
		if o.done != nil {
			o.done <- errs[i]
			ops[i].done = nil
		} else if errs[i] != nil {
			// The change is lost: after a restart the message is attempted
			// again from its previous state.
			c.log.Error("storing delivery state", slog.String("queueid", formatID(opID(o))), slog.Any("err", errs[i]))
		}
	}
	for _, eff := range done {
		for _, id := range eff.files {
			// A leftover file is removed at the next Open.
			if err := os.Remove(c.msgPath(id)); err != nil {
				c.log.Error("removing message file", slog.String("queueid", formatID(id)), slog.Any("err", err))
			}
		}
	}
}

// maxWrite bounds the bytes the committer writes with one call, and so its
// scratch buffer.
const maxWrite = 1 << 20

// appendContent appends the contents of the in-memory messages inserted by
// ops to the current segment, sets the messages' Segment and Offset, and
// makes the content durable. It sets errs of the inserts if that fails.
func (c *committer) appendContent(ops []op, errs []error) {
	if !slices.ContainsFunc(ops, func(o op) bool { return o.data != nil }) {
		return
	}
	var n int64
	for _, o := range ops {
		n += int64(len(o.data))
	}
	seg, created, err := c.segs.forAppend(n)
	if err == nil {
		off, written := seg.size, seg.size
		c.scratch = c.scratch[:0]
		for _, o := range ops {
			if o.data == nil {
				continue
			}
			o.insert.Segment, o.insert.Offset = seg.n, off
			off += int64(len(o.data))
			c.scratch = append(c.scratch, o.data...)
			if len(c.scratch) >= maxWrite || off == seg.size+n {
				if _, err = seg.f.WriteAt(c.scratch, written); err != nil {
					break
				}
				written = off
				c.scratch = c.scratch[:0]
			}
		}
		if err == nil {
			err = datasync(seg.f)
		}
		if err == nil && created {
			// The new file's directory entry.
			err = c.segs.dirf.Sync()
		}
		if err == nil {
			seg.size = off
		} else {
			c.segs.abandon(seg)
			err = fmt.Errorf("append to segment %d: %w", seg.n, err)
		}
	}
	if err != nil {
		for i, o := range ops {
			if o.data != nil {
				errs[i] = err
			}
		}
	}
}

// apply writes o in tx, and adds what it does to segments and files to
// eff. The location of a message's content is the stored record's: an
// update keeps it, a removal frees it.
func apply(tx *bstore.Tx, o op, eff *effects) error {
	if o.attempt != nil {
		var err error
		if !o.attempt.Ended {
			err = tx.Insert(o.attempt)
		} else if err = tx.Update(o.attempt); errors.Is(err, bstore.ErrAbsent) {
			err = tx.Insert(o.attempt) // Its start was not stored.
		}
		if err != nil {
			return err
		}
	}
	switch {
	case o.insert != nil:
		o.insert.stamp()
		if o.notice != nil {
			// Another message of the key, added at once (Add checks
			// first), keeps it: a notice twice is better than none.
			if err := tx.Insert(o.notice); err != nil && !errors.Is(err, bstore.ErrUnique) {
				return err
			}
		}
		eff.add(o.insert.Segment, 1, o.insert.Size)
		eff.messages++
		return tx.Insert(o.insert)
	case o.update != nil:
		cur := Msg{ID: o.update.ID}
		if err := tx.Get(&cur); err != nil {
			return err
		}
		o.update.Segment, o.update.Offset = cur.Segment, cur.Offset
		o.update.stamp()
		return tx.Update(o.update)
	case o.relocate != nil:
		r := o.relocate
		cur := Msg{ID: r.ID}
		if err := tx.Get(&cur); errors.Is(err, bstore.ErrAbsent) {
			return nil // Gone meanwhile: the copy is unused.
		} else if err != nil {
			return err
		}
		if cur.Segment != r.From || cur.Offset != r.Offset {
			return nil
		}
		cur.Segment, cur.Offset = r.To, r.NewOffset
		eff.add(r.From, -1, -cur.Size)
		eff.add(r.To, 1, cur.Size)
		return tx.Update(&cur)
	case o.remove != 0:
		cur := Msg{ID: o.remove}
		if err := tx.Get(&cur); errors.Is(err, bstore.ErrAbsent) {
			return nil
		} else if err != nil {
			return err
		}
		if err := tx.Delete(&cur); err != nil {
			return err
		}
		eff.messages--
		if cur.Segment != 0 {
			eff.add(cur.Segment, -1, -cur.Size)
		} else {
			eff.files = append(eff.files, cur.ID)
		}
		if _, err := bstore.QueryTx[noticeRecord](tx).FilterNonzero(noticeRecord{Of: o.remove}).Delete(); err != nil {
			return err
		}
		if o.retire != nil {
			return tx.Insert(o.retire)
		}
		return deleteAttempts(tx, o.remove)
	}
	return nil
}

func opID(o op) int64 {
	switch {
	case o.insert != nil:
		return o.insert.ID
	case o.update != nil:
		return o.update.ID
	case o.remove != 0:
		return o.remove
	case o.relocate != nil:
		return o.relocate.ID
	case o.attempt != nil:
		return o.attempt.MsgID
	default:
		return 0
	}
}
