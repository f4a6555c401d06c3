package queue

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mjl-/bstore"

	"github.com/switchyard-mta/switchyard/core/guard"
	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// entry is the in-memory state of a queued message. The scheduler works from
// memory only; the database is its durable copy, written by the committer.
type entry struct {
	msg  *Msg            // Guarded by Queue.mu; the committer gets clones.
	jobs map[string]*job // Recipient groups with pending recipients, by domain.
	// dropped: the operator dropped the message while a job of it ran or
	// waited for its destination; it goes when the last of them ends.
	dropped bool
	// fail: the operator failed the message while a job of it ran; its
	// recipients not delivered by it fail when it ends.
	fail bool
}

// due returns when the recipients of e at domain next need the queue, if
// they do.
func (e *entry) due(domain string) (time.Time, bool) {
	var due time.Time
	for i := range e.msg.Recipients {
		if r := &e.msg.Recipients[i]; r.Domain == domain {
			if at, ok := r.wake(); ok && (due.IsZero() || at.Before(due)) {
				due = at
			}
		}
	}
	return due, !due.IsZero()
}

// held reports whether a recipient of e is held: e stays while it waits
// for a release, with no job.
func (e *entry) held() bool {
	return slices.ContainsFunc(e.msg.Recipients, func(r Rcpt) bool { return r.State == Held })
}

// job is the delivery of the pending recipients of one message at one
// domain: one Deliver call per attempt.
type job struct {
	e      *entry
	domain string
	due    time.Time
	index  int // In Queue.due; -1 if not there.
	// running: a delivery goroutine has it (deliver), to the end.
	running bool
	// routeErr is why the attempt being started has no transport: the
	// Router panicked. The attempt then fails temporarily.
	routeErr error
}

// dest is what MaxPerDestination limits.
type dest struct {
	transport, domain string
}

type jobHeap []*job

func (h jobHeap) Len() int           { return len(h) }
func (h jobHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h jobHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *jobHeap) Push(x any) {
	j := x.(*job)
	j.index = len(*h)
	*h = append(*h, j)
}
func (h *jobHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	j.index = -1
	return j
}
func (h *jobHeap) fix(j *job) { heap.Fix(h, j.index) }

// scheduleLocked puts m in memory, its pending recipients due at their
// NextAttempt and its notices still due at their NotifyAt.
func (q *Queue) scheduleLocked(m *Msg) {
	e := &entry{msg: m, jobs: map[string]*job{}}
	for _, r := range m.Recipients {
		at, ok := r.wake()
		if !ok {
			continue
		}
		j := e.jobs[r.Domain]
		if j == nil {
			j = &job{e: e, domain: r.Domain, due: at}
			e.jobs[r.Domain] = j
		} else if at.Before(j.due) {
			j.due = at
		}
	}
	q.msgs[m.ID] = e
	for _, j := range e.jobs {
		heap.Push(&q.due, j)
	}
}

// wantLocked reports whether m, not in memory, belongs there: it is due
// within the window and there is room. Without room, the loader reads it
// once there is.
func (q *Queue) wantLocked(m *Msg, now time.Time) bool {
	if !m.nextWake().Before(now.Add(q.opts.window)) {
		return false
	}
	if len(q.msgs) >= q.opts.maxLoaded {
		q.spilled = true
		return false
	}
	return true
}

// evictLocked drops e from memory, and reports whether it did, if nothing
// of it is due within the window, or memory is over maxLoaded, and no job
// of it runs or waits for its destination. Its last change must be
// submitted, with evicted set if it is still to be stored.
func (q *Queue) evictLocked(e *entry, now time.Time) bool {
	if e.dropped {
		return false
	}
	soon := false
	for _, j := range e.jobs {
		if j.index < 0 {
			return false
		}
		soon = soon || j.due.Before(now.Add(q.opts.window))
	}
	if soon && len(q.msgs) <= q.opts.maxLoaded {
		return false
	}
	if soon {
		q.spilled = true
	}
	for _, j := range e.jobs {
		heap.Remove(&q.due, j.index)
	}
	q.forgetLocked(e)
	return true
}

