// Package smtpclient is an SMTP client for relaying and submitting mail: it
// dials a server, starts TLS, authenticates with SASL and runs mail
// transactions with the parameters a mail queue needs.
//
// It follows RFC 5321 (SMTP), RFC 3207 (STARTTLS) and RFC 8314 (implicit
// TLS), RFC 4954 (AUTH) with SCRAM (RFC 5802, RFC 7677; channel binding
// tls-exporter, RFC 9266, and tls-unique, RFC 5929), CRAM-MD5 (RFC 2195),
// PLAIN (RFC 4616) and LOGIN, and the parameters of SIZE (RFC 1870), 8BITMIME
// (RFC 6152), DSN (RFC 3461), SMTPUTF8 (RFC 6531), REQUIRETLS (RFC 8689) and
// CHUNKING with BINARYMIME (RFC 3030).
//
// A Client is one connection, for one goroutine at a time. Dial returns it
// greeted, with TLS started as configured; Authenticate logs in. A mail
// transaction (RFC 5321 §3.3) is Mail, Rcpt for each recipient, then Data and
// WriteData, or Bdat; Reset abandons one, Quit ends the session.
//
// Command methods return the server's reply, whatever its code. Their error
// is a failure of the connection (I/O, a deadline, a reply that breaks the
// protocol) after which it is unusable and must be closed, unless said
// otherwise. Every command and its reply has a deadline (Timeouts); Bind
// also ends the exchange when a context is done.
package smtpclient

// go-smtp's client is not used: in v0.25.1 it says EHLO as "localhost"
// before STARTTLS, adds BODY=8BITMIME by itself, cannot send BODY=BINARYMIME
// with BDAT, follows RSET with EHLO, and allocates more per message.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"strings"
	"time"
)

// Errors that callers branch on; causes are wrapped with them.
var (
	ErrDial           = errors.New("smtpclient: connecting")                       // No connection; the server may be down.
	ErrTLS            = errors.New("smtpclient: TLS handshake")                    // See *tls.CertificateVerificationError for an untrusted certificate.
	ErrProtocol       = errors.New("smtpclient: server broke the protocol")        // A malformed reply.
	ErrNoSTARTTLS     = errors.New("smtpclient: server does not offer STARTTLS")   // With TLSStartTLS; nothing was sent in plaintext.
	ErrNoAUTH         = errors.New("smtpclient: server does not offer AUTH")       // Authenticate sent nothing.
	ErrNoMechanism    = errors.New("smtpclient: no usable SASL mechanism offered") // Authenticate sent nothing.
	ErrSASL           = errors.New("smtpclient: SASL exchange failed")             // On the client's side: a bad challenge, an unverified server.
	ErrInvalidAddress = errors.New("smtpclient: address cannot be sent in SMTP")   // Mail or Rcpt sent nothing; the connection is usable.
	ErrReadMessage    = errors.New("smtpclient: reading message")                  // The message source failed; the connection is closed.
	ErrUnsolicited    = errors.New("smtpclient: server sent what was not asked")   // By Reset: the session is out of step, or closing; close it.
)

// TLSMode is how a connection is protected.
type TLSMode int

const (
	TLSNone          TLSMode = iota // Plain SMTP.
	TLSOpportunistic                // STARTTLS if the server offers it, else plaintext (RFC 3207).
	TLSStartTLS                     // STARTTLS, required: no plaintext fallback (RFC 3207 §4).
	TLSImplicit                     // TLS from the first byte (RFC 8314 §3).
)

// Dialer makes connections; *net.Dialer and proxy dialers are Dialers.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// Timeouts bound the steps of a session; zero fields take their default.
type Timeouts struct {
	Connect time.Duration // The TCP connection, through Dialer too. Default 30 s.
	Command time.Duration // Each command and its reply, the greeting, the TLS handshake, each write of message data. Default 5 min (RFC 5321 §4.5.3.2).
	DataEnd time.Duration // The reply to the end of message data. Default 10 min (RFC 5321 §4.5.3.2.6).
	Reset   time.Duration // RSET and its reply. Default Command.
	Quit    time.Duration // QUIT and its reply. Default 10 s.
}

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Connect, 30*time.Second)
	def(&t.Command, 5*time.Minute)
	def(&t.DataEnd, 10*time.Minute)
	def(&t.Reset, t.Command)
	def(&t.Quit, 10*time.Second)
	return t
}

