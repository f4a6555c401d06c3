package queue

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mjl-/bstore"

	"github.com/switchyard-mta/switchyard/sdk"
)

// loaded returns how many messages the scheduler has in memory.
func loaded(q *Queue) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.msgs)
}

// TestWindow: a message due after the window stays on disk only, and is
// read into memory and delivered when it comes due, also after a reopen;
// one due at once is delivered at once; a deferred one leaves memory until
// its retry.
func TestWindow(t *testing.T) {
	dir := t.TempDir()
	d := &fakeDeliverer{fn: func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
		if req.Recipients[0].Address == "defer@example.com" && req.Attempt == 1 {
			return sdk.ResultAll(req, sdk.StatusTemporary, 451, "4.0.0", "later"), nil
		}
		return sdk.ResultAll(req, sdk.StatusDelivered, 250, "2.0.0", "ok"), nil
	}}
	opts := Options{Deliverer: d, BackoffScale: 0.002, window: 200 * time.Millisecond} // First retry after 900 ms.
	q := openQueue(t, dir, opts)
	later := time.Now().Add(1500 * time.Millisecond)
	late, err := q.Add(context.Background(), Envelope{Recipients: rcpts("late@example.com"), ReleaseAt: later}, spool(t, q, "late\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if n := loaded(q); n != 0 {
		t.Fatalf("%d messages in memory, want the one due after the window on disk only", n)
	}
	// Read back at a reopen, it stays on disk too.
	q.Close()
	q = openQueue(t, dir, opts)
	q.Start(context.Background())
	add(t, q, "now\r\n", "now@example.com")
	deferred := add(t, q, "defer\r\n", "defer@example.com")
	waitFor(t, "the deferred attempt", func() bool {
		return stored(t, q, deferred).Recipients[0].Attempts == 1
	})
	q.mu.Lock()
	_, inMemory := q.msgs[mustParse(t, deferred)]
	q.mu.Unlock()
	if inMemory {
		t.Errorf("deferred message still in memory, want on disk until its retry")
	}
	waitEmpty(t, q)
	got := map[string]time.Time{}
	for _, c := range d.Calls() {
		if c.req.Attempt == 1 || c.req.QueueID != late {
			got[c.req.Recipients[0].Address+fmt.Sprint(c.req.Attempt)] = c.at
		}
	}
	if len(got) != 4 {
		t.Fatalf("calls %v, want now, defer twice, late", got)
	}
	if at := got["late@example.com1"]; at.Before(later) || at.After(later.Add(time.Second)) {
		t.Errorf("late message delivered at %v, want soon after %v", at, later)
	}
}