// forgetLocked removes e, with no job in the heap, from memory.
func (q *Queue) forgetLocked(e *entry) {
	delete(q.msgs, e.msg.ID)
	if q.recent != nil {
		q.recent[e.msg.ID] = true
	}
	if q.spilled && len(q.msgs) < q.opts.maxLoaded/2 {
		select {
		case q.loadWake <- struct{}{}:
		default:
		}
	}
}

// submitLocked submits o to the committer, counting it in settling if
// it is the change with which its message left memory.
func (q *Queue) submitLocked(o op) error {
	err := q.commit.submit(o)
	if err == nil && o.evicted {
		q.settling[opID(o)]++
	}
	return err
}

// settled is called by the committer for the evicted ops it stored or
// failed.
func (q *Queue) settled(ids []int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, id := range ids {
		q.settledLocked(id)
	}
}

func (q *Queue) settledLocked(id int64) {
	if q.settling[id]--; q.settling[id] <= 0 {
		delete(q.settling, id)
	}
}

// entryLocked returns message n's entry, reading its record into memory
// if it is not there (read reports that); ErrNotFound if it is not
// queued. It may release the lock for a while, to wait for its record to
// be stored.
func (q *Queue) entryLocked(ctx context.Context, n int64) (e *entry, read bool, err error) {
	for q.msgs[n] == nil && q.settling[n] > 0 {
		q.mu.Unlock()
		err := q.commit.sync()
		q.mu.Lock()
		if err != nil {
			return nil, false, err
		}
	}
	if e := q.msgs[n]; e != nil {
		return e, false, nil
	}
	// Not in memory and not settling: the record is current, and nothing
	// changes it while the lock is held.
	m, err := bstore.QueryDB[Msg](ctx, q.db).FilterID(n).Get()
	if err == bstore.ErrAbsent {
		return nil, false, ErrNotFound
	} else if err != nil {
		return nil, false, fmt.Errorf("read queued message: %w", err)
	}
	q.scheduleLocked(&m)
	return q.msgs[n], true, nil
}

// loadWindow is how far ahead the queue keeps the messages due in memory
// by default: those due later stay on disk, like Postfix's deferred queue
// beside its active queue, so that memory does not grow with the queue.
const loadWindow = 5 * time.Minute

// loadBatch is how many records the loader reads between takings of the
// lock.
const loadBatch = 256

// loadLoop keeps the messages due within the window in memory: it reads
// them when deliveries start, every fifth of the window, and when memory
// is half empty after maxLoaded was reached. A pass reads again the
// records of the messages in memory, so that costs at most about two
// reads per message loaded.
func (q *Queue) loadLoop() {
	defer q.wg.Done()
	tick := time.NewTicker(q.opts.window / 5)
	defer tick.Stop()
	for {
		if err := q.loadDue(); err != nil && q.ctx.Err() == nil {
			q.log.Error("reading messages due", slog.Any("err", err))
		}
		select {
		case <-q.ctx.Done():
			return
		case <-tick.C:
		case <-q.loadWake:
		}
	}
}

