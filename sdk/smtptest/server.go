// Package smtptest runs SMTP servers on loopback for tests, in the manner
// of net/http/httptest: a plugin's tests (and the project's own) point the
// SMTP client under test at Server.Addr and check what the server got.
//
// Server is built on github.com/emersion/go-smtp: it offers STARTTLS
// (RFC 3207) or implicit TLS (RFC 8314 §3) with a generated certificate,
// AUTH (RFC 4954) with PLAIN, LOGIN, CRAM-MD5 and SCRAM with channel
// binding, and the ESMTP extensions its Options name. It records every
// accepted message with its envelope and parameters, every AUTH exchange,
// the protocol trace and the number of connections. Options.Reply scripts
// its answers: reject a recipient, fail at DATA, drop the connection.
//
// Script is a server driven line by line, for what go-smtp will not do:
// leave out extensions it always offers (PIPELINING, 8BITMIME, CHUNKING),
// send malformed or multi-line replies, or never answer.
//
// CA issues the certificates of servers that must be verified by name.
package smtptest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TLSMode is how a Server offers TLS.
type TLSMode int

const (
	NoTLS       TLSMode = iota // Plain SMTP only.
	StartTLS                   // STARTTLS offered (RFC 3207).
	ImplicitTLS                // TLS from the first byte (RFC 8314 §3).
)

// Options configure a Server; the zero value is a plain SMTP server on
// 127.0.0.1 accepting every message.
type Options struct {
	// Listener to serve on; nil: a new one on 127.0.0.1:0.
	Listener net.Listener
	// Domain is the server's name in its greeting; "": "smtptest.test".
	Domain string

	TLS TLSMode
	// Certificate is served with TLS; nil: a self-signed one for
	// localhost, 127.0.0.1 and ::1 (see Server.ClientConfig).
	Certificate *tls.Certificate
	// TLSConfig, if set, is the server's TLS configuration (to set
	// versions, say); Certificate is added if it has none.
	TLSConfig *tls.Config

	// Mechanisms are the AUTH mechanisms offered, in order, from PLAIN,
	// LOGIN, CRAM-MD5 (RFC 2195), SCRAM-SHA-1, SCRAM-SHA-256 and their
	// -PLUS variants (RFC 5802, RFC 7677), and EXTERNAL (see ClientKeys).
	// AUTH is offered over TLS only,
	// unless AllowInsecureAuth.
	Mechanisms        []string
	Users             map[string]string // Passwords, by user name.
	AllowInsecureAuth bool
	SCRAMFault        SCRAMFault // A SCRAM misbehaviour to test a client against.
	// ClientKeys are the users that EXTERNAL (RFC 4422 appendix A; when
	// in Mechanisms) logs in, by the SHA-256 of the SubjectPublicKeyInfo
	// of their TLS client certificate, base64url without padding. With
	// them, the TLS handshake asks for a client certificate.
	ClientKeys map[string]string

	// ESMTP extensions besides PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES,
	// CHUNKING and SIZE, which go-smtp always offers.
	MaxMessageBytes int64 // Announced with SIZE and enforced; 0: no limit.
	SMTPUTF8        bool  // RFC 6531
	DSN             bool  // RFC 3461
	REQUIRETLS      bool  // RFC 8689; offered over TLS only.
	BINARYMIME      bool  // RFC 3030

	// ReadTimeout closes a connection idle that long; 0: never.
	ReadTimeout time.Duration

	// Reply, if set, is asked at each Stage of a transaction: nil goes
	// on; an *smtp.SMTPError (RejectByName's, say) is the reply; ErrDrop
	// closes the connection without one. It may block, to slow a stage.
	Reply func(*Command) error
}

// Stage is the point of an SMTP session at which Options.Reply is asked.
type Stage int

const (
	StageHello Stage = iota + 1 // The first EHLO or HELO of a connection.
	StageMail                   // MAIL FROM.
	StageRcpt                   // Each RCPT TO.
	StageData                   // The message has arrived, before the reply to its end.
)

// Command is what Options.Reply decides on.
type Command struct {
	Stage Stage
	Helo  string
	TLS   bool
	From  string           // From StageMail on.
	Mail  smtp.MailOptions // From StageMail on.
	To    string           // At StageRcpt.
	Rcpt  smtp.RcptOptions // At StageRcpt.
	Data  []byte           // At StageData.
}

// ErrDrop, returned by Options.Reply, closes the connection unanswered.
var ErrDrop = errors.New("smtptest: drop the connection")

// Replies of RejectByName.
var (
	ErrNoSuchUser = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	ErrTryLater   = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
)

// RejectByName is an Options.Reply for the convention of the project's
// tests: recipients starting with "reject" get ErrNoSuchUser (550 5.1.1),
// those starting with "tempfail" ErrTryLater (451 4.3.0).
func RejectByName(c *Command) error {
	switch {
	case c.Stage != StageRcpt:
	case strings.HasPrefix(c.To, "reject"):
		return ErrNoSuchUser
	case strings.HasPrefix(c.To, "tempfail"):
		return ErrTryLater
	}
	return nil
}

// Message is a message the server accepted, with its transaction.
type Message struct {
	Helo     string
	TLS      *tls.ConnectionState // Nil without TLS.
	AuthMech string               // The AUTH mechanism used; "" without.
	AuthUser string
	From     string
	Mail     smtp.MailOptions
	Rcpts    []Rcpt
	Data     []byte // As received, without dot-stuffing.
}

// To returns the recipients' addresses.
func (m Message) To() []string {
	var to []string
	for _, r := range m.Rcpts {
		to = append(to, r.Addr)
	}
	return to
}

// Rcpt is an accepted recipient.
type Rcpt struct {
	Addr    string
	Options smtp.RcptOptions
}

