package smtpd

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/switchyard-mta/switchyard/core/clientconn"
)

// greetingConn bounds the time from connecting to the first command line:
// go-smtp renews the read deadline before each command line it reads, so a
// client dribbling one byte every few seconds would otherwise hold the
// connection for ever (slowloris). Until lifted, every read deadline asked
// for is clamped to the absolute greeting deadline; the TLS handshake of an
// implicit-TLS listener runs below it, and so counts within it.
//
// It sits under clientconn.Conn (and under TLS), so it sees plaintext only on
// connections that do not start with TLS: there it lifts itself on the first
// LF read, the end of the first command line. Under implicit TLS it sees
// ciphertext, and the session lifts it on HELO or EHLO (newSession).
type greetingConn struct {
	net.Conn
	log      *slog.Logger
	deadline time.Time
	scan     bool // Look for the first LF: the bytes read are plaintext.

	mu     sync.Mutex
	lifted bool
	asked  time.Time // The read deadline last asked for.
	logged bool
}

// watchGreeting puts a greetingConn with the given timeout under c.
func watchGreeting(c *clientconn.Conn, timeout time.Duration, implicitTLS bool) *greetingConn {
	g := &greetingConn{Conn: c.Conn, log: c.Log, deadline: time.Now().Add(timeout), scan: !implicitTLS}
	g.Conn.SetReadDeadline(g.deadline)
	c.Conn = g
	return g
}

func (g *greetingConn) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lifted {
		return n, err
	}
	if g.scan && bytes.IndexByte(p[:n], '\n') >= 0 {
		g.liftLocked()
	} else if errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(g.deadline) && !g.logged {
		// go-smtp answers 421 4.4.2 and closes (RFC 5321 §4.2.2, §3.8).
		g.logged = true
		g.log.Info("greeting timeout: no command line in time")
	}
	return n, err
}

// SetReadDeadline sets t, or the greeting deadline if earlier and not lifted.
func (g *greetingConn) SetReadDeadline(t time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.asked = t
	if !g.lifted && (t.IsZero() || t.After(g.deadline)) {
		t = g.deadline
	}
	return g.Conn.SetReadDeadline(t)
}

// SetDeadline sets both deadlines, the read one as SetReadDeadline does.
func (g *greetingConn) SetDeadline(t time.Time) error {
	if err := g.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return g.SetReadDeadline(t)
}

// lift ends the greeting deadline: the read deadline becomes the one last
// asked for.
func (g *greetingConn) lift() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.liftLocked()
}

func (g *greetingConn) liftLocked() {
	if g.lifted {
		return
	}
	g.lifted = true
	g.Conn.SetReadDeadline(g.asked)
}

// CloseRead shuts the reading side of the TCP connection, if it is one.
func (g *greetingConn) CloseRead() error {
	if cr, ok := g.Conn.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return nil
}
