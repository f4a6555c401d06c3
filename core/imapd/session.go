package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"

	"github.com/switchyard-mta/switchyard/core/store"
)

// Replies. Causes are logged, never sent.
var (
	// RFC 9051 §7.1: the same reply for an unknown login and a wrong
	// password, so that logins cannot be probed.
	errAuthFailed = imapserver.ErrAuthFailed
	errAuthTemp   = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Temporary authentication failure, try again later"}
	// Sent before closing the connection.
	errAuthTooMany = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Too many failed authentications, try again later"}
	errAuthzid     = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthorizationFailed, Text: "Acting as another user is not supported"}
	errMechanism   = &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Unsupported authentication mechanism"}
	errInternal    = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: "Internal error, try again later"}
	errShutdown    = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Server shutting down"}
	errNoMailbox   = &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: "No mailbox selected"}
	// RFC 9051 §6.3.3: nothing in a mailbox opened with EXAMINE changes.
	errReadOnly = &imap.Error{Type: imap.StatusResponseTypeNo, Code: "READ-ONLY", Text: "Mailbox is open read-only (EXAMINE)"}
)

// session is one IMAP connection, from greeting to logout.
type session struct {
	srv  *Server
	ic   *imapserver.Conn
	conn *conn
	log  *slog.Logger // With cid and remote, then account.

	// mu is held by each session method. go-imap calls them one at a
	// time, except Idle, which runs in a goroutine of its own and which
	// go-imap does not wait for when the client breaks off IDLE with
	// something else than DONE, or hangs up: the next method (or Close)
	// then waits for Idle to see stop and return.
	mu sync.Mutex

	account *store.Account // After login.

	view      *store.View // The selected mailbox; nil if none.
	readOnly  bool        // Selected with EXAMINE.
	searchRes []store.UID // Saved SEARCH result, "$" (RFC 5182); nil if none.
}

var (
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionSASL        = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
)

func (s *Server) newSession(ic *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	nc := ic.NetConn()
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, ok := nc.(*conn)
	if !ok {
		s.log.Error("session on a connection not from Serve", slog.String("remote", nc.RemoteAddr().String()))
		return nil, nil, errInternal
	}
	return &session{srv: s, ic: ic, conn: c, log: c.log}, nil, nil
}

// ctx is the context of store calls: canceled when the server closes.
func (s *session) ctx() context.Context { return s.srv.ctx }