// loadDue reads the records due within the window that are not in memory
// into it, earliest first, until maxLoaded is reached.
func (q *Queue) loadDue() error {
	q.mu.Lock()
	q.spilled = false
	q.recent = map[int64]bool{}
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.recent = nil
		q.mu.Unlock()
	}()
	// Records of messages that left memory before now are stored after
	// this; those leaving while the records are read are in recent.
	if err := q.commit.sync(); err != nil {
		return err
	}
	until := time.Now().Add(q.opts.window)
	loaded := 0
	// take schedules the records of batch that are not in memory; it
	// reports whether memory is full.
	take := func(batch []Msg) (full bool) {
		q.mu.Lock()
		defer q.mu.Unlock()
		for _, m := range batch {
			if q.msgs[m.ID] != nil || q.recent[m.ID] || q.settling[m.ID] > 0 {
				continue
			}
			if len(q.msgs) >= q.opts.maxLoaded {
				q.spilled = true
				return true
			}
			q.scheduleLocked(&m) // A copy: an entry keeps no batch alive.
			loaded++
		}
		return false
	}
	// Read in batches, each in a transaction of its own that ends before
	// the lock is taken: a read transaction held while waiting for the lock
	// could deadlock with a commit that grows the database (bbolt remaps
	// it only once no reader is left) and a holder of the lock reading.
	// Records are in the index's order, by Due and then ID.
	var after Msg // The last record read.
	for {
		query := bstore.QueryDB[Msg](q.ctx, q.db).FilterLess("Due", until).SortAsc("Due")
		if after.ID != 0 {
			query.FilterGreaterEqual("Due", after.Due).FilterFn(func(m Msg) bool {
				return m.Due.After(after.Due) || m.ID > after.ID
			})
		}
		batch, err := query.Limit(loadBatch).List()
		if err != nil {
			return fmt.Errorf("read queue: %w", err)
		}
		if len(batch) == 0 || take(batch) || len(batch) < loadBatch {
			break
		}
		after = batch[len(batch)-1]
	}
	if loaded > 0 {
		q.kick()
	}
	return nil
}

// kick wakes the dispatcher.
func (q *Queue) kick() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Start starts delivering, and pruning expired retired messages;
// Options.Deliverer must be set. Close stops it.
func (q *Queue) Start(ctx context.Context) {
	if q.opts.Deliverer == nil {
		panic("queue: Start without Deliverer")
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.stop != nil {
		return
	}
	q.ctx, q.stop = context.WithCancel(ctx)
	q.wg.Add(4)
	go q.loadLoop()
	go q.compactLoop()
	go q.dispatch()
	go q.prune(q.opts.pruneInterval)
}

// dispatch starts due jobs while delivery slots are free.
func (q *Queue) dispatch() {
	defer q.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if err := q.startDue(timer); err != nil {
			// A bug in the scheduler, logged by guard: the job it was
			// starting waits for a restart; the others go on, after a pause
			// that keeps a repeated panic from spinning.
			timer.Reset(time.Second)
		}
		select {
		case <-q.ctx.Done():
			return
		case <-q.wake:
		case <-timer.C:
		}
	}
}

// startDue starts the due jobs while delivery slots are free, and sets
// timer for the next one. A panic is its error, and releases the lock.
func (q *Queue) startDue(timer *time.Timer) (err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	defer guard.Recover(q.log, "queue scheduler", &err)
	now := time.Now()
	for q.running < q.opts.MaxParallel && q.due.Len() > 0 {
		j := q.due[0]
		if wait := j.due.Sub(now); wait > 0 {
			timer.Reset(wait)
			break
		}
		heap.Pop(&q.due)
		var transport string
		transport, j.routeErr = q.route(j)
		q.startLocked(j, transport)
	}
	return nil
}

// route returns the transport for j's next attempt. A panic of the Router
// is returned as the error: the attempt fails temporarily, and the message
// is tried again after the backoff.
func (q *Queue) route(j *job) (transport string, err error) {
	if q.opts.Router == nil {
		return "direct", nil
	}
	defer guard.Recover(q.log, "routing", &err)
	m := j.e.msg
	to, _ := mailaddr.ParseDomain(j.domain) // An address literal: zero.
	return q.opts.Router.Route(m.Account, addressDomain(m.From), to, q.attempts(j)), nil
}

// attempts returns the number of earlier attempts of j's recipients.
func (q *Queue) attempts(j *job) int {
	n := 0
	for _, r := range j.e.msg.Recipients {
		if r.Domain == j.domain && r.State == Pending {
			n = max(n, r.Attempts)
		}
	}
	return n
}

