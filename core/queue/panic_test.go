package queue

import (
	"container/heap"
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/core/guard"
	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// routerFunc is a Router made of a func.
type routerFunc func(account string, from, to mailaddr.Domain, attempts int) string

func (f routerFunc) Route(account string, from, to mailaddr.Domain, attempts int) string {
	return f(account, from, to, attempts)
}

// A panic in the Router or the Deliverer fails the attempt of that one
// message temporarily: it stays queued and is delivered once, after the
// panics stop, while other messages are delivered meanwhile.
func TestPanicInDelivery(t *testing.T) {
	for _, where := range []string{"router", "deliverer"} {
		t.Run(where, func(t *testing.T) {
			var healed atomic.Bool
			breaks := func(domain string) bool { return domain == "panic.test" && !healed.Load() }
			d := &fakeDeliverer{fn: func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
				if where == "deliverer" && breaks(domainOf(req.Recipients[0].Address)) {
					panic("deliverer bug")
				}
				return sdk.ResultAll(req, sdk.StatusDelivered, 250, "2.0.0", "ok"), nil
			}}
			router := routerFunc(func(account string, from, to mailaddr.Domain, attempts int) string {
				if where == "router" && breaks(to.ASCII) {
					panic("router bug")
				}
				return fakeRouter{}.Route(account, from, to, attempts)
			})
			before := guard.Panics()
			// Many attempts: the message must not fail while panics go on.
			q := openQueue(t, t.TempDir(), Options{Deliverer: d, Router: router, MaxAttempts: 30})
			q.Start(context.Background())
			broken := add(t, q, "x\r\n", "a@panic.test")
			ok := add(t, q, "y\r\n", "b@ok.test")

			waitFor(t, "other message delivered, failed attempts stored", func() bool {
				d.mu.Lock()
				delivered := d.delivered[ok+" b@ok.test"]
				d.mu.Unlock()
				r := stored(t, q, broken).Recipients[0]
				return delivered == 1 && r.State == Pending && r.Attempts >= 1 && r.Last.Status == sdk.StatusTemporary && r.Last.Text == guard.ErrPanic.Error()
			})
			panics := guard.Panics() - before
			if panics < 1 {
				t.Fatalf("%d panics counted", panics)
			}

			healed.Store(true)
			if err := q.retry(context.Background(), broken); err != nil {
				t.Fatal(err)
			}
			waitEmpty(t, q)
			var calls []call
			for _, c := range d.Calls() {
				if c.req.QueueID == broken {
					calls = append(calls, c)
				}
			}
			d.mu.Lock()
			delivered := d.delivered[broken+" a@panic.test"]
			d.mu.Unlock()
			if delivered != 1 {
				t.Fatalf("message delivered %d times, want once", delivered)
			}
			last := calls[len(calls)-1]
			// Every panicking attempt counted; one Deliver call each, but
			// for those whose routing panicked.
			wantCalls := 1
			if where == "deliverer" {
				wantCalls = last.req.Attempt
			}
			if len(calls) != wantCalls || last.req.Attempt < 2 || last.transport != "retry" {
				t.Errorf("%d calls, last attempt %d through %q; want %d calls, attempt ≥ 2 through \"retry\"", len(calls), last.req.Attempt, last.transport, wantCalls)
			}
		})
	}
}