// TestOperatorOnDisk: the operator's commands work on a message that is on
// disk only, and leave it there when it is not due soon.
func TestOperatorOnDisk(t *testing.T) {
	d := &fakeDeliverer{}
	q := openQueue(t, t.TempDir(), Options{Deliverer: d, window: time.Minute})
	q.Start(context.Background())
	ctx := context.Background()
	env := func(to string) Envelope {
		return Envelope{Recipients: rcpts(to), ReleaseAt: time.Now().Add(time.Hour)}
	}
	a, err := q.Add(ctx, env("a@example.com"), spool(t, q, "a\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := q.Add(ctx, env("b@example.com"), spool(t, q, "b\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := q.Hold(ctx, a); !ok || err != nil {
		t.Fatalf("hold: %v %v", ok, err)
	}
	if r := stored(t, q, a).Recipients[0]; r.State != Held || loaded(q) != 0 {
		t.Fatalf("after hold: %v, %d in memory", r.State, loaded(q))
	}
	if err := q.Drop(ctx, b); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Get(ctx, b); err == nil {
		t.Fatalf("dropped message still queued")
	}
	if ok, err := q.Release(ctx, a); !ok || err != nil {
		t.Fatalf("release: %v %v", ok, err)
	}
	waitEmpty(t, q)
	if calls := d.Calls(); len(calls) != 1 || calls[0].req.QueueID != a {
		t.Errorf("calls %+v, want one of the released message", calls)
	}
	if err := q.Drop(ctx, a); err == nil {
		t.Errorf("drop of a delivered message did not fail")
	}
}

// TestMaxLoaded: with more messages due than maxLoaded, memory holds no more
// than that (but for those added due at once), and every message is
// delivered once, under concurrent adds and operator commands.
func TestMaxLoaded(t *testing.T) {
	const n, limit = 300, 20
	d := &fakeDeliverer{delay: time.Millisecond}
	dir := t.TempDir()
	opts := Options{Deliverer: d, maxLoaded: limit, window: time.Hour}
	q := openQueue(t, dir, opts)
	ctx := context.Background()
	var ids []string
	for i := range n {
		id, err := q.Add(ctx, Envelope{Recipients: rcpts(fmt.Sprintf("r%d@d%d.test", i, i%7)), ReleaseAt: time.Now().Add(300 * time.Millisecond)}, spool(t, q, fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if got := loaded(q); got > limit {
		t.Fatalf("%d messages in memory after adds, want at most %d", got, limit)
	}
	q.Close()
	q = openQueue(t, dir, opts)
	q.Start(ctx)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	peak := 0
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			peak = max(peak, loaded(q))
			// Reschedules race the loader and the deliveries.
			q.Reschedule(ctx, ids[len(ids)-1-peak%50], time.Now())
			time.Sleep(time.Millisecond)
		}
	})
	waitEmpty(t, q)
	close(stop)
	wg.Wait()
	if peak > limit+1 {
		t.Errorf("up to %d messages in memory, want at most %d (and one an operator command reads)", peak, limit)
	}
	delivered := map[string]int{}
	for _, c := range d.Calls() {
		delivered[c.req.QueueID]++
	}
	for _, id := range ids {
		if delivered[id] != 1 {
			t.Errorf("message %s delivered %d times", id, delivered[id])
		}
	}
}

// TestLoadTies: the loader reads in batches, by due time and then ID;
// more messages due at the same instant than a batch holds are all read
// in one pass.
func TestLoadTies(t *testing.T) {
	const n = 3*loadBatch - 10
	dir := t.TempDir()
	opts := Options{Deliverer: &fakeDeliverer{}, window: time.Hour} // No second pass for 12 minutes.
	q := openQueue(t, dir, opts)
	at := time.Now().Add(time.Minute)
	for i := range n {
		if _, err := q.Add(context.Background(), Envelope{Recipients: rcpts(fmt.Sprintf("r%d@example.com", i)), ReleaseAt: at}, spool(t, q, "x\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()
	q = openQueue(t, dir, opts)
	if got := loaded(q); got != 0 {
		t.Fatalf("%d in memory before Start", got)
	}
	q.Start(context.Background())
	waitFor(t, "all read", func() bool { return loaded(q) == n })
}

// TestUpgrade: a queue stored before due times and segment records
// existed is read: Open counts the segments from the records, and sets
// the due times and domains, and every message is delivered with its
// content.
func TestUpgrade(t *testing.T) {
	dir := t.TempDir()
	q := openQueue(t, dir, Options{})
	want := map[string]string{}
	for i := range 5 {
		c := fmt.Sprintf("message %d\r\n", i)
		want[add(t, q, c, fmt.Sprintf("r%d@example.com", i))] = c
	}
	big := strings.Repeat("b", SpoolMemory+1)
	want[add(t, q, big, "big@example.com")] = big
	q.Close()

	// As the previous version left it.
	db, err := bstore.Open(context.Background(), filepath.Join(dir, dbFile), nil, DBTypes...)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Write(context.Background(), func(tx *bstore.Tx) error {
		if _, err := bstore.QueryTx[segmentRecord](tx).Delete(); err != nil {
			return err
		}
		return bstore.QueryTx[Msg](tx).ForEach(func(m Msg) error {
			m.Due, m.Domains = time.Time{}, nil
			return tx.Update(&m)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	d := &fakeDeliverer{}
	q = openQueue(t, dir, Options{Deliverer: d})
	for id := range want {
		if m := stored(t, q, id); m.Due.IsZero() || len(m.Domains) != 1 {
			t.Errorf("%s: due %v, domains %v after the upgrade", id, m.Due, m.Domains)
		}
	}
	if n, err := bstore.QueryDB[segmentRecord](context.Background(), q.db).Count(); err != nil || n != 1 {
		t.Errorf("%d segment records, %v; want 1", n, err)
	}
	deliveredOnce(t, q, d, want)
}