// startLocked starts delivery of j through transport, or holds it back
// until a delivery to the same destination finishes. The pending
// recipients of j are attempted, unless j is due only for a notice that
// Notify could not queue before (none of them is due): that is made again
// without a delivery attempt.
func (q *Queue) startLocked(j *job, transport string) {
	d := dest{transport, j.domain}
	if q.active[d] >= q.opts.MaxPerDestination {
		q.waiting[d] = append(q.waiting[d], j)
		return
	}
	m := j.e.msg
	req := &sdk.DeliverRequest{
		Instance: transport,
		QueueID:  formatID(m.ID),
		Attempt:  q.attempts(j) + 1,
		From:     m.From,
		Options:  m.Options,
		Size:     m.Size,
	}
	// Without a notice due, the job runs for an attempt, as always.
	now := time.Now()
	attempt := !slices.ContainsFunc(m.Recipients, func(r Rcpt) bool {
		return r.Domain == j.domain && r.unreported() && !r.NotifyAt.After(now)
	}) || slices.ContainsFunc(m.Recipients, func(r Rcpt) bool {
		return r.Domain == j.domain && r.State == Pending && !r.NextAttempt.After(now)
	})
	var idx []int   // Recipients of req, as indexes in m.Recipients.
	var notes []int // Other recipients with a notice still due.
	for i, r := range m.Recipients {
		switch {
		case r.Domain != j.domain:
		case attempt && r.State == Pending:
			req.Recipients = append(req.Recipients, r.Recipient)
			idx = append(idx, i)
		case r.unreported():
			notes = append(notes, i)
		}
	}
	q.active[d]++
	q.running++
	j.running = true
	q.wg.Add(1)
	seg, offset, routeErr := m.Segment, m.Offset, j.routeErr
	q.workers.run(q.ctx, func() { q.deliver(j, d, req, idx, notes, seg, offset, routeErr) })
	j.routeErr = nil
}