// A panic in Notify (composing a DSN) keeps the notice due: the recipient
// is not attempted again, Notify is called again after a backoff, and other
// messages are delivered meanwhile.
func TestPanicInNotify(t *testing.T) {
	t.Run("failure", func(t *testing.T) {
		var healed atomic.Bool
		d := &fakeDeliverer{fn: func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
			if domainOf(req.Recipients[0].Address) == "fail.test" {
				return sdk.ResultAll(req, sdk.StatusPermanent, 550, "5.1.1", "no such user"), nil
			}
			return sdk.ResultAll(req, sdk.StatusDelivered, 250, "2.0.0", "ok"), nil
		}}
		var mu sync.Mutex
		var notices []Notice
		before := guard.Panics()
		q := openQueue(t, t.TempDir(), Options{Deliverer: d, Notify: func(ctx context.Context, n Notice) error {
			if !healed.Load() {
				panic("dsn bug")
			}
			mu.Lock()
			defer mu.Unlock()
			notices = append(notices, n)
			return nil
		}})
		q.Start(context.Background())
		failing := add(t, q, "x\r\n", "a@fail.test")
		ok := add(t, q, "y\r\n", "b@ok.test")

		waitFor(t, "other message delivered, failure kept", func() bool {
			d.mu.Lock()
			delivered := d.delivered[ok+" b@ok.test"]
			d.mu.Unlock()
			r := stored(t, q, failing).Recipients[0]
			return delivered == 1 && guard.Panics()-before >= 2 && r.State == Failing && r.NotifyFailures >= 2 && r.Attempts == 1 && r.Last.Code == 550
		})
		healed.Store(true)
		waitEmpty(t, q)
		calls := 0
		for _, c := range d.Calls() {
			if c.req.QueueID == failing {
				calls++
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if len(notices) != 1 || notices[0].QueueID != failing || notices[0].Delayed || len(notices[0].Recipients) != 1 {
			t.Fatalf("notices %+v, want one failure of %s", notices, failing)
		}
		if r := notices[0].Recipients[0]; r.State != Failed || r.Last.Code != 550 || r.Attempts != 1 || calls != 1 {
			t.Errorf("failed recipient %+v after %d calls, want 1", r, calls)
		}
	})

	t.Run("delay", func(t *testing.T) {
		d := &fakeDeliverer{fn: func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
			return sdk.ResultAll(req, sdk.StatusTemporary, 451, "4.3.0", "later"), nil
		}}
		var mu sync.Mutex
		var notices []Notice
		panicked := false
		before := guard.Panics()
		// Notify is called again after 6 ms, the third attempt comes 90 ms
		// after the second.
		q := openQueue(t, t.TempDir(), Options{Deliverer: d, MaxAttempts: 4, DelayAfter: 2, BackoffScale: 0.0001, Notify: func(ctx context.Context, n Notice) error {
			mu.Lock()
			defer mu.Unlock()
			if n.Delayed && !panicked {
				panicked = true
				panic(errors.New("dsn bug"))
			}
			notices = append(notices, n)
			return nil
		}})
		q.Start(context.Background())
		add(t, q, "x\r\n", "rcpt@example.com")
		waitEmpty(t, q)
		var attempts []int
		for _, c := range d.Calls() {
			attempts = append(attempts, c.req.Attempt)
		}
		mu.Lock()
		defer mu.Unlock()
		// The delay notice is made again without another attempt.
		if len(notices) != 2 || !notices[0].Delayed || notices[0].Recipients[0].Attempts != 2 || notices[1].Delayed || notices[1].Recipients[0].Attempts != 4 {
			t.Errorf("notices: %+v", notices)
		}
		if want := []int{1, 2, 3, 4}; !slices.Equal(attempts, want) {
			t.Errorf("attempts %v, want %v", attempts, want)
		}
		if got := guard.Panics() - before; got != 1 {
			t.Errorf("%d panics counted, want 1", got)
		}
	})
}

// A panic in the committer fails the changes of its group: the waiting Add
// gets an error (a listener answers 4xx), nothing of the group is stored,
// and later changes are committed as before.
func TestPanicInCommit(t *testing.T) {
	dir := t.TempDir()
	d := &fakeDeliverer{}
	q := openQueue(t, dir, Options{Deliverer: d})
	q.Start(context.Background())
	before := guard.Panics()

	// An insert and, in the same group, a change the committer cannot
	// handle (content without a record): a bug that panics.
	id := q.lastID.Add(1)
	m := &Msg{ID: id, From: "sender@example.org", Size: 3, Queued: time.Now(), Recipients: []Rcpt{{Recipient: sdk.Recipient{Address: "a@example.com"}, Domain: "example.com"}}}
	done := make(chan error, 1)
	c := q.commit
	c.mu.Lock()
	c.ops = append(c.ops, op{insert: m, data: []byte("x\r\n"), done: done}, op{data: []byte("bug")})
	c.mu.Unlock()
	c.wake <- struct{}{}
	select {
	case err := <-done:
		if !errors.Is(err, guard.ErrPanic) {
			t.Fatalf("waiter got %v, want ErrPanic", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiter not answered")
	}
	if got := guard.Panics() - before; got != 1 {
		t.Errorf("%d panics counted, want 1", got)
	}
	if err := q.db.Get(context.Background(), &Msg{ID: id}); err == nil {
		t.Errorf("record of the failed insert stored")
	}

	// The committer goes on: a message added now is stored and delivered.
	ok := add(t, q, "y\r\n", "b@example.com")
	waitEmpty(t, q)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.delivered[ok+" b@example.com"] != 1 || len(d.calls) != 1 {
		t.Errorf("calls %+v, want one delivery of %s", d.calls, ok)
	}
}

// A panic in the scheduler (here: a job without a message, a bug) does not
// stop it: messages added later are delivered.
func TestPanicInScheduler(t *testing.T) {
	d := &fakeDeliverer{}
	q := openQueue(t, t.TempDir(), Options{Deliverer: d})
	before := guard.Panics()
	q.mu.Lock()
	heap.Push(&q.due, &job{domain: "example.com"})
	q.mu.Unlock()
	q.Start(context.Background())
	waitFor(t, "panic", func() bool { return guard.Panics() > before })
	id := add(t, q, "x\r\n", "a@example.com")
	waitFor(t, "delivery", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.delivered[id+" a@example.com"] == 1
	})
	// The failed start took no delivery slot.
	waitFor(t, "free slots", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.running == 0 && len(q.active) == 0
	})
}