// Server is an SMTP server on loopback; see the package documentation.
// Its methods may be called while it serves.
type Server struct {
	// Addr is the host:port it listens on.
	Addr string

	opts  Options
	cert  tls.Certificate
	srv   *smtp.Server
	conns atomic.Int64

	mu    sync.Mutex
	msgs  []Message
	auths []Auth
	trace bytes.Buffer
}

// NewServer starts a server with o. It is closed when the test ends.
func NewServer(t testing.TB, o Options) *Server {
	t.Helper()
	s := &Server{opts: o}
	if o.Certificate != nil {
		s.cert = *o.Certificate
	} else {
		s.cert = (*CA)(nil).Issue(t, "localhost", "127.0.0.1", "::1")
	}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = o.Domain
	if srv.Domain == "" {
		srv.Domain = "smtptest.test"
	}
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.Debug = traceWriter{s}
	srv.ReadTimeout = o.ReadTimeout
	srv.MaxMessageBytes = o.MaxMessageBytes
	srv.AllowInsecureAuth = o.AllowInsecureAuth
	srv.EnableSMTPUTF8 = o.SMTPUTF8
	srv.EnableDSN = o.DSN
	srv.EnableREQUIRETLS = o.REQUIRETLS
	srv.EnableBINARYMIME = o.BINARYMIME
	l := o.Listener
	if l == nil {
		var err error
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatalf("smtptest: %v", err)
		}
	}
	s.Addr = l.Addr().String()
	l = countingListener{l, &s.conns}
	if o.TLS != NoTLS {
		tc := &tls.Config{}
		if o.TLSConfig != nil {
			tc = o.TLSConfig.Clone()
		}
		if len(tc.Certificates) == 0 && tc.GetCertificate == nil {
			tc.Certificates = []tls.Certificate{s.cert}
		}
		if o.ClientKeys != nil && tc.ClientAuth == tls.NoClientCert {
			tc.ClientAuth = tls.RequestClientCert
		}
		if o.TLS == ImplicitTLS {
			l = tls.NewListener(l, tc)
		} else {
			srv.TLSConfig = tc
		}
	}
	s.srv = srv
	go srv.Serve(l)
	t.Cleanup(func() { s.Close() })
	return s
}

// Close stops the server and closes its connections. NewServer has it
// called at the end of the test.
func (s *Server) Close() error { return s.srv.Close() }

// Messages returns the messages accepted so far, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Auths returns the AUTH exchanges so far, oldest first.
func (s *Server) Auths() []Auth {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Auth(nil), s.auths...)
}

// Conns returns the number of connections accepted so far.
func (s *Server) Conns() int { return int(s.conns.Load()) }

// Trace returns the protocol trace of all connections so far, commands and
// replies as on the wire (TLS decrypted), for counting commands sent.
func (s *Server) Trace() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.trace.String()
}

// Certificate returns the certificate served with TLS.
func (s *Server) Certificate() tls.Certificate { return s.cert }

// CertificatePEM returns the served certificate in PEM, for a client's CA
// file: a client trusting it verifies the server by the names it has.
func (s *Server) CertificatePEM() []byte { return PEM(s.cert.Certificate[0]) }

// ClientConfig returns a client TLS configuration trusting the served
// certificate and expecting the name localhost.
func (s *Server) ClientConfig() *tls.Config {
	pool := x509.NewCertPool()
	leaf, err := x509.ParseCertificate(s.cert.Certificate[0])
	if err == nil {
		pool.AddCert(leaf)
	}
	return &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

func (s *Server) reply(c *smtp.Conn, cmd *Command) error {
	if s.opts.Reply == nil {
		return nil
	}
	_, cmd.TLS = c.TLSConnectionState()
	cmd.Helo = c.Hostname()
	err := s.opts.Reply(cmd)
	if errors.Is(err, ErrDrop) {
		c.Conn().Close()
	}
	return err
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	if err := s.reply(c, &Command{Stage: StageHello}); err != nil {
		return nil, err
	}
	return &session{s: s, conn: c}, nil
}

type session struct {
	s    *Server
	conn *smtp.Conn
	auth *Auth // The last successful exchange.
	msg  Message
	cmd  Command
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.cmd = Command{Stage: StageMail, From: from}
	if opts != nil {
		ss.cmd.Mail = *opts
	}
	if err := ss.s.reply(ss.conn, &ss.cmd); err != nil {
		return err
	}
	ss.msg = Message{Helo: ss.conn.Hostname(), From: from, Mail: ss.cmd.Mail}
	if cs, ok := ss.conn.TLSConnectionState(); ok {
		ss.msg.TLS = &cs
	}
	if ss.auth != nil {
		ss.msg.AuthMech, ss.msg.AuthUser = ss.auth.Mech, ss.auth.User
	}
	return nil
}

func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	cmd := ss.cmd
	cmd.Stage, cmd.To = StageRcpt, to
	if opts != nil {
		cmd.Rcpt = *opts
	}
	if err := ss.s.reply(ss.conn, &cmd); err != nil {
		return err
	}
	ss.msg.Rcpts = append(ss.msg.Rcpts, Rcpt{Addr: to, Options: cmd.Rcpt})
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	cmd := ss.cmd
	cmd.Stage, cmd.Data = StageData, data
	if err := ss.s.reply(ss.conn, &cmd); err != nil {
		return err
	}
	ss.msg.Data = data
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, ss.msg)
	ss.s.mu.Unlock()
	return nil
}

func (ss *session) Reset() {
	ss.msg = Message{}
	ss.cmd = Command{}
}

func (ss *session) Logout() error { return nil }

// traceWriter appends to the server's trace, go-smtp's Debug output.
type traceWriter struct{ s *Server }

func (w traceWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.trace.Write(p)
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}