// deliver makes one delivery attempt of the content at offset in segment
// seg (0: in its own file), makes the notices due, and records the result.
// With routeErr, the attempt fails with it, without a Deliver call. Without
// recipients in req, only the notices still due of the recipients at notes
// (indexes in the message's Recipients) are made again.
func (q *Queue) deliver(j *job, d dest, req *sdk.DeliverRequest, idx, notes []int, seg, offset int64, routeErr error) {
	defer q.wg.Done()
	start := time.Now()
	id := j.e.msg.ID
	content, release, err := q.open(id, seg, offset, req.Size)
	if err != nil {
		// Compaction may have moved the content since the entry was
		// read, and its segment be gone: read it where the record says.
		if nseg, noffset, ok := q.locate(j.e, seg, offset); ok {
			content, release, err = q.open(id, nseg, noffset, req.Size)
		}
	}
	var a *Attempt // The record of this attempt, if it is one.
	if len(req.Recipients) > 0 {
		a = q.startAttempt(id, req, start)
	}
	var res *sdk.DeliverResult
	if err == nil {
		defer release()
		if err = routeErr; err == nil && a != nil {
			res, err = q.attempt(req, content)
		}
	}
	results := resultsFor(req, res, err)
	if q.ctx.Err() != nil && !slices.ContainsFunc(results, func(r sdk.RecipientResult) bool { return r.Status != sdk.StatusTemporary }) {
		// Cancelled by Close: the attempt does not count, and its record
		// shows it never ended.
		q.mu.Lock()
		j.running = false
		q.releaseLocked(d)
		q.mu.Unlock()
		return
	}
	now := time.Now()

	// Recipients of j are not changed by others while it runs: the outcome
	// can be decided before taking the lock, and failures reported first.
	all := slices.Concat(idx, notes) // Indexes in m.Recipients of rcpts.
	q.mu.Lock()
	rcpts := make([]Rcpt, len(all))
	for i, k := range all {
		rcpts[i] = j.e.msg.Recipients[k]
	}
	q.mu.Unlock()
	var failed, delayed []int // Indexes in rcpts.
	q.mu.Lock()
	failing := j.e.fail
	q.mu.Unlock()
	for i := range rcpts {
		r := &rcpts[i]
		attempted := i < len(idx)
		if attempted {
			q.outcome(r, results[i], now)
		}
		if failing && (r.State == Pending || r.State == Held) {
			failByOperator(r, now)
		}
		switch {
		case r.State == Failed || r.State == Failing:
			failed = append(failed, i)
		case r.State == Pending && (attempted && r.Attempts == q.opts.DelayAfter || r.DelayUnreported):
			delayed = append(delayed, i)
		default:
			// Delivered: a delay notice not yet made has nothing to say.
			r.DelayUnreported, r.NotifyAt, r.NotifyFailures = false, time.Time{}, 0
		}
	}
	m := j.e.msg // Fields other than Recipients and the location do not change.
	for _, group := range []struct {
		delayed bool
		rcpts   []int
	}{{false, failed}, {true, delayed}} {
		if len(group.rcpts) == 0 {
			continue
		}
		n := Notice{Delayed: group.delayed, QueueID: req.QueueID, Account: m.Account, From: m.From, Options: m.Options, Queued: m.Queued}
		for _, i := range group.rcpts {
			r := &rcpts[i]
			if !group.delayed {
				r.State, r.DelayUnreported = Failed, false
			}
			n.Recipients = append(n.Recipients, *r)
		}
		n.Key = noticeKey(n)
		if content != nil {
			n.Message = io.NewSectionReader(content, 0, content.Size())
		}
		nerr := q.notify(n)
		for _, i := range group.rcpts {
			q.reported(&rcpts[i], nerr == nil, now)
		}
		if nerr != nil {
			q.log.Error("delivery status notification failed, trying again later",
				slog.String("queueid", req.QueueID), slog.Bool("delayed", group.delayed),
				slog.Int("recipients", len(group.rcpts)), slog.Time("next", rcpts[group.rcpts[0]].NotifyAt), slog.Any("err", nerr))
		}
	}

	q.mu.Lock()
	for i, k := range all {
		m.Recipients[k] = rcpts[i]
	}
	j.running = false
	if due, ok := j.e.due(j.domain); !ok {
		delete(j.e.jobs, j.domain)
	} else {
		j.due = due
		heap.Push(&q.due, j)
	}
	var o op
	if len(j.e.jobs) == 0 && (j.e.dropped || !j.e.held()) {
		if j.e.dropped {
			q.log.Info("message dropped by the operator", slog.String("queueid", req.QueueID))
		}
		q.forgetLocked(j.e)
		o = q.retireOp(m, j.e.dropped, now)
		o.evicted = true
	} else {
		o = op{update: m.clone()}
		o.evicted = q.evictLocked(j.e, now)
	}
	if a != nil {
		a.Ended, a.Duration, a.Results = true, now.Sub(start), results
		o.attempt = a
	}
	// Submitted under the lock, so changes of one message reach the
	// database in the order they were made.
	if err := q.submitLocked(o); err != nil {
		q.log.Error("storing delivery state", slog.String("queueid", req.QueueID), slog.Any("err", err))
	}
	q.releaseLocked(d)
	q.mu.Unlock()
	q.kick()
	if len(req.Recipients) > 0 {
		q.logAttempt(req, m.Queued, m.MessageID, results, err, time.Since(start))
	}
}

// open returns a reader of the size bytes at offset in segment seg, or of
// message id's own file if seg is 0, and a func to call when done reading.
func (q *Queue) open(id, seg, offset, size int64) (*io.SectionReader, func(), error) {
	if seg == 0 {
		f, err := os.Open(q.msgPath(id))
		if err != nil {
			return nil, nil, fmt.Errorf("open message file: %w", err)
		}
		return io.NewSectionReader(f, 0, size), func() { f.Close() }, nil
	}
	f, err := q.segs.acquire(seg)
	if err != nil {
		return nil, nil, fmt.Errorf("open message: %w", err)
	}
	return io.NewSectionReader(f, offset, size), func() { q.segs.release(seg) }, nil
}

// locate returns where the record of e's message says its content is, if
// that is not at offset in segment seg, and sets the entry's location to
// it: compaction moved it after the entry was read.
func (q *Queue) locate(e *entry, seg, offset int64) (int64, int64, bool) {
	m, err := bstore.QueryDB[Msg](context.Background(), q.db).FilterID(e.msg.ID).Get()
	if err != nil || m.Segment == seg && m.Offset == offset {
		return 0, 0, false
	}
	q.mu.Lock()
	if e.msg.Segment == seg && e.msg.Offset == offset {
		e.msg.Segment, e.msg.Offset = m.Segment, m.Offset
	}
	q.mu.Unlock()
	return m.Segment, m.Offset, true
}