// Config says how Dial sets a session up.
type Config struct {
	// EHLO is the name the client announces (RFC 5321 §4.1.1.1): its host
	// name, or an address literal. Required.
	EHLO string
	// TLS is how the connection is protected. Zero: TLSNone.
	TLS TLSMode
	// TLSConfig is the handshake's; it sets ServerName (or
	// InsecureSkipVerify) and any verification (VerifyConnection for DANE).
	// Required unless TLS is TLSNone.
	TLSConfig *tls.Config
	// Dialer makes the TCP connection. Nil: a net.Dialer.
	Dialer Dialer
	// Timeouts bound each step.
	Timeouts Timeouts
}

// Client is one SMTP session.
type Client struct {
	timeouts Timeouts
	raw      net.Conn // TCP. Deadlines set here bound TLS I/O too.
	conn     net.Conn // raw, or TLS over it.
	br       *bufio.Reader
	bw       *bufio.Writer
	ext      map[string]string    // EHLO keywords (upper case) and their parameters.
	tls      *tls.ConnectionState // Nil without TLS.
	lines    []string             // Text of each line of the last reply.
	num      [24]byte             // Formats numbers in commands.
	buf      []byte               // Reads message data; allocated on first use.
	inData   bool                 // Between a 354 reply to DATA and the message.
	bol, cr  bool                 // Dot-stuffing state: at the beginning of a line; after a CR.
}

// Dial connects to addr ("host:port") and sets the session up as cfg says:
// implicit TLS, greeting, EHLO (HELO if EHLO is not recognized and TLS is
// not required, RFC 5321 §3.2), STARTTLS and EHLO again. ctx bounds the
// whole setup, not the session. Errors wrap ErrDial, ErrTLS, ErrProtocol or
// ErrNoSTARTTLS, or are a *ReplyError for a refusal, or an I/O error.
func Dial(ctx context.Context, addr string, cfg *Config) (*Client, error) {
	if strings.ContainsAny(cfg.EHLO, " \t\r\n") || cfg.EHLO == "" {
		return nil, fmt.Errorf("smtpclient: EHLO name %q is empty or has white space", cfg.EHLO)
	}
	if cfg.TLS != TLSNone && cfg.TLSConfig == nil {
		return nil, errors.New("smtpclient: TLS without a TLSConfig")
	}
	to := cfg.Timeouts.withDefaults()
	var d Dialer = &net.Dialer{}
	if cfg.Dialer != nil {
		d = cfg.Dialer
	}
	dctx, cancel := context.WithTimeout(ctx, to.Connect)
	raw, err := d.DialContext(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("%w to %s: %w", ErrDial, addr, err)
	}
	c := &Client{timeouts: to, raw: raw}
	c.setConn(raw)
	unbind := c.Bind(ctx)
	err = c.setup(ctx, cfg)
	if !unbind() && err == nil {
		err = errors.New("connection closed")
	}
	if err != nil {
		c.Close()
		if cerr := ctx.Err(); cerr != nil {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		return nil, err
	}
	return c, nil
}

func (c *Client) setup(ctx context.Context, cfg *Config) error {
	if cfg.TLS == TLSImplicit {
		if err := c.handshake(ctx, cfg.TLSConfig); err != nil {
			return err
		}
	}
	c.deadline(c.timeouts.Command)
	r, err := c.readReply()
	if err != nil {
		return fmt.Errorf("reading greeting: %w", err)
	}
	if r.Code != 220 {
		return &ReplyError{"greeting", r}
	}
	if err := c.hello(cfg.EHLO, cfg.TLS == TLSNone || cfg.TLS == TLSOpportunistic); err != nil {
		return err
	}
	if cfg.TLS != TLSStartTLS && cfg.TLS != TLSOpportunistic {
		return nil
	}
	if _, ok := c.ext["STARTTLS"]; !ok {
		if cfg.TLS == TLSOpportunistic {
			return nil
		}
		// RFC 3207 §4: a client that requires TLS ends the session.
		return ErrNoSTARTTLS
	}
	r, err = c.cmd(c.timeouts.Command, "STARTTLS")
	if err != nil {
		return fmt.Errorf("STARTTLS: %w", err)
	}
	if r.Code != 220 {
		return &ReplyError{"STARTTLS", r}
	}
	if err := c.handshake(ctx, cfg.TLSConfig); err != nil {
		return err
	}
	// RFC 3207 §4.2: forget what was learned before TLS.
	return c.hello(cfg.EHLO, false)
}

// handshake starts TLS on the connection.
func (c *Client) handshake(ctx context.Context, config *tls.Config) error {
	tc := tls.Client(c.raw, config)
	c.deadline(c.timeouts.Command)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrTLS, err)
	}
	cs := tc.ConnectionState()
	c.tls = &cs
	// New buffers: anything the server sent in plaintext after its 220 to
	// STARTTLS is dropped, not taken as a reply over TLS (RFC 3207 §6).
	c.setConn(tc)
	return nil
}

