package smtpd

import (
	"context"
	"errors"
	"log/slog"

	gosasl "github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/core/authlimit"
	"github.com/switchyard-mta/switchyard/core/guard"
	"github.com/switchyard-mta/switchyard/core/sasl"
)

var (
	// RFC 4954 §6. The same reply for an unknown user and a wrong password.
	errAuthInvalid = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
	// RFC 4954 §6: also for a mechanism whose plugin is down.
	errAuthTemp = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}
	// RFC 4954 §6: 538 5.7.11, encryption required for the mechanism.
	errAuthNeedsTLS = &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11}, Message: "Encryption required for authentication"}
	// Sent before closing the connection (RFC 5321 §3.8).
	errAuthTooMany = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many failed authentications, try again later"}
)

// AuthMechanisms lists the mechanisms in the configured order, on
// submission listeners only; go-smtp advertises and allows them only over
// TLS, so the -PLUS variants are always among them.
func (s *session) AuthMechanisms() []string {
	defer guard.Recover(s.log, "smtp session", nil)
	s.ehlo = true
	if !s.srv.submission() || !s.isTLS() {
		return nil
	}
	return s.srv.cfg.SASL.Mechanisms(s.isTLS())
}

// Auth starts an exchange: a built-in PLAIN or LOGIN, or a plugin's. A
// panic in it, or in the exchange, fails that AUTH with errAuthTemp.
func (s *session) Auth(mech string) (_ gosasl.Server, err error) {
	defer panicReply(&err, errAuthTemp)
	defer guard.Recover(s.log, "smtp session", &err)
	ss, err := s.auth(mech)
	if err != nil {
		return nil, err
	}
	return guardedSASL{ss, s.log}, nil
}

// guardedSASL recovers a panic in an exchange's step.
type guardedSASL struct {
	gosasl.Server
	log *slog.Logger
}

func (g guardedSASL) Next(response []byte) (challenge []byte, done bool, err error) {
	defer panicReply(&err, errAuthTemp)
	defer guard.Recover(g.log, "smtp session", &err)
	return g.Server.Next(response)
}

func (s *session) auth(mech string) (gosasl.Server, error) {
	if !s.srv.submission() {
		return nil, smtp.ErrAuthUnsupported
	}
	if !s.isTLS() {
		// go-smtp lets AUTH through without TLS (AllowInsecureAuth, set
		// so that it asks AuthMechanisms on every EHLO): passwords only
		// over TLS (RFC 4954 §4).
		return nil, errAuthNeedsTLS
	}
	s.endExchange() // One the client cancelled with "*" (RFC 4954 §4).
	ss := s.srv.cfg.SASL
	if !ss.Offered(mech, s.isTLS()) {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	if ss.Builtin(mech) {
		switch mech {
		case sasl.Plain:
			// RFC 4616 §2: authzid NUL authcid NUL passwd.
			return gosasl.NewPlainServer(func(authzid, login, password string) error {
				return s.authenticate(mech, authzid, login, password)
			}), nil
		case sasl.Login:
			return sasl.NewLoginServer(func(login, password string) error {
				return s.authenticate(mech, "", login, password)
			}), nil
		}
	}
	log := s.log.With(slog.String("mech", mech))
	att, err := s.beginAttempt(log)
	if err != nil {
		return nil, err
	}
	ci := sasl.ConnInfo("smtp", s.srv.cfg.Listener.Name, s.sc.Conn(), s.srv.cfg.TLS)
	ex, err := ss.Start(s.srv.ctx, mech, ci, func(o sasl.Outcome) error { return s.finish(log, att, o) })
	if errors.Is(err, sasl.ErrUnknownMechanism) {
		att.Abandon()
		return nil, smtp.ErrAuthUnknownMechanism
	} else if err != nil {
		att.Abandon()
		log.Warn("authentication unavailable", slog.Any("err", err))
		return nil, errAuthTemp
	}
	s.attempt.Store(att)
	s.exchange.Store(ex)
	return ex, nil
}

// endExchange abandons the plugin exchange in progress, if any, and its
// attempt: a cancelled exchange proves nothing.
func (s *session) endExchange() {
	if ex := s.exchange.Swap(nil); ex != nil {
		ex.Close()
	}
	if att := s.attempt.Swap(nil); att != nil {
		att.Abandon()
	}
}

// finish answers the outcome of a plugin's exchange, which ends att.
func (s *session) finish(log *slog.Logger, att *authlimit.Attempt, o sasl.Outcome) error {
	s.exchange.Store(nil)
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
	s.authSucceeded(log, att, o.Account)
	return nil
}

// beginAttempt counts an attempt against the client's address before any
// credential is checked (core/authlimit), or refuses, and ends the session,
// when the address failed too often.
func (s *session) beginAttempt(log *slog.Logger) (*authlimit.Attempt, error) {
	att, ok := s.srv.cfg.AuthLimit.Begin(s.srv.ctx, s.conn.IP)
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
	att.FailAndWait(s.srv.ctx)
	return errAuthInvalid
}

// authSucceeded makes account the session's.
func (s *session) authSucceeded(log *slog.Logger, att *authlimit.Attempt, account string) {
	att.Succeeded()
	s.account = account
	log.Info("authenticated", slog.String("account", account))
}

// authenticate checks a login and password (sasl.CheckPassword), and on
// success makes the session's account the login's.
func (s *session) authenticate(mech, authzid, login, password string) error {
	log := s.log.With(slog.String("mech", mech), slog.String("login", login))
	att, err := s.beginAttempt(log)
	if err != nil {
		return err
	}
	defer att.Abandon() // After a panic; does nothing once att ended.
	ctx, cancel := context.WithTimeout(s.srv.ctx, authTimeout)
	defer cancel()
	account, reason, err := sasl.CheckPassword(ctx, s.srv.cfg.Accounts, s.srv.cfg.Auth, authzid, login, password)
	if err != nil {
		att.Abandon()
		log.Error("authentication: checking password", slog.Any("err", err))
		return errAuthTemp
	} else if reason != "" {
		return s.authFailed(log, att, reason)
	}
	s.authSucceeded(log, att, account)
	return nil
}
