// Package authlimit slows down and then shuts out remote addresses that keep
// failing to authenticate, against password guessing over SMTP AUTH and IMAP
// LOGIN/AUTHENTICATE. Addresses are grouped as IPv4 /32 and IPv6 /64, the
// block a single host usually controls.
package authlimit

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Limiter counts authentication attempts per remote network: an attempt
// in progress counts as a failure until it ends, so that no more attempts
// run at once than may still fail. Its zero value is not usable;
// use New. A nil *Limiter limits nothing.
type Limiter struct {
	// FreeFailures are failures answered without delay. Default 2.
	FreeFailures int
	// Delay is added per failure beyond FreeFailures, up to MaxDelay.
	// Defaults 1s and 10s.
	Delay, MaxDelay time.Duration
	// MaxFailures within Window shut the network out until Window has passed
	// since its last failure. Defaults 10 and 15 minutes.
	MaxFailures int
	Window      time.Duration

	now func() time.Time

	mu      sync.Mutex
	entries map[netip.Prefix]*entry
}

type entry struct {
	failures int // Ended in failure, within Window.
	inflight int // Begun, not ended.
	last     time.Time
	ended    chan struct{} // Closed, and replaced, when an attempt ends.
}

// end records that an attempt ended; waiting Begins look again.
func (e *entry) end() {
	e.inflight--
	close(e.ended)
	e.ended = make(chan struct{})
}

// maxWait bounds how long Begin waits for attempts in progress to end.
const maxWait = 30 * time.Second

// maxEntries bounds memory under a flood from many addresses; beyond it,
// expired entries are dropped, and if that is not enough, all.
const maxEntries = 100000

// New returns a Limiter with the default settings.
func New() *Limiter {
	return &Limiter{FreeFailures: 2, Delay: time.Second, MaxDelay: 10 * time.Second, MaxFailures: 10, Window: 15 * time.Minute, now: time.Now, entries: map[netip.Prefix]*entry{}}
}

func key(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// get returns ip's entry, nil if it has none or it expired. mu is held.
func (l *Limiter) get(ip netip.Addr) (*entry, netip.Prefix) {
	k := key(ip)
	e := l.entries[k]
	if e != nil && e.inflight == 0 && l.now().Sub(e.last) > l.Window {
		delete(l.entries, k)
		e = nil
	}
	return e, k
}

// Begin starts an authentication attempt of ip. Attempts in progress
// count as failures: while failures and attempts in progress together
// reach MaxFailures, Begin waits for one to end (up to maxWait, or until
// ctx is done), so that N parallel guesses get no more password checks
// than N sequential ones, while parallel logins that succeed (a client
// opening several connections) all get through. It reports false, and no
// attempt, when ip failed too often or the wait ended first; the caller
// should then answer with a temporary error and disconnect. Otherwise the
// caller ends the attempt with exactly one of Failed, FailAndWait,
// Succeeded or Abandon.
func (l *Limiter) Begin(ctx context.Context, ip netip.Addr) (*Attempt, bool) {
	if l == nil {
		return nil, true
	}
	timer := time.NewTimer(maxWait)
	defer timer.Stop()
	for {
		l.mu.Lock()
		e, k := l.get(ip)
		if e == nil {
			if len(l.entries) >= maxEntries {
				l.prune()
			}
			e = &entry{ended: make(chan struct{})}
			l.entries[k] = e
		}
		if e.failures >= l.MaxFailures {
			l.mu.Unlock()
			return nil, false
		}
		if e.failures+e.inflight < l.MaxFailures {
			e.inflight++
			e.last = l.now()
			a := &Attempt{l: l, key: k, failures: e.failures + e.inflight}
			l.mu.Unlock()
			return a, true
		}
		ended := e.ended
		l.mu.Unlock()
		select {
		case <-ended:
		case <-ctx.Done():
			return nil, false
		case <-timer.C:
			return nil, false
		}
	}
}

// Attempt is an authentication attempt Begin counted; the first of its
// methods ends it, later calls do nothing. Safe from any goroutine. A nil
// *Attempt, from a nil Limiter, does nothing.
type Attempt struct {
	l        *Limiter
	key      netip.Prefix
	failures int // Of the address, those in progress and this one included, when it began.
	done     atomic.Bool
}

// Failed ends a failed attempt and returns how long to wait before
// answering it.
func (a *Attempt) Failed() time.Duration {
	if a == nil || a.end() {
		return 0
	}
	a.l.mu.Lock()
	e := a.l.entries[a.key]
	if e == nil { // Another attempt succeeded meanwhile.
		e = &entry{inflight: 1, ended: make(chan struct{})}
		a.l.entries[a.key] = e
	}
	e.failures++
	e.last = a.l.now()
	e.end()
	a.l.mu.Unlock()
	extra := a.failures - a.l.FreeFailures
	if extra <= 0 {
		return 0
	}
	return min(time.Duration(extra)*a.l.Delay, a.l.MaxDelay)
}

// FailAndWait ends a failed attempt and waits the delay Failed returns, or
// until ctx is done. The delay holds the caller only, the session that
// failed: a client that hangs up and reconnects finds the count where it
// left it.
func (a *Attempt) FailAndWait(ctx context.Context) {
	d := a.Failed()
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Succeeded ends a successful attempt and forgets the address's failures.
func (a *Attempt) Succeeded() {
	if a == nil || a.end() {
		return
	}
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	e := a.l.entries[a.key]
	if e == nil {
		return
	}
	e.failures = 0
	e.end()
	if e.inflight <= 0 {
		delete(a.l.entries, a.key)
	}
}

// Abandon ends an attempt that proved nothing, a temporary failure of the
// server or a client's cancel, and takes back its count.
func (a *Attempt) Abandon() {
	if a == nil || a.end() {
		return
	}
	a.l.mu.Lock()
	defer a.l.mu.Unlock()
	if e := a.l.entries[a.key]; e != nil {
		e.end()
	}
}

// end marks the attempt ended and reports whether it already was.
func (a *Attempt) end() bool {
	return a.done.Swap(true)
}

func (l *Limiter) prune() {
	now := l.now()
	for k, e := range l.entries {
		if e.inflight == 0 && now.Sub(e.last) > l.Window {
			delete(l.entries, k)
		}
	}
	if len(l.entries) >= maxEntries {
		clear(l.entries)
	}
}
