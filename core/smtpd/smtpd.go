// Package smtpd serves Switchyard's SMTP listeners on emersion/go-smtp:
// inbound MX (RFC 5321, port 25), message submission with STARTTLS
// (RFC 6409, RFC 3207, port 587) and submission over implicit TLS (RFC 8314,
// port 465).
//
// Submission requires SMTP AUTH (RFC 4954), only over TLS, and lets an
// account send only from its own addresses. PLAIN (RFC 4616) and LOGIN are
// built in; other mechanisms (SCRAM, CRAM-MD5) are run by plugins through
// core/sasl, in the order it gives. An
// inbound MX accepts mail for local domains, and relays only for clients in
// the listener's relay networks.
//
// DATA is spooled to the queue (in memory, or in a file if large) with a
// Received header prepended (RFC 5321 §4.4); a message with a bare CR or LF is
// refused, as its line endings could be read differently by the next hop
// (SMTP smuggling). The queue acknowledges a message only once it is durable,
// and only then does the client get its 250. A submission may ask for its
// message to be held until a later time (RFC 4865 FUTURERELEASE).
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/core/authflow"
	"github.com/switchyard-mta/switchyard/core/authlimit"
	"github.com/switchyard-mta/switchyard/core/clientconn"
	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/localdelivery"
	"github.com/switchyard-mta/switchyard/core/policy"
	"github.com/switchyard-mta/switchyard/core/queue"
	"github.com/switchyard-mta/switchyard/core/sasl"
	"github.com/switchyard-mta/switchyard/core/store"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// Defaults for zero Config fields, as in mta.toml's [limits].
const (
	defaultMaxMessageSize = 50 << 20
	defaultMaxRecipients  = 1000
	// RFC 5321 §4.5.3.2.7 asks a server to wait at least 5 minutes for
	// the next command.
	defaultReadTimeout  = 5 * time.Minute
	defaultWriteTimeout = time.Minute
	// Time to the first command line: a client sends it right after the
	// greeting; RFC 5321 §4.5.3.2.1 gives the client 5 minutes to wait for
	// the greeting, not the server to wait for a client.
	defaultGreetingTimeout = 30 * time.Second
)

// maxLineLength bounds command and message lines: twice the 1000 octets of
// RFC 5321 §4.5.3.1.6, tolerating sloppy senders while bounding memory.
const maxLineLength = 2000

// Deadlines of calls out of a session; the client is waiting meanwhile.
const (
	authTimeout  = 30 * time.Second
	queueTimeout = 2 * time.Minute
)

// Config is what a Server needs; the caller fills it from config.Config.
type Config struct {
	Hostname string // In the greeting, EHLO reply and Received headers.
	// Listener gives the name (in logs), kind, relay networks, and the
	// address for ListenAndServe.
	Listener config.Listener
	// TLS is the server certificate configuration. Nil: no STARTTLS, and
	// submission and submissions listeners refuse to start.
	TLS            *tls.Config
	MaxMessageSize int64         // Zero: 50 MiB.
	MaxRecipients  int           // Per transaction. Zero: 1000.
	ReadTimeout    time.Duration // Per command line and per message chunk. Zero: 5m.
	WriteTimeout   time.Duration // Per reply. Zero: 1m.
	// GreetingTimeout bounds the time from connecting (the TLS handshake
	// of a submissions listener included) to the first complete command
	// line; go-smtp then answers 421 4.4.2 and closes. Zero: 30s.
	GreetingTimeout time.Duration
	Log             *slog.Logger // Nil: discard.
	Accounts        Accounts
	Auth            PasswordChecker // Required for submission listeners.
	// SASL orders the mechanisms offered on submission listeners and runs
	// those of plugins. Nil: the built-in PLAIN and LOGIN only.
	SASL *sasl.Server
	// AuthLimit slows down and shuts out addresses failing AUTH; share one
	// among listeners. Nil: no limit.
	AuthLimit *authlimit.Limiter
	// Keys are the known TLS client keys: a submission client presenting
	// one is logged in without AUTH, and may log in only to its account.
	// Nil: none.
	Keys authflow.Keys
	// Suppressions are the addresses each account may not send to: a
	// submission's RCPT of one is refused. Nil: none.
	Suppressions Suppressions
	// Policies are the listener's policy checks, asked at each stage of a
	// transaction (core/policy). Nil: none.
	Policies *policy.Chain
	// FutureRelease is the longest a submission may ask for its message
	// to be held before delivery (RFC 4865 FUTURERELEASE: MAIL's HOLDFOR
	// and HOLDUNTIL); offered on submission listeners only. Zero: not
	// offered.
	FutureRelease time.Duration
	Queue         Queue
	// Local delivers to local accounts. Nil: recipients at local domains
	// are refused with a temporary error.
	Local Local
}

