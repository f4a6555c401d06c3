// Package clientconn tags the connections a listener accepts for the
// protocol servers (core/smtpd, core/imapd): each gets a connection id
// ("cid"), a logger carrying it and the remote address, and the client's
// IP address. A connection logs "connection closed" with its duration once,
// and can be told to hang up after its next write, the reply that ends a
// session: SMTP's 421 before closing (RFC 5321 §3.8), or IMAP's last NO.
// Protocol servers find the Conn again below TLS with Of.
package clientconn

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Listener wraps a net.Listener; Accept returns *Conn values.
type Listener struct {
	net.Listener
	// InitialReadTimeout, if set, is the read deadline of each accepted
	// connection until the protocol server sets its own: it bounds the TLS
	// handshake on an implicit-TLS listener (RFC 8314 §3.3), for servers
	// that set no deadline before their greeting.
	InitialReadTimeout time.Duration

	log     *slog.Logger
	cidBase uint64 // Random, so ids differ across restarts.
	cidSeq  atomic.Uint64
}

// NewListener returns l tagging its connections; their loggers derive from
// log (nil: discard).
func NewListener(l net.Listener, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var b [8]byte
	rand.Read(b[:])
	return &Listener{Listener: l, log: log, cidBase: binary.LittleEndian.Uint64(b[:])}
}

// Accept waits for the next connection and returns it as a *Conn.
func (l *Listener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cid := strconv.FormatUint(l.cidBase+l.cidSeq.Add(1), 36)
	remote := nc.RemoteAddr().String()
	c := &Conn{Conn: nc, Log: l.log.With(slog.String("cid", cid), slog.String("remote", remote)), start: time.Now()}
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		c.IP = ap.Addr().Unmap()
	}
	if l.InitialReadTimeout > 0 {
		nc.SetReadDeadline(time.Now().Add(l.InitialReadTimeout))
	}
	c.Log.Debug("connection opened")
	return c, nil
}

// Conn is an accepted connection. Listener.Accept makes them; a literal
// with Conn and Log set serves in tests.
type Conn struct {
	net.Conn
	Log *slog.Logger // With cid and remote.
	IP  netip.Addr   // Of the client, IPv4 unmapped; invalid if not TCP.

	start  time.Time
	once   sync.Once
	hangup atomic.Bool
}

// HangupAfterReply makes the next Write close the connection once written:
// the reply that ends the session. Safe from any goroutine.
func (c *Conn) HangupAfterReply() {
	c.hangup.Store(true)
}

// Write writes p, then closes the connection if HangupAfterReply was called.
func (c *Conn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if c.hangup.Load() {
		c.Close()
	}
	return n, err
}

// Close closes the connection; the first call logs "connection closed"
// with the connection's duration.
func (c *Conn) Close() error {
	c.once.Do(func() {
		c.Log.Info("connection closed", slog.Duration("duration", time.Since(c.start)))
	})
	return c.Conn.Close()
}

// Of returns the *Conn that nc is, or that a *tls.Conn nc runs over; false
// for a connection not accepted by a Listener.
func Of(nc net.Conn) (*Conn, bool) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, ok := nc.(*Conn)
	return c, ok
}
