package imapd

import (
	"context"
	"errors"
	"log/slog"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gosasl "github.com/emersion/go-sasl"

	"github.com/switchyard-mta/switchyard/core/authlimit"
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
// LOGINDISABLED instead before (RFC 9051 §6.2.3). Without Config.SASL,
// PLAIN alone.
func (s *session) AuthenticateMechanisms() []string {
	if s.srv.cfg.SASL == nil {
		return []string{sasl.Plain}
	}
	return s.srv.cfg.SASL.Mechanisms(s.isTLS())
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
	log := s.log.With(slog.String("mech", mech))
	att, err := s.beginAttempt(log)
	if err != nil {
		return nil, err
	}
	ci := sasl.ConnInfo("imap", s.srv.cfg.Listener.Name, s.ic.NetConn(), s.srv.cfg.TLS)
	ex, err := ss.Start(s.ctx(), mech, ci, func(o sasl.Outcome) error { return s.finish(log, att, o) })
	if errors.Is(err, sasl.ErrUnknownMechanism) {
		att.Abandon()
		return nil, errMechanism
	} else if err != nil {
		att.Abandon()
		log.Warn("authentication unavailable", slog.Any("err", err))
		return nil, errAuthTemp
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
// attempt: a cancelled exchange proves nothing; mu held.
func (s *session) endExchange() {
	if s.exchange != nil {
		s.exchange.Close()
		s.exchange = nil
	}
	s.attempt.Abandon()
	s.attempt = nil
}

// finish answers the outcome of a plugin's exchange, which ends att: a
// temporary failure with NO [UNAVAILABLE] (RFC 5530 §3), not counted
// against the client.
func (s *session) finish(log *slog.Logger, att *authlimit.Attempt, o sasl.Outcome) (rerr error) {
	defer s.begin(&rerr)()
	s.exchange, s.attempt = nil, nil
	log = log.With(slog.String("login", o.Login))
	switch {
	case o.Temporary:
		att.Abandon()
		log.Warn("authentication: temporary failure", slog.String("reason", o.Reason))
		return errAuthTemp
	case !o.Success:
		return s.authFailed(log, att, o.Reason)
	}
	// The plugin names the account the Host gave it; check it is one.
	if account, ok := s.srv.cfg.Accounts.AccountByLogin(o.Account); !ok || account != o.Account {
		att.Abandon()
		log.Error("authentication: plugin named an unknown account", slog.String("account", o.Account))
		return errAuthTemp
	}
	return s.authSucceeded(log, att, o.Account)
}

// authenticate checks a login and password (sasl.CheckPassword), and on
// success makes the session's account the login's. An authzid of another
// account is refused with NO [AUTHORIZATIONFAILED] and not counted against
// the client: its password was right.
func (s *session) authenticate(mech, authzid, login, password string) (rerr error) {
	defer s.begin(&rerr)()
	log := s.log.With(slog.String("mech", mech), slog.String("login", login))
	att, err := s.beginAttempt(log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.ctx(), authTimeout)
	defer cancel()
	account, reason, err := sasl.CheckPassword(ctx, s.srv.cfg.Accounts, s.srv.cfg.Auth, authzid, login, password)
	switch {
	case err != nil:
		att.Abandon()
		log.Error("authentication: checking password", slog.Any("err", err))
		return errAuthTemp
	case reason == sasl.ReasonAuthzid:
		att.Abandon()
		log.Info("authentication failed", slog.String("reason", reason), slog.String("authzid", authzid))
		return errAuthzid
	case reason != "":
		return s.authFailed(log, att, reason)
	}
	return s.authSucceeded(log, att, account)
}

// beginAttempt counts an attempt against the client's address before any
// credential is checked (core/authlimit), or refuses, and ends the session,
// when the address failed too often.
func (s *session) beginAttempt(log *slog.Logger) (*authlimit.Attempt, error) {
	att, ok := s.srv.cfg.AuthLimit.Begin(s.ctx(), s.conn.IP)
	if !ok {
		log.Warn("authentication refused: too many failures from this address")
		s.conn.HangupAfterReply()
		return nil, errAuthTooMany
	}
	return att, nil
}

// authFailed logs a failure, ends att as failed and delays the answer
// accordingly.
func (s *session) authFailed(log *slog.Logger, att *authlimit.Attempt, reason string) error {
	log.Info("authentication failed", slog.String("reason", reason))
	att.FailAndWait(s.ctx())
	return errAuthFailed
}

// authSucceeded makes account the session's.
func (s *session) authSucceeded(log *slog.Logger, att *authlimit.Attempt, account string) error {
	a, err := s.srv.cfg.Store.Account(account)
	if err != nil {
		att.Abandon()
		log.Error("authentication: opening account", slog.String("account", account), slog.Any("err", err))
		return errAuthTemp
	}
	att.Succeeded()
	s.account = a
	s.fr.authenticated.Store(true)
	s.log = s.log.With(slog.String("account", account))
	log.Info("authenticated", slog.String("account", account), slog.Bool("tls", s.isTLS()))
	return nil
}

// isTLS reports whether the connection is TLS: imaps, or after STARTTLS.
func (s *session) isTLS() bool {
	return s.fr.isTLS()
}