// Local delivers messages to local accounts' Inboxes;
// *localdelivery.Local implements it.
type Local interface {
	// DeliverLocal delivers msg to the Inbox of each account of rcpts,
	// with a Return-Path of from (the envelope sender, empty for the null
	// reverse-path) and a Delivered-To per address on top, and returns
	// one error per account, nil where delivered; store.ErrQuota where the
	// account is over quota.
	DeliverLocal(ctx context.Context, from string, rcpts []localdelivery.Rcpt, msg *io.SectionReader) []error
	// OverQuota reports whether account cannot take a message of size
	// bytes (0: unknown) now.
	OverQuota(ctx context.Context, account string, size int64) bool
}

// Accounts answers what a listener must know about local users.
type Accounts interface {
	// AccountByLogin resolves an AUTH username, an account name or one of
	// its addresses, to the account name.
	AccountByLogin(login string) (account string, ok bool)
	// AccountByAddress resolves a recipient address at a local domain.
	AccountByAddress(addr mailaddr.Address) (account string, ok bool)
	// AliasOf returns the alias a recipient address at a local domain is,
	// or nil.
	AliasOf(addr mailaddr.Address) *config.Alias
	// MayUseAddress reports whether account may send with addr as MAIL FROM.
	MayUseAddress(account string, addr mailaddr.Address) bool
	// IsLocalDomain reports whether mail for d is delivered here.
	IsLocalDomain(d mailaddr.Domain) bool
	// PostmasterAddress is the address "RCPT TO:<Postmaster>" stands for;
	// empty if there is none.
	PostmasterAddress() string
}

// Suppressions answer whether an account's submissions may go to an
// address; *store.Store implements it.
type Suppressions interface {
	// Suppressed returns the entry of account's list that addr matches,
	// or nil.
	Suppressed(ctx context.Context, account, addr string) (*store.Suppression, error)
}

// PasswordChecker checks login passwords; *store.Store implements it.
type PasswordChecker = sasl.Passwords

// Queue takes accepted messages; *queue.Queue implements it.
type Queue interface {
	// NewSpool returns a spool to write a message to before Add.
	NewSpool() *queue.Spool
	// Add queues the message in s, which it consumes also when it fails,
	// and returns its queue id once the message is durable.
	Add(ctx context.Context, env queue.Envelope, s *queue.Spool) (id string, err error)
}

// Server serves one listener. Serve may be called with several net.Listeners.
type Server struct {
	cfg    Config
	log    *slog.Logger
	smtp   *smtp.Server
	ctx    context.Context // Canceled by Close: aborts AUTH and queue calls.
	cancel context.CancelFunc
}