// begin starts a session method, as `defer s.begin(&err)()`: it takes mu
// until the method returns, and turns a panic into a logged internal error
// that also ends the connection, as a response may have been half written.
func (s *session) begin(err *error) func() {
	s.mu.Lock()
	return func() {
		defer s.mu.Unlock()
		if v := recover(); v != nil {
			s.log.Error("panic in IMAP session", slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
			s.conn.hangup.Store(true)
			s.conn.Close()
			*err = errInternal
		}
	}
}

// Close ends the session: the connection is gone.
func (s *session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeView()
	return nil
}

func (s *session) closeView() {
	if s.view != nil {
		s.view.Close()
		s.view = nil
	}
	s.readOnly = false
	s.searchRes = nil
}

// Login is LOGIN (RFC 9051 §6.2.3); go-imap refuses it before TLS.
func (s *session) Login(username, password string) error {
	return s.authenticate("LOGIN", "", username, password)
}

// AuthenticateMechanisms lists what AUTHENTICATE offers, once over TLS.
func (s *session) AuthenticateMechanisms() []string {
	return []string{sasl.Plain}
}

// Authenticate is AUTHENTICATE (RFC 9051 §6.2.2); go-imap refuses it before
// TLS, and decodes the initial response of SASL-IR (RFC 4959).
func (s *session) Authenticate(mech string) (sasl.Server, error) {
	if !strings.EqualFold(mech, sasl.Plain) {
		return nil, errMechanism
	}
	// RFC 4616 §2: authzid NUL authcid NUL passwd.
	return sasl.NewPlainServer(func(authzid, login, password string) error {
		return s.authenticate(sasl.Plain, authzid, login, password)
	}), nil
}

// authenticate checks a login and password, and on success makes the
// session's account the login's. A non-empty authzid must name the same
// account: acting as another user is not supported.
func (s *session) authenticate(mech, authzid, login, password string) (rerr error) {
	defer s.begin(&rerr)()
	log := s.log.With(slog.String("mech", mech), slog.String("login", login))
	limit := s.srv.cfg.AuthLimit
	if limit != nil && !limit.Allowed(s.conn.ip) {
		log.Warn("authentication refused: too many failures from this address")
		s.conn.hangup.Store(true)
		return errAuthTooMany
	}
	accounts := s.srv.cfg.Accounts
	account, known := accounts.AccountByLogin(login)
	name := account
	if !known {
		// Check anyway, so that an unknown login takes as long as a wrong
		// password and does not reveal which logins exist.
		name = login
	}
	ctx, cancel := context.WithTimeout(s.ctx(), authTimeout)
	defer cancel()
	ok, err := s.srv.cfg.Auth.CheckPassword(ctx, name, password)
	if err != nil {
		log.Error("authentication: checking password", slog.Any("err", err))
		return errAuthTemp
	}
	reason := ""
	switch {
	case !known:
		reason = "unknown login"
	case !ok:
		reason = "wrong password"
	case authzid != "":
		if zacc, zok := accounts.AccountByLogin(authzid); !zok || zacc != account {
			log.Info("authentication failed", slog.String("reason", "authorization identity is another account"), slog.String("authzid", authzid))
			return errAuthzid
		}
	}
	if reason != "" {
		log.Info("authentication failed", slog.String("reason", reason))
		if limit != nil {
			// The delay holds this session only; a client that hangs up
			// and reconnects finds the count where it left it.
			select {
			case <-time.After(limit.Failed(s.conn.ip)):
			case <-s.ctx().Done():
			}
		}
		return errAuthFailed
	}
	a, err := s.srv.cfg.Store.Account(account)
	if err != nil {
		log.Error("authentication: opening account", slog.String("account", account), slog.Any("err", err))
		return errAuthTemp
	}
	if limit != nil {
		limit.Succeeded(s.conn.ip)
	}
	s.account = a
	s.log = s.log.With(slog.String("account", account))
	_, isTLS := s.ic.NetConn().(*tls.Conn)
	log.Info("authenticated", slog.String("account", account), slog.Bool("tls", isTLS))
	return nil
}

// AppendLimit is announced as APPENDLIMIT (RFC 7889); go-imap refuses
// larger APPENDs with NO [TOOBIG] before reading them.
func (s *session) AppendLimit() uint32 {
	return uint32(s.srv.cfg.MaxMessageSize)
}

// Namespace is NAMESPACE (RFC 2342): one personal namespace, no prefix.
func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: delim}}}, nil
}

// storeError turns an error from the store into the reply to the client:
// the store's sentinels into NO with the response code RFC 9051 §7.1 (and
// RFC 5530, RFC 9208) gives them; missing names get noMailbox
// (NONEXISTENT, or TRYCREATE where the client may create the mailbox and
// retry). Anything else is logged and answered as an internal error.
func (s *session) storeError(op string, err error, noMailbox imap.ResponseCode) error {
	no := func(code imap.ResponseCode, text string) error {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
	}
	switch {
	case errors.Is(err, store.ErrNoMailbox):
		return no(noMailbox, "No such mailbox")
	case errors.Is(err, store.ErrQuota):
		s.log.Info(op+": over quota", slog.Any("err", err))
		return no(imap.ResponseCodeOverQuota, "Quota exceeded")
	case errors.Is(err, store.ErrMailboxExists):
		return no(imap.ResponseCodeAlreadyExists, "Mailbox already exists")
	case errors.Is(err, store.ErrBadName), errors.Is(err, store.ErrNotAllowed):
		return no(imap.ResponseCodeCannot, clientText(err))
	case errors.Is(err, context.Canceled):
		return errShutdown
	}
	s.log.Error(op, slog.Any("err", err))
	return errInternal
}

// clientText is the part of a store error meant for the user: the text
// after the last "store: " prefix, e.g. "invalid name: empty mailbox name".
func clientText(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "store: "); i >= 0 {
		msg = msg[i+len("store: "):]
	}
	return strings.ToUpper(msg[:1]) + msg[1:]
}

// badRequest is a BAD reply for a command the client got wrong.
func badRequest(format string, args ...any) error {
	return &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: fmt.Sprintf(format, args...)}
}
