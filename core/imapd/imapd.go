// Package imapd serves Switchyard's IMAP listeners on emersion/go-imap/v2's
// imapserver, backed by the account store (core/store): IMAP4rev1 (RFC 3501)
// and IMAP4rev2 (RFC 9051), with STARTTLS on "imap" listeners (port 143,
// RFC 9051 §6.2.1) and implicit TLS on "imaps" listeners (port 993,
// RFC 8314 §3.3).
//
// Passwords travel only over TLS: before STARTTLS the server announces
// LOGINDISABLED and no AUTH= mechanism and refuses LOGIN and AUTHENTICATE
// with NO [PRIVACYREQUIRED] (RFC 9051 §6.2.3, RFC 8314 §5.1). Over TLS,
// AUTHENTICATE (RFC 9051 §6.2.2, with SASL-IR, RFC 4959) offers the
// mechanisms of core/sasl as AUTH= capabilities: the plugins' (SCRAM with
// channel binding, CRAM-MD5, ...) run through their exchanges, and a
// mechanism whose plugin is down answers NO [UNAVAILABLE] (RFC 5530 §3);
// LOGIN and the built-in PLAIN (RFC 4616) and LOGIN mechanisms check the
// same password as SMTP submission.
//
// Extensions beyond the base protocols: UIDPLUS (RFC 4315), MOVE (RFC 6851),
// IDLE (RFC 2177), NAMESPACE (RFC 2342), ENABLE (RFC 5161), UNSELECT
// (RFC 3691), SPECIAL-USE and CREATE-SPECIAL-USE (RFC 6154), LIST-EXTENDED
// (RFC 5258), LIST-STATUS (RFC 5819), CHILDREN (RFC 3348), ESEARCH
// (RFC 4731), SEARCHRES (RFC 5182), STATUS=SIZE (RFC 8438), BINARY
// (RFC 3516), LITERAL+ (RFC 7888), APPENDLIMIT (RFC 7889) and the OVERQUOTA
// response code (RFC 9208 §4.3).
//
// Each session keeps a store.View of its selected mailbox: the view holds
// the message sequence numbers the client knows and turns changes by other
// sessions and deliveries into EXISTS, EXPUNGE and FETCH FLAGS responses at
// command boundaries (RFC 9051 §7.5.1: no EXPUNGE during FETCH, STORE and
// SEARCH) and at once during IDLE.
package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/switchyard-mta/switchyard/core/authlimit"
	"github.com/switchyard-mta/switchyard/core/clientconn"
	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/sasl"
	"github.com/switchyard-mta/switchyard/core/store"
)

// defaultMaxMessageSize is the APPEND limit for a zero Config field, as
// mta.toml's [limits] max_message_size.
const defaultMaxMessageSize = 50 << 20

// authTimeout bounds a password check; the client waits meanwhile.
const authTimeout = 30 * time.Second

// defaultHandshakeTimeout is the TLS handshake limit for a zero Config
// field, as go-imap's limit for a command line.
const defaultHandshakeTimeout = 30 * time.Second

// defaultGreetingTimeout is the first command line's limit for a zero
// Config field.
const defaultGreetingTimeout = 30 * time.Second

// Config is what a Server needs; the caller fills it from config.Config.
//
// Timeouts are go-imap's and fixed: 30 s for a command line before login,
// 35 minutes of inactivity once logged in and during IDLE (RFC 9051 §5.4
// asks for at least 30), 5 minutes per literal, 30 s per response.
type Config struct {
	// Listener gives the name (in logs), kind (config.KindIMAP or
	// config.KindIMAPS) and the address for ListenAndServe.
	Listener config.Listener
	// TLS is the server certificate configuration: for STARTTLS on imap
	// listeners, for the handshake on imaps listeners. Required.
	TLS *tls.Config
	// MaxMessageSize is the largest message APPEND accepts, announced as
	// APPENDLIMIT (RFC 7889). Zero: 50 MiB.
	MaxMessageSize int64
	// HandshakeTimeout bounds the TLS handshake of imaps connections,
	// which go-imap does not: it would wait for a silent client forever.
	// Zero: 30 s.
	HandshakeTimeout time.Duration
	// GreetingTimeout bounds the time from connecting to the end of the
	// first command line, the TLS handshake of imaps connections
	// included: a client that sends nothing, or a byte now and then, is
	// told BYE [UNAVAILABLE] and cut off. Zero: 30 s.
	GreetingTimeout time.Duration
	Log             *slog.Logger // Nil: discard.
	Accounts        Accounts
	Auth            PasswordChecker
	// AuthLimit slows down and shuts out addresses failing to log in;
	// share one among listeners. Nil: no limit.
	AuthLimit *authlimit.Limiter
	// SASL offers and runs the AUTHENTICATE mechanisms, plugins' and the
	// built-in PLAIN and LOGIN, in its order; share one among listeners.
	// Nil: AUTHENTICATE PLAIN only.
	SASL  *sasl.Server
	Store *store.Store // The accounts' mailboxes.
}

// Accounts resolves logins; *config.Config implements it.
type Accounts = sasl.Accounts

// PasswordChecker checks login passwords; *store.Store implements it.
type PasswordChecker = sasl.Passwords

