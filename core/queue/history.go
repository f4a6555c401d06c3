package queue

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/mjl-/bstore"

	"github.com/switchyard-mta/switchyard/sdk"
)

// Attempt is one delivery attempt of some recipients of a message, stored
// as it starts, before the transport is called, and again when it ends:
// one that never ended (Ended false while the message is not being
// delivered) was cut short by a crash or a shutdown, and did not count.
type Attempt struct {
	ID        int64     `bstore:"noauto,typename QueueAttempt"` // Assigned by the queue, in order.
	MsgID     int64     `bstore:"index"`                        // Of the message, queued or retired.
	Start     time.Time `bstore:"nonzero"`
	Transport string
	Ended     bool
	Duration  time.Duration
	// Results has one entry per recipient attempted; until the attempt
	// ends, with only their Address.
	Results []sdk.RecipientResult
}

// Retired is a message that left the queue (delivered, failed or dropped),
// kept with its attempts until Expires; its content is not kept.
type Retired struct {
	ID         int64 `bstore:"noauto,typename QueueRetired"` // The message's queue ID.
	Account    string
	From       string
	MessageID  string
	Subject    string
	Options    sdk.DeliverOptions
	Size       int64
	Queued     time.Time
	Retired    time.Time
	Expires    time.Time `bstore:"index"`
	Dropped    bool      // By the operator (mta queue drop); the recipients are as they were then.
	Recipients []Rcpt
}

// Info returns r as List shows a queued message, for Filter.
func (r Retired) Info() MsgInfo {
	return MsgInfo{ID: formatID(r.ID), Account: r.Account, From: r.From, MessageID: r.MessageID, Subject: r.Subject, Options: r.Options, Size: r.Size, Queued: r.Queued, Recipients: r.Recipients}
}

// retireOp returns the removal of m from the queue, at now: a retired
// record replaces it if its account keeps them, else its attempts go too.
func (q *Queue) retireOp(m *Msg, dropped bool, now time.Time) op {
	o := op{remove: m.ID}
	if q.opts.KeepRetired == nil {
		return o
	}
	keep := q.opts.KeepRetired(m.Account)
	if keep <= 0 {
		return o
	}
	o.retire = &Retired{ID: m.ID, Account: m.Account, From: m.From, MessageID: m.MessageID, Subject: m.Subject, Options: m.Options,
		Size: m.Size, Queued: m.Queued, Retired: now, Expires: now.Add(keep), Dropped: dropped, Recipients: slices.Clone(m.Recipients)}
	return o
}

// startAttempt stores the start of an attempt of req's recipients of
// message id, without waiting for it to be durable (a delivery does not
// wait for an fsync), and returns it for endAttempt.
func (q *Queue) startAttempt(id int64, req *sdk.DeliverRequest, start time.Time) *Attempt {
	a := &Attempt{ID: q.lastAttempt.Add(1), MsgID: id, Start: start, Transport: req.Instance, Results: make([]sdk.RecipientResult, len(req.Recipients))}
	for i, r := range req.Recipients {
		a.Results[i].Address = r.Address
	}
	mine := &Attempt{ID: a.ID, MsgID: id, Start: start, Transport: req.Instance} // a is the committer's once submitted.
	if err := q.commit.submit(op{attempt: a}); err != nil {
		q.log.Error("storing delivery attempt", "queueid", req.QueueID, "err", err)
	}
	return mine
}

// History returns the attempts of message id, queued or retired, oldest
// first.
func (q *Queue) History(ctx context.Context, id string) ([]Attempt, error) {
	n, err := parseID(id)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	l, err := bstore.QueryDB[Attempt](ctx, q.db).FilterNonzero(Attempt{MsgID: n}).SortAsc("ID").List()
	if err != nil {
		return nil, fmt.Errorf("delivery history of %s: %w", id, err)
	}
	return l, nil
}

// RetiredList returns the retired messages f matches, oldest first, read
// one at a time (only those with f.IDs, if set), and how many are kept in
// all. A retired message has no route: f.Transport matches none.
func (q *Queue) RetiredList(ctx context.Context, f Filter) (matched []Retired, total int, err error) {
	now := time.Now()
	query := bstore.QueryDB[Retired](ctx, q.db)
	if len(f.IDs) > 0 {
		query.FilterIDs(parseIDs(f.IDs))
	}
	noRoute := func(MsgInfo, Rcpt) string { return "" } // Retired messages go nowhere.
	err = query.SortAsc("ID").ForEach(func(r Retired) error {
		if f.Match(r.Info(), now, noRoute) {
			matched = append(matched, r)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list retired messages: %w", err)
	}
	if total, err = bstore.QueryDB[Retired](ctx, q.db).Count(); err != nil {
		return nil, 0, fmt.Errorf("count retired messages: %w", err)
	}
	return matched, total, nil
}

// RetiredMsg returns retired message id; ErrNotFound if there is none.
func (q *Queue) RetiredMsg(ctx context.Context, id string) (Retired, error) {
	return getByID[Retired](ctx, q, id, "retired message")
}

// pruneBatch bounds the retired records one transaction removes, so a
// large backlog does not hold the database for long.
const pruneBatch = 1000

// pruneRetired removes the retired messages that expired by now, with
// their attempts, and returns how many.
func (q *Queue) pruneRetired(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for {
		n := 0
		err := q.db.Write(ctx, func(tx *bstore.Tx) error {
			var ids []int64
			if err := bstore.QueryTx[Retired](tx).FilterLess("Expires", now).Limit(pruneBatch).IDs(&ids); err != nil {
				return err
			}
			for _, id := range ids {
				if err := deleteAttempts(tx, id); err != nil {
					return err
				}
			}
			var err error
			if len(ids) > 0 {
				n, err = bstore.QueryTx[Retired](tx).FilterIDs(ids).Delete()
			}
			return err
		})
		total += n
		if err != nil || n < pruneBatch {
			return total, err
		}
	}
}

// prune runs pruneRetired every interval until the queue stops.
func (q *Queue) prune(interval time.Duration) {
	defer q.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := q.pruneRetired(q.ctx, time.Now()); err != nil && q.ctx.Err() == nil {
			q.log.Error("pruning retired messages", "err", err)
		} else if n > 0 {
			q.log.Debug("retired messages pruned", "count", n)
		}
		select {
		case <-q.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// deleteAttempts removes the attempts of message id.
func deleteAttempts(tx *bstore.Tx, id int64) error {
	_, err := bstore.QueryTx[Attempt](tx).FilterNonzero(Attempt{MsgID: id}).Delete()
	return err
}
