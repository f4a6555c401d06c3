package imapd

import (
	"errors"
	"log/slog"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gosasl "github.com/emersion/go-sasl"

	"github.com/switchyard-mta/switchyard/core/authflow"
	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/sasl"
)

// Replies to LOGIN and AUTHENTICATE. Causes are logged, never sent.
var (
	// RFC 9051 §7.1: the same reply for an unknown login and a wrong
	// password, so that logins cannot be probed.
	errAuthFailed = imapserver.ErrAuthFailed
	// Also for a mechanism whose plugin is down (RFC 5530 §3, UNAVAILABLE).
	errAuthTemp = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Temporary authentication failure, try again later"}
	// Sent before closing the connection.
	errAuthTooMany = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Too many failed authentications, try again later"}
	errAuthzid     = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthorizationFailed, Text: "Acting as another user is not supported"}
	errMechanism   = &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Unsupported authentication mechanism"}
	// RFC 9051 §6.2.2: a response that cannot be decoded is answered BAD.
	errSASLMalformed = &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: "Malformed SASL response"}
	errSASLTooLong   = &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeTooBig, Text: "SASL response too long"}
)

// Login is LOGIN (RFC 9051 §6.2.3); go-imap refuses it before TLS.
func (s *session) Login(username, password string) error {
	return s.authenticate("LOGIN", "", username, password)
}

// AuthenticateMechanisms lists what AUTHENTICATE offers as AUTH=
// capabilities; go-imap asks only once TLS is up, and announces
// LOGINDISABLED instead before (RFC 9051 §6.2.3). EXTERNAL only with a
// known client key. Without Config.SASL, PLAIN alone.
func (s *session) AuthenticateMechanisms() []string {
	if s.srv.cfg.SASL == nil {
		return []string{sasl.Plain}
	}
	key, err := s.flow().Key(s.ctx())
	if err != nil {
		s.log.Warn("reading TLS client key", slog.Any("err", err))
	}
	return s.srv.cfg.SASL.Advertised(s.isTLS(), key != nil)
}

// preAuth reports whether an imaps connection starts logged in, by its TLS
// client certificate (a PREAUTH greeting, RFC 9051 §7.1.4): the key is
// known (mta tlspubkey) and not marked no_imap_preauth, as the plugin
// serving EXTERNAL decides. The handshake runs here, before the greeting.
// After STARTTLS there is no greeting: the client logs in with
// AUTHENTICATE EXTERNAL.
func (s *session) preAuth() bool {
	if s.srv.cfg.Listener.Kind != config.KindIMAPS || s.srv.cfg.SASL == nil {
		return false
	}
	if err := s.fr.handshake(); err != nil {
		return false // The greeting fails too, and ends the connection.
	}
	ci := sasl.ConnInfo("imap", s.srv.cfg.Listener.Name, s.ic.NetConn(), s.srv.cfg.TLS)
	if ci.TLS == nil || len(ci.TLS.PeerCertificates) == 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flow().PreAuth(s.ctx(), s.srv.cfg.SASL, ci) == nil
}

// Authenticate is AUTHENTICATE (RFC 9051 §6.2.2): a built-in PLAIN or
// LOGIN, or a plugin's exchange. go-imap refuses it before TLS, decodes
// the initial response of SASL-IR (RFC 4959), and answers a client's
// cancel ("*") with BAD itself, without telling the session: the
// abandoned exchange ends with the next AUTHENTICATE or the session.
func (s *session) Authenticate(mech string) (gosasl.Server, error) {
	srv, err := s.startAuthenticate(mech)
	if err != nil {
		return nil, err
	}
	return framedSASL{srv, s.fr}, nil
}

func (s *session) startAuthenticate(mech string) (srv gosasl.Server, rerr error) {
	defer s.begin(&rerr)()
	s.endExchange()
	ss := s.srv.cfg.SASL
	if ss == nil {
		if mech != sasl.Plain {
			return nil, errMechanism
		}
		return s.plainServer(), nil
	}
	if !ss.Offered(mech, s.isTLS()) {
		return nil, errMechanism
	}
	if ss.Builtin(mech) {
		if mech == sasl.Plain {
			return s.plainServer(), nil
		}
		return sasl.NewLoginServer(func(login, password string) error {
			return s.authenticate(sasl.Login, "", login, password)
		}), nil
	}
	ci := sasl.ConnInfo("imap", s.srv.cfg.Listener.Name, s.ic.NetConn(), s.srv.cfg.TLS)
	ex, att, err := s.flow().Start(s.ctx(), ss, mech, ci, func(end func() error) (rerr error) {
		defer s.begin(&rerr)()
		s.exchange, s.attempt = nil, nil
		return s.authReply(end())
	})
	if errors.Is(err, sasl.ErrUnknownMechanism) {
		return nil, errMechanism
	} else if err != nil {
		return nil, s.authReply(err)
	}
	s.exchange, s.attempt = ex, att
	return imapExchange{ex}, nil
}

