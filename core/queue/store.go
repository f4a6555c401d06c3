package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/mjl-/bstore"

	"github.com/switchyard-mta/switchyard/sdk"
)

// DBTypes are the types stored in the queue database.
var DBTypes = []any{Msg{}}

// Msg is a queued message. Its content is the file named by the formatted ID
// in the queue directory.
type Msg struct {
	ID         int64              `bstore:"noauto,typename QueueMsg"` // See Queue.Add for how IDs are assigned.
	Account    string             // Authenticated sender account; empty for relayed mail.
	From       string             // MAIL FROM; empty for the null reverse-path.
	Options    sdk.DeliverOptions // ESMTP parameters of the message.
	Size       int64              // Bytes in the file.
	Queued     time.Time          `bstore:"nonzero"`
	Recipients []Rcpt
}

// State is where a recipient is in its delivery.
type State int

const (
	Pending   State = iota // To be attempted at NextAttempt.
	Delivered              // Accepted by the destination.
	Failed                 // Failed permanently; a DSN is due (RFC 3464).
)

func (s State) String() string {
	switch s {
	case Delivered:
		return "delivered"
	case Failed:
		return "failed"
	default:
		return "pending"
	}
}

// Rcpt is one recipient of a queued message and its delivery state.
type Rcpt struct {
	sdk.Recipient
	Domain      string // Lower-cased domain of Address; recipients of one domain are delivered together.
	State       State
	Attempts    int       // Delivery attempts made so far.
	NextAttempt time.Time // When Pending: when the next attempt is due.
	LastAttempt time.Time // Zero before the first attempt.
	Last        sdk.RecipientResult
}

// op is a change for the committer: exactly one of insert, update and remove.
type op struct {
	insert *Msg
	update *Msg  // A copy owned by the committer.
	remove int64 // Message ID: the record, then the file, are removed.
	done   chan<- error
}

// committer writes the changes of all goroutines in shared transactions
// (group commit): bstore fsyncs each write transaction, and one fsync per
// message would cap the queue at about one message per fsync latency.
type committer struct {
	db      *bstore.DB
	dir     *os.File // The queue directory, fsynced before inserts are committed.
	msgPath func(id int64) string
	log     *slog.Logger

	mu     sync.Mutex
	ops    []op
	closed bool
	wake   chan struct{} // Capacity 1.
	done   chan struct{} // Closed when run returns.
}

func newCommitter(db *bstore.DB, dir *os.File, msgPath func(int64) string, log *slog.Logger) *committer {
	c := &committer{db: db, dir: dir, msgPath: msgPath, log: log, wake: make(chan struct{}, 1), done: make(chan struct{})}
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
			c.commit(ops)
		}
		clear(ops) // Drop references to messages.
		spare = ops
		if closed {
			return
		}
	}
}

// commit makes ops durable in one transaction, reports to the waiters and
// removes the files of removed messages.
func (c *committer) commit(ops []op) {
	errs := make([]error, len(ops))
	// The directory entries of inserted messages must be durable before their
	// records: a record without its file would be a lost message.
	var err error
	if slices.ContainsFunc(ops, func(o op) bool { return o.insert != nil }) {
		if err = c.dir.Sync(); err != nil {
			err = fmt.Errorf("sync queue directory: %w", err)
		}
	}
	if err == nil {
		err = c.db.Write(context.Background(), func(tx *bstore.Tx) error {
			for _, o := range ops {
				if err := apply(tx, o); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil && len(ops) > 1 {
			// One failing change must not fail the others: one at a time.
			for i, o := range ops {
				errs[i] = c.db.Write(context.Background(), func(tx *bstore.Tx) error { return apply(tx, o) })
			}
			err = nil
		}
	}
	for i, o := range ops {
		if errs[i] == nil {
			errs[i] = err
		}
		if o.done != nil {
			o.done <- errs[i]
		} else if errs[i] != nil {
			// The change is lost: after a restart the message is attempted
			// again from its previous state.
			c.log.Error("storing delivery state", slog.String("queueid", formatID(opID(o))), slog.Any("err", errs[i]))
		}
	}
	for i, o := range ops {
		if errs[i] == nil && o.remove != 0 {
			// A leftover file is removed at the next Open.
			if err := os.Remove(c.msgPath(o.remove)); err != nil {
				c.log.Error("removing message file", slog.String("queueid", formatID(o.remove)), slog.Any("err", err))
			}
		}
	}
}

func apply(tx *bstore.Tx, o op) error {
	switch {
	case o.insert != nil:
		return tx.Insert(o.insert)
	case o.update != nil:
		return tx.Update(o.update)
	default:
		err := tx.Delete(&Msg{ID: o.remove})
		if errors.Is(err, bstore.ErrAbsent) {
			return nil
		}
		return err
	}
}

func opID(o op) int64 {
	switch {
	case o.insert != nil:
		return o.insert.ID
	case o.update != nil:
		return o.update.ID
	default:
		return o.remove
	}
}
