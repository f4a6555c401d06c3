package smtpd

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
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
// implicit-TLS listener runs above it, and so counts within it.
//
// It sits under clientconn.Conn (and under TLS), so it sees plaintext only on
// connections that do not start with TLS: there it lifts itself on the first
// LF read, the end of the first command line. Under implicit TLS it sees
// ciphertext, and the session lifts it on HELO or EHLO (newSession).
//
// At the deadline it answers 421 itself and closes: go-smtp, given the
// timeout, would first run the partial line it has as a command (bufio
// returns it without the error), then answer its own 421.
type greetingConn struct {
	net.Conn
	log      *slog.Logger
	deadline time.Time
	scan     bool      // Look for the first LF: the bytes read are plaintext.
	reply    string    // The 421 (RFC 5321 §4.2.2, §3.8).
	tls      *tls.Conn // Over it, for implicit TLS; the reply goes there.
	// policy is what the connect-stage policy checks decided, kept here
	// as the one value per connection that every session of it sees.
	policy connPolicy

	mu        sync.Mutex
	lifted    bool
	asked     time.Time // The read deadline last asked for.
	deadlines int       // Calls of SetReadDeadline.
}

// watchGreeting puts a greetingConn with the given timeout under c.
func watchGreeting(c *clientconn.Conn, hostname string, timeout time.Duration, implicitTLS bool) *greetingConn {
	g := &greetingConn{
		Conn: c.Conn, log: c.Log, deadline: time.Now().Add(timeout), scan: !implicitTLS,
		reply: "421 4.4.2 " + hostname + " Timeout waiting for command, closing\r\n",
	}
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
	} else if errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(g.deadline) {
		g.log.Info("greeting timeout: no command line in time")
		switch {
		case g.tls == nil:
			io.WriteString(g.Conn, g.reply)
		case g.deadlines >= 2:
			// go-smtp sets a deadline before the handshake and before
			// each line: the handshake is done, and Write will not wait
			// for its lock, held by whoever is in the handshake.
			g.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(g.tls, g.reply)
		}
		g.Conn.Close()
		return 0, net.ErrClosed // go-smtp ends quietly.
	}
	return n, err
}

// SetReadDeadline sets t, or the greeting deadline if earlier and not lifted.
func (g *greetingConn) SetReadDeadline(t time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.asked = t
	g.deadlines++
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
