// Package connlimit caps the connections the listeners accept: in all (a
// Gate, shared by every listener), per listener, per client (an IPv4
// address or an IPv6 /64) at once, and per client in new connections a
// minute. A connection over a cap never reaches the protocol server: the
// listener answers it with the protocol's refusal itself (SMTP's 421, IMAP's
// BYE), after the TLS handshake on an implicit-TLS listener, in a bounded
// number of goroutines, and closes it.
//
// The caps bound the file descriptors and goroutines one client can hold
// (slowloris); the greeting timeouts of core/smtpd and core/imapd bound how
// long an idle connection keeps its slot.
package connlimit

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Reason says which cap a connection was refused by.
type Reason int

const (
	ReasonTotal    Reason = iota + 1 // The Gate's cap on all listeners.
	ReasonListener                   // Limits.MaxConnections of the listener.
	ReasonPerIP                      // Limits.MaxPerIP.
	ReasonRate                       // Limits.RatePerIP.
)

func (r Reason) String() string {
	switch r {
	case ReasonTotal:
		return "total"
	case ReasonListener:
		return "listener"
	case ReasonPerIP:
		return "per_ip"
	case ReasonRate:
		return "rate_per_ip"
	}
	return "unknown"
}

// Limits are the caps of one listener. Zero values mean no cap.
type Limits struct {
	MaxConnections int // Open at once on this listener.
	MaxPerIP       int // Open at once from one client.
	// RatePerIP is new connections a minute from one client: a token
	// bucket holding RatePerIP, refilled at RatePerIP a minute. Refused
	// connections take no token.
	RatePerIP int
	// Exempt clients are held to neither MaxPerIP nor RatePerIP; the Gate's
	// and MaxConnections still apply.
	Exempt []netip.Prefix
}

// Refusal is how a listener turns away a connection over a cap.
type Refusal struct {
	// TLS, if set, is the listener's implicit TLS: the reply is written
	// after a handshake.
	TLS *tls.Config
	// Reply is the protocol's refusal, with its line ending, e.g.
	// "421 4.7.0 mx.example Too many connections, try again later\r\n".
	Reply func(Reason) string
}

// Timeouts and bounds of refusals.
const (
	refusalTimeout = 5 * time.Second // For a TLS handshake and the reply together.
	maxRefusing    = 32              // TLS refusals in progress per listener; more are closed at once.
	sweepInterval  = time.Minute     // Forget idle clients this often.
	summaryEvery   = 10 * time.Second
)

// Gate caps the connections of all its listeners together.
type Gate struct {
	max  int64
	open atomic.Int64
}

// NewGate returns a Gate allowing max connections at once; 0: no cap.
func NewGate(max int) *Gate {
	return &Gate{max: int64(max)}
}

// Open returns the number of connections open through the Gate.
func (g *Gate) Open() int {
	return int(g.open.Load())
}

func (g *Gate) take() bool {
	if g.open.Add(1) > g.max && g.max > 0 {
		g.open.Add(-1)
		return false
	}
	return true
}

// Listener returns ln with the Gate's cap and lim applied; refusals and a
// summary of them are logged to log (nil: discard).
func (g *Gate) Listener(ln net.Listener, lim Limits, refusal Refusal, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{
		Listener: ln,
		gate:     g,
		lim:      lim,
		refusal:  refusal,
		log:      log,
		clients:  map[netip.Prefix]*client{},
		refusing: make(chan struct{}, maxRefusing),
		now:      time.Now,
	}
}

// Listener is a net.Listener whose Accept returns only connections within
// the caps.
type Listener struct {
	net.Listener
	gate     *Gate
	lim      Limits
	refusal  Refusal
	log      *slog.Logger
	refusing chan struct{} // Semaphore of refusal goroutines.
	now      func() time.Time

	mu        sync.Mutex
	open      int
	clients   map[netip.Prefix]*client
	swept     time.Time
	refused   [ReasonRate + 1]int // Since the last summary.
	summaryAt time.Time
}

// client is what a Listener knows of one client.
type client struct {
	open   int
	tokens float64   // Of the rate bucket, as of at.
	at     time.Time // Zero: the bucket is full.
}

// Key returns the client an address counts as: the IPv4 address, or the
// /64 of an IPv6 address (one subscriber's usual allocation).
func Key(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

// Accept returns the next connection within the caps; the others are
// refused on the side.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var ip netip.Addr
		if ap, err := netip.ParseAddrPort(nc.RemoteAddr().String()); err == nil {
			ip = ap.Addr()
		}
		c, reason := l.admit(ip)
		if reason == 0 {
			return &conn{Conn: nc, l: l, client: c}, nil
		}
		l.refuse(nc, reason)
	}
}

