// Package authlimit slows down and then shuts out remote addresses that keep
// failing to authenticate, against password guessing over SMTP AUTH and IMAP
// LOGIN/AUTHENTICATE. Addresses are grouped as IPv4 /32 and IPv6 /64, the
// block a single host usually controls.
package authlimit

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// Limiter counts failed authentications per remote network. Its zero value
// is not usable; use New. A nil *Limiter limits nothing: Allowed reports
// true, Failed returns 0, and the others do nothing.
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
	failures int
	last     time.Time
}

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
	if e != nil && l.now().Sub(e.last) > l.Window {
		delete(l.entries, k)
		e = nil
	}
	return e, k
}

// Allowed reports whether ip may try to authenticate now. When it may not,
// the caller should answer with a temporary error and disconnect.
func (l *Limiter) Allowed(ip netip.Addr) bool {
	if l == nil {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, _ := l.get(ip)
	return e == nil || e.failures < l.MaxFailures
}

// Failed records a failure of ip and returns how long to wait before
// answering it.
func (l *Limiter) Failed(ip netip.Addr) time.Duration {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, k := l.get(ip)
	if e == nil {
		if len(l.entries) >= maxEntries {
			l.prune()
		}
		e = &entry{}
		l.entries[k] = e
	}
	e.failures++
	e.last = l.now()
	extra := e.failures - l.FreeFailures
	if extra <= 0 {
		return 0
	}
	return min(time.Duration(extra)*l.Delay, l.MaxDelay)
}

// FailAndWait records a failure of ip and waits the delay Failed returns,
// or until ctx is done. The delay holds the caller only, the session that
// failed: a client that hangs up and reconnects finds the count where it
// left it.
func (l *Limiter) FailAndWait(ctx context.Context, ip netip.Addr) {
	d := l.Failed(ip)
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

// Succeeded forgets ip's failures.
func (l *Limiter) Succeeded(ip netip.Addr) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.entries, key(ip))
}

func (l *Limiter) prune() {
	now := l.now()
	for k, e := range l.entries {
		if now.Sub(e.last) > l.Window {
			delete(l.entries, k)
		}
	}
	if len(l.entries) >= maxEntries {
		clear(l.entries)
	}
}
