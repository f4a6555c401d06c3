package queue

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
)

var errDiskFull = errors.New("write /queue/tmp/spool: no space left on device")

// A Notify that fails (the DSN cannot be queued: the disk is full) keeps
// the failure's notice due: Notify is called again until it succeeds, the
// DSN is made once, the recipient is stored as Failing (never Failed)
// until then, and no delivery attempt is made again, neither for it nor
// for a recipient already delivered.
func TestNotifyFails(t *testing.T) {
	d := &fakeDeliverer{fn: func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
		res := sdk.ResultAll(req, sdk.StatusDelivered, 250, "2.0.0", "ok")
		for i, r := range req.Recipients {
			if r.Address == "bad@example.com" {
				res.Recipients[i] = sdk.RecipientResult{Address: r.Address, Status: sdk.StatusPermanent, Code: 550, EnhancedCode: "5.1.1", Text: "no such user"}
			}
		}
		return res, nil
	}}
	const failures = 3
	var (
		mu      sync.Mutex
		calls   int
		notices []Notice
		q       *Queue
		id      string
	)
	// Notify is called again after 60, 120 and 240 ms.
	q = openQueue(t, t.TempDir(), Options{Deliverer: d, BackoffScale: 0.001, Notify: func(ctx context.Context, n Notice) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("Notify without a deadline")
		}
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls <= failures {
			return errDiskFull
		}
		// The final state is not stored before the DSN is queued.
		for _, r := range stored(t, q, id).Recipients {
			if r.Address == "bad@example.com" && (r.State != Failing || r.NotifyFailures < 1) {
				t.Errorf("stored while Notify succeeds: %+v", r)
			}
		}
		notices = append(notices, n)
		return nil
	}})
	mu.Lock()
	id = add(t, q, "x\r\n", "ok@example.com", "bad@example.com")
	mu.Unlock()
	q.Start(context.Background())
	waitEmpty(t, q)

	mu.Lock()
	defer mu.Unlock()
	if calls != failures+1 || len(notices) != 1 {
		t.Fatalf("Notify called %d times, %d notices; want %d calls, 1 notice", calls, len(notices), failures+1)
	}
	n := notices[0]
	if n.Delayed || n.QueueID != id || len(n.Recipients) != 1 || n.Recipients[0].Address != "bad@example.com" || n.Recipients[0].State != Failed || n.Recipients[0].Attempts != 1 || n.Recipients[0].Last.Code != 550 {
		t.Errorf("notice %+v", n)
	}
	if c := d.Calls(); len(c) != 1 {
		t.Errorf("%d delivery attempts, want 1", len(c))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if got := d.delivered[id+" ok@example.com"]; got != 1 {
		t.Errorf("delivered %d times, want once", got)
	}
}

// A notice still due survives a restart: the failed recipient is stored
// as Failing, a delayed one with DelayUnreported, and the queue opened
// again makes the notices, without another delivery attempt for the
// failure.
func TestNotifyDueAfterRestart(t *testing.T) {
	dir := t.TempDir()
	d := &fakeDeliverer{fn: func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
		if domainOf(req.Recipients[0].Address) == "fail.test" {
			return sdk.ResultAll(req, sdk.StatusPermanent, 550, "5.1.1", "no such user"), nil
		}
		return sdk.ResultAll(req, sdk.StatusTemporary, 451, "4.3.0", "later"), nil
	}}
	// Retries far apart: after the restart, the delay is reported before
	// the next attempt.
	opts := Options{Deliverer: d, DelayAfter: 1, MaxAttempts: 30, BackoffScale: 0.001}
	var full atomic.Int32
	opts.Notify = func(ctx context.Context, n Notice) error {
		full.Add(1)
		return errDiskFull
	}
	q := openQueue(t, dir, opts)
	q.Start(context.Background())
	failing := add(t, q, "x\r\n", "a@fail.test")
	delayed := add(t, q, "y\r\n", "b@slow.test")
	waitFor(t, "notices due stored", func() bool {
		f, s := stored(t, q, failing).Recipients[0], stored(t, q, delayed).Recipients[0]
		return f.State == Failing && f.NotifyFailures >= 1 && s.State == Pending && s.DelayUnreported && s.NotifyFailures >= 1 && s.Attempts == 1
	})
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	calls := len(d.Calls())

	var mu sync.Mutex
	var notices []Notice
	opts.Notify = func(ctx context.Context, n Notice) error {
		mu.Lock()
		defer mu.Unlock()
		notices = append(notices, n)
		return nil
	}
	q = openQueue(t, dir, opts)
	q.Start(context.Background())
	waitFor(t, "notices made after the restart", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(notices) >= 2
	})
	waitFor(t, "failed message removed", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.msgs[mustParse(t, failing)] == nil
	})
	q.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(notices) != 2 {
		t.Fatalf("%d notices after restart, want 2: %+v", len(notices), notices)
	}
	for _, n := range notices {
		r := n.Recipients[0]
		switch n.QueueID {
		case failing:
			if n.Delayed || r.State != Failed || r.Attempts != 1 {
				t.Errorf("failure notice %+v", n)
			}
		case delayed:
			if !n.Delayed || r.State != Pending || r.Attempts != 1 {
				t.Errorf("delay notice %+v", n)
			}
		default:
			t.Errorf("notice of %s", n.QueueID)
		}
	}
	for _, c := range d.Calls()[calls:] {
		if c.req.QueueID == failing {
			t.Errorf("failed message attempted again after the restart: %+v", c.req)
		}
	}
	if full.Load() < 2 {
		t.Errorf("failing Notify called %d times", full.Load())
	}
}

// RetryUntil is when the last attempt is due: after the backoffs of the
// attempts still to come.
func TestRetryUntil(t *testing.T) {
	q := &Queue{opts: Options{BackoffScale: 1, MaxAttempts: 9}}
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	// After the 5th attempt, the 6th at t0, then 7th to 9th after 4, 8 and 16 hours.
	if got, want := q.RetryUntil(Rcpt{Attempts: 5, NextAttempt: t0}), t0.Add(28*time.Hour); !got.Equal(want) {
		t.Errorf("RetryUntil = %v, want %v", got, want)
	}
	if got := q.RetryUntil(Rcpt{Attempts: 8, NextAttempt: t0}); !got.Equal(t0) {
		t.Errorf("RetryUntil before the last attempt = %v, want %v", got, t0)
	}
}

func TestNotifyBackoff(t *testing.T) {
	q := &Queue{opts: Options{BackoffScale: 1}}
	want := []time.Duration{time.Minute, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour}
	for n, w := range want {
		if got := q.notifyBackoff(n); got != w {
			t.Errorf("notifyBackoff(%d) = %v, want %v", n, got, w)
		}
	}
}