// attempt calls the Deliverer with the message's content. A panic of the
// Deliverer is returned as the error: every recipient fails temporarily.
func (q *Queue) attempt(req *sdk.DeliverRequest, content io.Reader) (res *sdk.DeliverResult, err error) {
	defer guard.Recover(q.log, "delivery", &err)
	req.Message = content
	ctx, cancel := context.WithTimeout(q.ctx, q.opts.DeliverTimeout)
	defer cancel()
	return q.opts.Deliverer.Deliver(ctx, req.Instance, req)
}

// notify calls Options.Notify with n, if set, under a deadline of
// NotifyTimeout that Close does not cut short. A panic of Notify (composing
// or queueing the DSN) is returned as the error.
func (q *Queue) notify(n Notice) (err error) {
	if q.opts.Notify == nil {
		return nil
	}
	defer guard.Recover(q.log, "delivery status notification", &err)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(q.ctx), q.opts.NotifyTimeout)
	defer cancel()
	return q.opts.Notify(ctx, n)
}

// reported records whether the notice about r was made (ok), in which case
// a failure is final, or is still due: then a failure is Failing, a delay
// DelayUnreported, and Notify is called again after a backoff. A delivery
// attempt is not made again for it, nor counted.
func (q *Queue) reported(r *Rcpt, ok bool, now time.Time) {
	if ok {
		r.DelayUnreported, r.NotifyAt, r.NotifyFailures = false, time.Time{}, 0
		return
	}
	if r.State == Failed {
		r.State = Failing
	} else {
		r.DelayUnreported = true
	}
	r.NotifyFailures++
	r.NotifyAt = now.Add(q.notifyBackoff(r.NotifyFailures))
}

// notifyBackoff returns the wait before Notify is called again after the
// given number of failed calls: 1 minute doubling up to an hour, times
// BackoffScale. A full disk or a failing queue of DSNs is often fixed in
// minutes; the notice is cheap to make again.
func (q *Queue) notifyBackoff(failures int) time.Duration {
	d := time.Minute
	for i := 1; i < failures && d < time.Hour; i++ {
		d *= 2
	}
	return time.Duration(float64(min(d, time.Hour)) * q.opts.BackoffScale)
}

// RetryUntil returns when the last delivery attempt of the pending
// recipient r is due by the retry schedule (Options.MaxAttempts and
// BackoffScale): the Will-Retry-Until of a delay DSN (RFC 3464 §2.3.8).
func (q *Queue) RetryUntil(r Rcpt) time.Time {
	t := r.NextAttempt
	for k := r.Attempts + 1; k < q.opts.MaxAttempts; k++ {
		t = t.Add(q.backoff(k))
	}
	return t
}

// releaseLocked frees a delivery slot of d and starts the next job held
// back for d, if any.
func (q *Queue) releaseLocked(d dest) {
	q.running--
	q.active[d]--
	if q.active[d] == 0 {
		delete(q.active, d)
	}
	w := q.waiting[d]
	if len(w) == 0 || q.ctx.Err() != nil {
		return
	}
	j := w[0]
	w[0] = nil
	if len(w) == 1 {
		delete(q.waiting, d)
	} else {
		q.waiting[d] = w[1:]
	}
	q.startLocked(j, d.transport)
}