// Server serves one listener. Serve may be called with several
// net.Listeners.
//
// Connections run through a framer (framer.go), which keeps over-long and
// malformed commands from go-imap. The framer does STARTTLS itself: go-imap
// would put TLS below it. So an imap listener has two go-imap servers, one
// for the plaintext part of a connection, which announces STARTTLS and
// LOGINDISABLED, and one for TLS connections, which allows
// authentication; an imaps listener has the second only.
type Server struct {
	cfg     Config
	log     *slog.Logger
	plain   *imapserver.Server // Nil on imaps listeners.
	tls     *imapserver.Server
	handoff *handoff        // Connections from plain to tls after STARTTLS; nil on imaps listeners.
	ctx     context.Context // Canceled by Close: ends IDLE and auth waits.
	cancel  context.CancelFunc
}

// capabilities are announced once logged in; go-imap adds IDLE, ENABLE,
// UNSELECT, UTF8=ACCEPT, SASL-IR, LITERAL-, STARTTLS, LOGINDISABLED and
// AUTH= by state, and APPENDLIMIT from the session.
var capabilities = imap.CapSet{
	imap.CapIMAP4rev1:        {},
	imap.CapIMAP4rev2:        {},
	imap.CapNamespace:        {},
	imap.CapUIDPlus:          {},
	imap.CapESearch:          {},
	imap.CapSearchRes:        {},
	imap.CapListExtended:     {},
	imap.CapListStatus:       {},
	imap.CapMove:             {},
	imap.CapStatusSize:       {},
	imap.CapBinary:           {},
	imap.CapChildren:         {},
	imap.CapSpecialUse:       {},
	imap.CapCreateSpecialUse: {},
	imap.CapLiteralPlus:      {},
}

// New checks cfg and returns a server ready to Serve.
func New(cfg Config) (*Server, error) {
	switch cfg.Listener.Kind {
	case config.KindIMAP, config.KindIMAPS:
	default:
		return nil, fmt.Errorf("imapd: listener %s: kind %q is not imap or imaps", cfg.Listener.Name, cfg.Listener.Kind)
	}
	if cfg.TLS == nil {
		return nil, fmt.Errorf("imapd: listener %s: %s needs TLS", cfg.Listener.Name, cfg.Listener.Kind)
	}
	if cfg.Accounts == nil || cfg.Auth == nil || cfg.Store == nil {
		return nil, errors.New("imapd: Accounts, Auth and Store are required")
	}
	if cfg.GreetingTimeout <= 0 {
		cfg.GreetingTimeout = defaultGreetingTimeout
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = defaultHandshakeTimeout
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = defaultMaxMessageSize
	}
	cfg.MaxMessageSize = min(cfg.MaxMessageSize, math.MaxUint32) // APPENDLIMIT is a number (RFC 9051 §9).
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With(slog.String("listener", cfg.Listener.Name))

	s := &Server{cfg: cfg, log: log}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	// The TLS server's connections are all TLS, which it cannot see
	// below the framer: InsecureAuth only says so.
	s.tls = imapserver.New(&imapserver.Options{NewSession: s.newSession, Caps: capabilities, Logger: errorLog{log}, InsecureAuth: true})
	if cfg.Listener.Kind == config.KindIMAP {
		// STARTTLS is announced, and done by the framer; LOGINDISABLED
		// until TLS (RFC 9051 §6.2.3).
		s.plain = imapserver.New(&imapserver.Options{NewSession: s.newSession, Caps: capabilities, Logger: errorLog{log}, TLSConfig: cfg.TLS})
		s.handoff = newHandoff()
		go s.tls.Serve(s.handoff)
	}
	return s, nil
}

// Serve accepts connections on l until Close, then returns nil. For an
// imaps listener it does the TLS handshake itself.
func (s *Server) Serve(l net.Listener) error {
	if s.ctx.Err() != nil {
		return fmt.Errorf("imapd: listener %s: server closed", s.cfg.Listener.Name)
	}
	cl := clientconn.NewListener(l, s.log)
	// Until go-imap sets its own deadlines after the greeting, which on an
	// imaps listener first needs the TLS handshake.
	cl.InitialReadTimeout = s.cfg.HandshakeTimeout
	l = cl
	srv := s.plain
	if s.cfg.Listener.Kind == config.KindIMAPS {
		l, srv = tls.NewListener(l, s.cfg.TLS), s.tls
	}
	if err := srv.Serve(framerListener{l, s}); err != nil {
		return fmt.Errorf("imapd: listener %s: %w", s.cfg.Listener.Name, err)
	}
	return nil
}

// ListenAndServe listens on the listener's configured address and serves it.
func (s *Server) ListenAndServe() error {
	l, err := net.Listen("tcp", s.cfg.Listener.Address)
	if err != nil {
		return fmt.Errorf("imapd: listener %s: %w", s.cfg.Listener.Name, err)
	}
	return s.Serve(l)
}

// Close closes the listeners and all connections at once.
func (s *Server) Close() error {
	if s.ctx.Err() != nil {
		return nil
	}
	s.cancel()
	if s.plain != nil {
		<-s.handoff.accepting // s.tls.Serve runs: see handoff.
		s.handoff.Close()
		s.plain.Close()
	}
	return s.tls.Close()
}

// errorLog passes go-imap's own messages to the server's logger: recovered
// panics as errors, failures of our session methods as warnings, and the
// rest (read timeouts, failed TLS handshakes, clients gone) as information.
// They carry no connection id: go-imap does not say which connection.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Printf(format string, v ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	switch {
	case strings.HasPrefix(format, "panic"):
		l.log.Error("imapserver: " + msg)
	case strings.HasPrefix(format, "handling"):
		l.log.Warn("imapserver: " + msg)
	default:
		l.log.Info("imapserver: " + msg)
	}
}