// hello says EHLO and learns the extensions; with heloOK it falls back to
// HELO if EHLO is not recognized.
func (c *Client) hello(name string, heloOK bool) error {
	r, err := c.cmd(c.timeouts.Command, "EHLO "+name)
	if err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if (r.Code == 500 || r.Code == 502) && heloOK {
		r, err = c.cmd(c.timeouts.Command, "HELO "+name)
		if err != nil {
			return fmt.Errorf("HELO: %w", err)
		}
		if r.Code == 250 {
			c.ext = map[string]string{}
			return nil
		}
	}
	if r.Code != 250 {
		return &ReplyError{"EHLO", r}
	}
	// RFC 5321 §4.1.1.1: after the first line, a keyword and parameters
	// per line.
	c.ext = make(map[string]string, len(c.lines)-1)
	for _, l := range c.lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		c.ext[strings.ToUpper(k)] = v
	}
	return nil
}

// Extension reports whether the server offers the EHLO keyword (RFC 5321
// §4.1.1.1), and with which parameters, e.g. "SIZE" → "35882577".
func (c *Client) Extension(keyword string) (params string, ok bool) {
	params, ok = c.ext[strings.ToUpper(keyword)]
	return params, ok
}

// Extensions returns the EHLO keywords the server offers (upper case) with
// their parameters.
func (c *Client) Extensions() map[string]string { return maps.Clone(c.ext) }

// TLSConnectionState returns the state of TLS on the connection, if started.
func (c *Client) TLSConnectionState() (tls.ConnectionState, bool) {
	if c.tls == nil {
		return tls.ConnectionState{}, false
	}
	return *c.tls, true
}

// RemoteAddr returns the server's address.
func (c *Client) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// Bind closes the connection when ctx is done, ending any exchange at once.
// unbind undoes it; it reports false if ctx was done first and the
// connection is closed.
func (c *Client) Bind(ctx context.Context) (unbind func() bool) {
	return context.AfterFunc(ctx, func() { c.raw.Close() })
}

// Reset sends RSET (RFC 5321 §4.1.1.5), abandoning the mail transaction. A
// 250 reply also shows that an idle connection still works. If the server
// sent anything it was not asked for (many say 421 before they close an
// idle session; a broken or hostile one may send an extra reply, which
// would answer the next command), Reset sends nothing and fails with
// ErrUnsolicited: the session must not be used again.
func (c *Client) Reset() (Reply, error) {
	if c.unsolicited() {
		return Reply{}, ErrUnsolicited
	}
	return c.cmd(c.timeouts.Reset, "RSET")
}

// unsolicited reports whether the server sent something that no command
// asked for, or closed the connection, without waiting for it.
func (c *Client) unsolicited() bool {
	if c.br.Buffered() > 0 {
		return true
	}
	c.raw.SetReadDeadline(time.Now())
	_, err := c.br.Peek(1)
	c.raw.SetReadDeadline(time.Time{})
	var ne net.Error
	return !errors.As(err, &ne) || !ne.Timeout()
}

// Quit sends QUIT (RFC 5321 §4.1.1.10) and closes the connection.
func (c *Client) Quit() error {
	_, err := c.cmd(c.timeouts.Quit, "QUIT")
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close closes the connection without QUIT.
func (c *Client) Close() error { return c.raw.Close() }

func (c *Client) setConn(conn net.Conn) {
	c.conn = conn
	c.br = bufio.NewReaderSize(conn, maxReplyLine)
	c.bw = bufio.NewWriterSize(conn, 8<<10)
}

// deadline bounds what follows on the connection.
func (c *Client) deadline(d time.Duration) {
	c.raw.SetDeadline(time.Now().Add(d))
}

// cmd sends a command line and reads the reply, within timeout.
func (c *Client) cmd(timeout time.Duration, line string) (Reply, error) {
	c.deadline(timeout)
	c.bw.WriteString(line)
	c.bw.WriteString("\r\n")
	return c.flushRead()
}

// flushRead sends what is buffered and reads the reply.
func (c *Client) flushRead() (Reply, error) {
	if err := c.bw.Flush(); err != nil {
		return Reply{}, err
	}
	return c.readReply()
}