// admit takes a slot for a connection from ip, or says which cap refuses it.
func (l *Listener) admit(ip netip.Addr) (netip.Prefix, Reason) {
	if !l.gate.take() {
		l.countRefused(ReasonTotal)
		return netip.Prefix{}, ReasonTotal
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.swept) >= sweepInterval {
		l.sweepLocked(now)
	}
	reason := l.admitLocked(ip, now)
	if reason != 0 {
		l.gate.open.Add(-1)
		l.refused[reason]++
		return netip.Prefix{}, reason
	}
	l.open++
	if !l.counted(ip) {
		return netip.Prefix{}, 0
	}
	return Key(ip), 0
}

func (l *Listener) admitLocked(ip netip.Addr, now time.Time) Reason {
	if l.lim.MaxConnections > 0 && l.open >= l.lim.MaxConnections {
		return ReasonListener
	}
	if !l.counted(ip) {
		return 0
	}
	k := Key(ip)
	c := l.clients[k]
	if c == nil {
		c = &client{}
	}
	if l.lim.MaxPerIP > 0 && c.open >= l.lim.MaxPerIP {
		return ReasonPerIP
	}
	if l.lim.RatePerIP > 0 {
		tokens := l.tokens(c, now)
		if tokens < 1 {
			return ReasonRate
		}
		c.tokens, c.at = tokens-1, now
	}
	c.open++
	l.clients[k] = c
	return 0
}

// counted reports whether ip is held to the per-client caps.
func (l *Listener) counted(ip netip.Addr) bool {
	if l.lim.MaxPerIP <= 0 && l.lim.RatePerIP <= 0 || !ip.IsValid() {
		return false
	}
	ip = ip.Unmap()
	for _, p := range l.lim.Exempt {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// tokens returns the tokens of c's bucket at now.
func (l *Listener) tokens(c *client, now time.Time) float64 {
	full := float64(l.lim.RatePerIP)
	if c.at.IsZero() {
		return full
	}
	return min(full, c.tokens+now.Sub(c.at).Minutes()*full)
}

// release gives back the slot of a closed connection.
func (l *Listener) release(k netip.Prefix) {
	l.gate.open.Add(-1)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if !k.IsValid() {
		return
	}
	c := l.clients[k]
	if c == nil {
		return
	}
	c.open--
	if c.open <= 0 && l.idle(c, l.now()) {
		delete(l.clients, k)
	}
}

// idle reports whether c can be forgotten: no connection open and a full
// bucket.
func (l *Listener) idle(c *client, now time.Time) bool {
	return c.open <= 0 && (l.lim.RatePerIP <= 0 || l.tokens(c, now) >= float64(l.lim.RatePerIP))
}

// sweepLocked forgets idle clients, so the table holds only clients with a
// connection open or a bucket refilling: at most a minute of new clients.
func (l *Listener) sweepLocked(now time.Time) {
	l.swept = now
	for k, c := range l.clients {
		if l.idle(c, now) {
			delete(l.clients, k)
		}
	}
}

// Clients returns the number of clients the listener keeps state for.
func (l *Listener) Clients() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

func (l *Listener) countRefused(r Reason) {
	l.mu.Lock()
	l.refused[r]++
	l.mu.Unlock()
}

// refuse answers nc with the refusal and closes it. A plain reply is
// written at once: it fits the new socket's send buffer. A reply after a
// TLS handshake is written in a goroutine of its own, or nc is closed at
// once if maxRefusing are busy. Each refusal is logged at debug level, and
// a summary at most every summaryEvery at warning level, so a flood cannot
// flood the log.
func (l *Listener) refuse(nc net.Conn, reason Reason) {
	l.log.Debug("connection refused", slog.String("remote", nc.RemoteAddr().String()), slog.String("limit", reason.String()))
	l.summarize()
	if l.refusal.TLS == nil {
		if l.refusal.Reply != nil {
			nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			io.WriteString(nc, l.refusal.Reply(reason))
		}
		nc.Close()
		return
	}
	select {
	case l.refusing <- struct{}{}:
	default:
		nc.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(refusalTimeout))
		tc := tls.Server(nc, l.refusal.TLS)
		if err := tc.Handshake(); err != nil {
			return
		}
		if l.refusal.Reply != nil {
			io.WriteString(tc, l.refusal.Reply(reason))
		}
		tc.CloseWrite()
	}()
}

// summarize logs how many connections each cap refused since the last
// summary, if summaryEvery has passed.
func (l *Listener) summarize() {
	l.mu.Lock()
	now := l.now()
	if now.Sub(l.summaryAt) < summaryEvery {
		l.mu.Unlock()
		return
	}
	l.summaryAt = now
	counts := l.refused
	l.refused = [ReasonRate + 1]int{}
	l.mu.Unlock()
	var attrs []any
	for r := ReasonTotal; r <= ReasonRate; r++ {
		if counts[r] > 0 {
			attrs = append(attrs, slog.Int(r.String(), counts[r]))
		}
	}
	l.log.Warn("connections refused over limits", attrs...)
}

// conn gives back its slot when closed.
type conn struct {
	net.Conn
	l      *Listener
	client netip.Prefix // Invalid if not counted per client.
	closed atomic.Bool
}

func (c *conn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c.client)
	}
	return c.Conn.Close()
}