// framedSASL tells the framer when go-imap reads a response line, which is
// not a command, and refuses the lines the framer found too long; its
// mechanisms' own errors for malformed responses become BAD.
type framedSASL struct {
	gosasl.Server
	fr *framer
}

func (x framedSASL) Next(response []byte) ([]byte, bool, error) {
	if x.fr.saslTooLong.Swap(false) {
		return nil, true, errSASLTooLong
	}
	challenge, done, err := x.Server.Next(response)
	var imapErr *imap.Error
	switch {
	case err != nil && !errors.As(err, &imapErr):
		return nil, true, errSASLMalformed
	case err == nil && !done:
		x.fr.saslLine.Store(true)
	}
	return challenge, done, err
}

// plainServer runs PLAIN (RFC 4616 §2: authzid NUL authcid NUL passwd).
func (s *session) plainServer() gosasl.Server {
	return gosasl.NewPlainServer(func(authzid, login, password string) error {
		return s.authenticate(sasl.Plain, authzid, login, password)
	})
}

// imapExchange is a plugin's exchange as AUTHENTICATE runs it.
type imapExchange struct{ *sasl.Exchange }

// Next sends an empty challenge as a bare "+ " (RFC 9051 §7.5): go-imap
// would send "=", which is SASL-IR's notation for an empty initial
// response (RFC 4959 §3), not a challenge's.
func (e imapExchange) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := e.Exchange.Next(response)
	if len(challenge) == 0 {
		challenge = nil
	}
	return challenge, done, err
}

// endExchange abandons the plugin exchange in progress, if any, and its
// attempt; mu held.
func (s *session) endExchange() {
	authflow.Cancel(s.exchange, s.attempt)
	s.exchange, s.attempt = nil, nil
}

// flow is the login flow of the session's client (core/authflow).
func (s *session) flow() *authflow.Flow {
	return &authflow.Flow{
		Limiter:       s.srv.cfg.AuthLimit,
		Accounts:      s.srv.cfg.Accounts,
		Passwords:     s.srv.cfg.Auth,
		Timeout:       authTimeout,
		RefuseAuthzid: true,
		IP:            s.conn.IP,
		Log:           s.log,
		SuccessAttrs:  []slog.Attr{slog.Bool("tls", s.isTLS())},
		Accept:        s.accept,
		Keys:          s.keys(),
		ClientKey:     authflow.ClientKeyHash(s.fr.peerCertificates()),
	}
}

// keys are the known TLS client keys, in the store.
func (s *session) keys() authflow.Keys {
	if s.srv.cfg.Store == nil {
		return nil
	}
	return s.srv.cfg.Store
}

// authReply maps the flow's errors to replies: a temporary failure is
// NO [UNAVAILABLE] (RFC 5530 §3); after ErrTooMany the connection ends.
func (s *session) authReply(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, authflow.ErrInvalid):
		return errAuthFailed
	case errors.Is(err, authflow.ErrAuthzid):
		return errAuthzid
	case errors.Is(err, authflow.ErrTooMany):
		s.conn.HangupAfterReply()
		return errAuthTooMany
	}
	return errAuthTemp
}

// authenticate checks a login and password, and on success makes the
// session's account the login's. An authzid of another account is refused
// with NO [AUTHORIZATIONFAILED] and not counted against the client: its
// password was right.
func (s *session) authenticate(mech, authzid, login, password string) (rerr error) {
	defer s.begin(&rerr)()
	return s.authReply(s.flow().Password(s.ctx(), mech, authzid, login, password))
}

// accept makes account the session's, its mailboxes opened; mu held.
func (s *session) accept(account string) error {
	a, err := s.srv.cfg.Store.Account(account)
	if err != nil {
		return err
	}
	s.account = a
	s.fr.authenticated.Store(true)
	s.log = s.log.With(slog.String("account", account))
	return nil
}

// isTLS reports whether the connection is TLS: imaps, or after STARTTLS.
func (s *session) isTLS() bool {
	return s.fr.isTLS()
}