// New checks cfg and returns a server ready to Serve.
func New(cfg Config) (*Server, error) {
	switch cfg.Listener.Kind {
	case config.KindSMTP:
	case config.KindSubmission, config.KindSubmissions:
		if cfg.TLS == nil {
			return nil, fmt.Errorf("smtpd: listener %s: %s needs TLS", cfg.Listener.Name, cfg.Listener.Kind)
		}
		if cfg.Auth == nil {
			return nil, fmt.Errorf("smtpd: listener %s: %s needs a password checker", cfg.Listener.Name, cfg.Listener.Kind)
		}
	default:
		return nil, fmt.Errorf("smtpd: listener %s: kind %q is not smtp, submission or submissions", cfg.Listener.Name, cfg.Listener.Kind)
	}
	if cfg.Hostname == "" {
		return nil, errors.New("smtpd: empty hostname")
	}
	if cfg.Accounts == nil || cfg.Queue == nil {
		return nil, errors.New("smtpd: Accounts and Queue are required")
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = defaultMaxMessageSize
	}
	if cfg.MaxRecipients <= 0 {
		cfg.MaxRecipients = defaultMaxRecipients
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = defaultReadTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = defaultWriteTimeout
	}
	if cfg.GreetingTimeout <= 0 {
		cfg.GreetingTimeout = defaultGreetingTimeout
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With(slog.String("listener", cfg.Listener.Name))
	if cfg.SASL == nil {
		var err error
		if cfg.SASL, err = sasl.New(sasl.Options{}); err != nil {
			return nil, fmt.Errorf("smtpd: %w", err)
		}
	}

	s := &Server{cfg: cfg, log: log}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = cfg.Hostname
	srv.TLSConfig = cfg.TLS
	// go-smtp asks a session for its AUTH mechanisms on EHLO only where it
	// allows AUTH: allowing it everywhere tells EHLO from HELO. The session
	// offers and accepts AUTH over TLS only (RFC 4954 §4).
	srv.AllowInsecureAuth = true
	srv.MaxMessageBytes = cfg.MaxMessageSize
	// Recipients beyond the limit get 452 4.5.3 from go-smtp (RFC 5321
	// §4.5.3.1.10), which also advertises LIMITS RCPTMAX (RFC 9422).
	srv.MaxRecipients = cfg.MaxRecipients
	srv.MaxLineLength = maxLineLength
	srv.ReadTimeout = cfg.ReadTimeout
	srv.WriteTimeout = cfg.WriteTimeout
	srv.EnableSMTPUTF8 = true // RFC 6531; 8BITMIME (RFC 6152) is always on.
	srv.EnableDSN = true      // RFC 3461
	// RFC 8689; go-smtp advertises it only on TLS sessions.
	srv.EnableREQUIRETLS = cfg.TLS != nil
	if cfg.Listener.Kind != config.KindSMTP {
		// RFC 4865 §3: for submission, whose MAIL needs AUTH here.
		srv.FutureRelease = cfg.FutureRelease
	}
	srv.ErrorLog = errorLog{log}
	s.smtp = srv
	return s, nil
}

// Serve accepts connections on l until Close or Shutdown, then returns nil.
// For a submissions listener it does the TLS handshake itself.
func (s *Server) Serve(l net.Listener) error {
	if s.ctx.Err() != nil {
		return smtp.ErrServerClosed
	}
	gl := greetingListener{Listener: clientconn.NewListener(l, s.log), hostname: s.cfg.Hostname, timeout: s.cfg.GreetingTimeout}
	if s.cfg.Listener.Kind == config.KindSubmissions {
		gl.tls = s.cfg.TLS // RFC 8314 §3.3
	}
	l = gl
	if err := s.smtp.Serve(l); err != nil {
		return fmt.Errorf("smtpd: listener %s: %w", s.cfg.Listener.Name, err)
	}
	return nil
}

// ListenAndServe listens on the listener's configured address and serves it.
func (s *Server) ListenAndServe() error {
	l, err := net.Listen("tcp", s.cfg.Listener.Address)
	if err != nil {
		return fmt.Errorf("smtpd: listener %s: %w", s.cfg.Listener.Name, err)
	}
	return s.Serve(l)
}

// Close closes the listeners and all connections at once.
func (s *Server) Close() error {
	s.cancel()
	return s.smtp.Close()
}

// Shutdown closes the listeners and waits until the connections have ended
// or ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.smtp.Shutdown(ctx)
	s.cancel()
	return err
}

// greetingListener watches each connection's greeting (greetingConn) and,
// with tls set, serves it over TLS from the start.
type greetingListener struct {
	*clientconn.Listener
	hostname string
	timeout  time.Duration
	tls      *tls.Config
}

func (l greetingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := nc.(*clientconn.Conn)
	g := watchGreeting(c, l.hostname, l.timeout, l.tls != nil)
	if l.tls == nil {
		return c, nil
	}
	g.tls = tls.Server(c, l.tls)
	return g.tls, nil
}

// submission reports whether the listener is for message submission.
func (s *Server) submission() bool {
	return s.cfg.Listener.Kind != config.KindSMTP
}

// errorLog passes go-smtp's internal errors (TLS handshakes, recovered
// panics) to the server's logger.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Printf(format string, v ...any) { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l errorLog) Println(v ...any)               { l.log.Warn(fmt.Sprint(v...)) }
