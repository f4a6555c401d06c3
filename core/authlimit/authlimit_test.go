package authlimit

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

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
		if !l.Allowed(a) {
			t.Fatalf("failure %d: already shut out", i+1)
		}
		if d := l.Failed(a); d != want {
			t.Fatalf("failure %d: delay %v, want %v", i+1, d, want)
		}
	}
	if l.Allowed(a) {
		t.Fatal("allowed after MaxFailures")
	}
	if !l.Allowed(b) {
		t.Fatal("a neighbour was shut out")
	}
	now = now.Add(l.Window + time.Second)
	if !l.Allowed(a) {
		t.Fatal("still shut out after the window")
	}

	// IPv6 counts per /64; success forgets.
	for range 10 {
		l.Failed(v6)
	}
	if l.Allowed(v6same) {
		t.Fatal("another address of the same /64 allowed")
	}
	l.Succeeded(v6same)
	if !l.Allowed(v6) {
		t.Fatal("not allowed after success")
	}
	l.Failed(netip.MustParseAddr("::ffff:192.0.2.2"))
	l.Failed(netip.MustParseAddr("::ffff:192.0.2.2"))
	if d := l.Failed(b); d != 1*time.Second {
		t.Fatalf("IPv4-mapped address not counted with its IPv4 form: delay %v", d)
	}
}

// FailAndWait counts the failure and waits its delay, unless ctx ends first.
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
			start := time.Now()
			l.FailAndWait(ctx, ip)
			if d := time.Since(start); d < tt.min || d > tt.max {
				t.Errorf("waited %v, want %v to %v", d, tt.min, tt.max)
			}
			if l.Allowed(ip) {
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
		if d := l.Failed(ip); d != 0 {
			t.Fatalf("Failed: %v", d)
		}
		l.FailAndWait(context.Background(), ip)
	}
	l.Succeeded(ip)
	if !l.Allowed(ip) {
		t.Error("not allowed")
	}
}