// resultsFor returns one result per recipient of req, in order, with a
// known Status.
func resultsFor(req *sdk.DeliverRequest, res *sdk.DeliverResult, err error) []sdk.RecipientResult {
	if errors.Is(err, guard.ErrPanic) {
		// The panic is logged; the result may reach the sender in a DSN.
		return sdk.ResultAll(req, sdk.StatusTemporary, 0, "", guard.ErrPanic.Error()).Recipients
	}
	if err != nil {
		// An error with a text for senders (pluginhost's) gives that; its
		// technical detail is in the log (logAttempt).
		text := err.Error()
		var rt interface{ RecipientText() string }
		if errors.As(err, &rt) {
			text = rt.RecipientText()
		}
		return sdk.ResultAll(req, sdk.StatusTemporary, 0, "", text).Recipients
	}
	l := make([]sdk.RecipientResult, len(req.Recipients))
	for i, r := range req.Recipients {
		if res != nil && i < len(res.Recipients) {
			l[i] = res.Recipients[i]
		} else {
			l[i] = sdk.RecipientResult{Status: sdk.StatusTemporary, Text: "transport returned no result for recipient"}
		}
		l[i].Address = r.Address
		if l[i].Status < sdk.StatusTemporary || l[i].Status > sdk.StatusPermanent {
			l[i].Status = sdk.StatusTemporary
		}
	}
	return l
}

// outcome applies the result of an attempt to r.
func (q *Queue) outcome(r *Rcpt, res sdk.RecipientResult, now time.Time) {
	r.Attempts++
	r.LastAttempt = now
	r.Last = res
	switch {
	case res.Status == sdk.StatusDelivered:
		r.State = Delivered
	case res.Status == sdk.StatusPermanent || res.Code >= 500 && res.Code <= 599:
		r.State = Failed
	case r.Attempts >= q.opts.MaxAttempts:
		r.State = Failed
	default:
		r.NextAttempt = now.Add(q.backoff(r.Attempts))
	}
}

// backoff returns the wait after the given number of attempts: none before
// the first, then 7.5 minutes doubling, times BackoffScale. RFC 5321
// §4.5.4.1 asks for at least 30 minutes between retries; the first retries
// come sooner, as in Postfix and mox, because early temporary failures
// (greylisting) are often short.
func (q *Queue) backoff(attempts int) time.Duration {
	if attempts <= 0 {
		return 0
	}
	d := 7*time.Minute + 30*time.Second
	for i := 1; i < attempts && d < 1000*time.Hour; i++ {
		d *= 2
	}
	return time.Duration(float64(d) * q.opts.BackoffScale)
}

// logAttempt logs one line per recipient of a delivery attempt, as
// Postfix does (to=, relay=, delay=, status=): the queue id, Message-ID, sender,
// recipient, transport, remote host and IP, TLS, reply, the time since the
// message was queued (delay) and the attempt's duration.
func (q *Queue) logAttempt(req *sdk.DeliverRequest, queued time.Time, msgID string, results []sdk.RecipientResult, err error, duration time.Duration) {
	ctx := context.Background()
	delay := time.Since(queued)
	for _, r := range results {
		status := "deferred"
		switch r.Status {
		case sdk.StatusDelivered:
			status = "sent"
		case sdk.StatusPermanent:
			status = "bounced"
		}
		attrs := []slog.Attr{
			slog.String("queueid", req.QueueID),
			slog.String("msgid", msgID),
			slog.String("from", req.From),
			slog.String("to", r.Address),
			slog.String("transport", req.Instance),
			slog.Int("attempt", req.Attempt),
			slog.String("status", status),
		}
		if err != nil {
			attrs = append(attrs, slog.Any("err", err))
		} else {
			attrs = append(attrs,
				slog.String("remote", r.RemoteHost),
				slog.String("ip", r.RemoteIP),
				slog.String("tls", r.TLS.Verification.String()),
				slog.Int("code", r.Code),
				slog.String("enhanced", r.EnhancedCode),
				slog.String("text", r.Text))
		}
		attrs = append(attrs, slog.Duration("delay", delay), slog.Duration("duration", duration))
		q.log.LogAttrs(ctx, slog.LevelInfo, "delivery", attrs...)
	}
}

// noticeKey is Notice.Key of n: its message's queue ID, "/", and a hash of
// its kind and its recipients' addresses.
func noticeKey(n Notice) string {
	addrs := make([]string, len(n.Recipients))
	for i, r := range n.Recipients {
		addrs[i] = r.Address
	}
	slices.Sort(addrs)
	sum := sha256.Sum256([]byte(fmt.Sprintf("%t %s", n.Delayed, strings.Join(addrs, " "))))
	return n.QueueID + "/" + hex.EncodeToString(sum[:16])
}
