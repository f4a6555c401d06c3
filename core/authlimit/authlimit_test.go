package authlimit

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fail begins an attempt of ip and fails it, returning the delay; ok false
// if the attempt was refused.
func fail(l *Limiter, ip netip.Addr) (time.Duration, bool) {
	a, ok := l.Begin(context.Background(), ip)
	if !ok {
		return 0, false
	}
	return a.Failed(), true
}

// allowed reports whether ip may begin an attempt now, without counting
// one; having to wait for attempts in progress is not.
func allowed(l *Limiter, ip netip.Addr) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	a, ok := l.Begin(ctx, ip)
	a.Abandon()
	return ok
}

func TestLimiter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := New()
	l.now = func() time.Time { return now }
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	v6 := netip.MustParseAddr("2001:db8::1")
	v6same := netip.MustParseAddr("2001:db8::2")

	wantDelays := []time.Duration{0, 0, 1 * time.Second, 2 * time.Second, 3 * time.Second, 4 * time.Second, 5 * time.Second, 6 * time.Second, 7 * time.Second, 8 * time.Second}
	for i, want := range wantDelays {
		d, ok := fail(l, a)
		if !ok {
			t.Fatalf("failure %d: already shut out", i+1)
		}
		if d != want {
			t.Fatalf("failure %d: delay %v, want %v", i+1, d, want)
		}
	}
	if allowed(l, a) {
		t.Fatal("allowed after MaxFailures")
	}
	if !allowed(l, b) {
		t.Fatal("a neighbour was shut out")
	}
	now = now.Add(l.Window + time.Second)
	if !allowed(l, a) {
		t.Fatal("still shut out after the window")
	}

	// IPv6 counts per /64; success forgets.
	for range 10 {
		fail(l, v6)
	}
	if allowed(l, v6same) {
		t.Fatal("another address of the same /64 allowed")
	}
	now = now.Add(l.Window + time.Second)
	att, _ := l.Begin(context.Background(), v6same)
	att.Succeeded()
	for range 9 {
		fail(l, v6)
	}
	if !allowed(l, v6) {
		t.Fatal("failures before a success still counted")
	}
	fail(l, netip.MustParseAddr("::ffff:192.0.2.2"))
	fail(l, netip.MustParseAddr("::ffff:192.0.2.2"))
	if d, _ := fail(l, b); d != 1*time.Second {
		t.Fatalf("IPv4-mapped address not counted with its IPv4 form: delay %v", d)
	}
}

// Attempts count from their start: of 60 parallel wrong guesses, at most
// MaxFailures get to a password check; the rest wait for those to fail and
// are refused. The old check-then-count let all of them through.
func TestParallel(t *testing.T) {
	l := New()
	l.Delay = 0
	ip := netip.MustParseAddr("192.0.2.1")
	var begun, inflight, most atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 60 {
		wg.Go(func() {
			<-start
			if a, ok := l.Begin(context.Background(), ip); ok {
				begun.Add(1)
				n := inflight.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(time.Millisecond) // The password check.
				inflight.Add(-1)
				a.Failed()
				a.Failed() // Ending twice counts once.
			}
		})
	}
	close(start)
	wg.Wait()
	if int(begun.Load()) != l.MaxFailures {
		t.Fatalf("%d of 60 parallel attempts began, want %d", begun.Load(), l.MaxFailures)
	}
	if allowed(l, ip) {
		t.Fatal("allowed after MaxFailures failed")
	}
}

// Parallel logins that succeed all get through, though more than
// MaxFailures start at once: a client opening many connections.
func TestParallelSuccess(t *testing.T) {
	l := New()
	ip := netip.MustParseAddr("192.0.2.1")
	var ok atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 3 * l.MaxFailures {
		wg.Go(func() {
			<-start
			if a, began := l.Begin(context.Background(), ip); began {
				time.Sleep(time.Millisecond)
				a.Succeeded()
				ok.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if int(ok.Load()) != 3*l.MaxFailures {
		t.Fatalf("%d of %d parallel good logins got through", ok.Load(), 3*l.MaxFailures)
	}
}

// A wait for attempts in progress ends with the context.
func TestBeginWaitCanceled(t *testing.T) {
	l := New()
	ip := netip.MustParseAddr("192.0.2.1")
	for range l.MaxFailures {
		if _, ok := l.Begin(context.Background(), ip); !ok {
			t.Fatal("refused")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, ok := l.Begin(ctx, ip); ok {
		t.Fatal("began past MaxFailures in progress")
	}
}

// An abandoned attempt takes its count back; one that succeeds forgets all.
func TestAbandonSucceed(t *testing.T) {
	l := New()
	ip := netip.MustParseAddr("192.0.2.1")
	for range 3 * l.MaxFailures {
		a, ok := l.Begin(context.Background(), ip)
		if !ok {
			t.Fatal("abandoned attempts were counted")
		}
		a.Abandon()
		a.Abandon()
	}
	for range l.MaxFailures - 1 {
		fail(l, ip)
	}
	a, ok := l.Begin(context.Background(), ip)
	if !ok {
		t.Fatal("last attempt refused")
	}
	if allowed(l, ip) {
		t.Fatal("an attempt in progress was not counted")
	}
	a.Succeeded()
	a.Abandon() // Ended already: no effect.
	if d, _ := fail(l, ip); d != 0 {
		t.Fatalf("delay %v after success, want none", d)
	}
}

// FailAndWait ends the attempt as failed and waits its delay, unless ctx
// ends first.
func TestFailAndWait(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	tests := []struct {
		name     string
		canceled bool
		free     int
		min, max time.Duration
	}{
		{"free failure", false, 1, 0, time.Second},
		{"delayed", false, 0, 100 * time.Millisecond, 2 * time.Second},
		{"delay cut short by ctx", true, 0, 0, 90 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New()
			l.FreeFailures, l.Delay, l.MaxFailures = tt.free, 100*time.Millisecond, 1
			ctx, cancel := context.WithCancel(context.Background())
			if tt.canceled {
				cancel()
			}
			defer cancel()
			a, _ := l.Begin(context.Background(), ip)
			start := time.Now()
			a.FailAndWait(ctx)
			if d := time.Since(start); d < tt.min || d > tt.max {
				t.Errorf("waited %v, want %v to %v", d, tt.min, tt.max)
			}
			if allowed(l, ip) {
				t.Error("failure not counted")
			}
		})
	}
}

// A nil Limiter limits nothing.
func TestNil(t *testing.T) {
	var l *Limiter
	ip := netip.MustParseAddr("192.0.2.1")
	for range 20 {
		a, ok := l.Begin(context.Background(), ip)
		if !ok || a != nil {
			t.Fatal("nil Limiter refused or made an attempt")
		}
		if d := a.Failed(); d != 0 {
			t.Fatalf("Failed: %v", d)
		}
		a.FailAndWait(context.Background())
		a.Succeeded()
		a.Abandon()
	}
}
