package smtpd

import (
	"errors"
	"log/slog"

	gosasl "github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/core/authflow"
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
// TLS, so the -PLUS variants are always among them, and EXTERNAL when the
// client presented a certificate.
func (s *session) AuthMechanisms() []string {
	defer guard.Recover(s.log, "smtp session", nil)
	if !s.srv.submission() || !s.isTLS() {
		return nil
	}
	return s.srv.cfg.SASL.Advertised(true, s.clientKey() != nil)
}

// preAuth logs a submission session in by the client's TLS certificate, if
// its key is known (mta tlspubkey): MAIL then needs no AUTH, as the key
// proves more than a password would.
func (s *session) preAuth() {
	if !s.srv.submission() || s.srv.cfg.SASL == nil {
		return
	}
	f := s.flow()
	if f.ClientKey == nil {
		return
	}
	ci := sasl.ConnInfo("smtp", s.srv.cfg.Listener.Name, s.sc.Conn(), s.srv.cfg.TLS)
	err := f.PreAuth(s.srv.ctx, s.srv.cfg.SASL, ci)
	s.preauthTemp = errors.Is(err, authflow.ErrTemporary)
}

// clientKey is the SHA-256 of the SubjectPublicKeyInfo of the client's TLS
// certificate, nil without one.
func (s *session) clientKey() []byte {
	cs, ok := s.sc.TLSConnectionState()
	if !ok {
		return nil
	}
	return authflow.ClientKeyHash(cs.PeerCertificates)
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
	ci := sasl.ConnInfo("smtp", s.srv.cfg.Listener.Name, s.sc.Conn(), s.srv.cfg.TLS)
	ex, att, err := s.flow().Start(s.srv.ctx, ss, mech, ci, func(end func() error) error {
		s.exchange.Store(nil)
		return s.authReply(end())
	})
	if errors.Is(err, sasl.ErrUnknownMechanism) {
		return nil, smtp.ErrAuthUnknownMechanism
	} else if err != nil {
		return nil, s.authReply(err)
	}
	s.attempt.Store(att)
	s.exchange.Store(ex)
	return ex, nil
}

// endExchange abandons the plugin exchange in progress, if any, and its
// attempt.
func (s *session) endExchange() {
	authflow.Cancel(s.exchange.Swap(nil), s.attempt.Swap(nil))
}

// flow is the login flow of the session's client (core/authflow).
func (s *session) flow() *authflow.Flow {
	return &authflow.Flow{
		Limiter:   s.srv.cfg.AuthLimit,
		Accounts:  s.srv.cfg.Accounts,
		Passwords: s.srv.cfg.Auth,
		Timeout:   authTimeout,
		IP:        s.conn.IP,
		Log:       s.log,
		Accept:    func(account string) error { s.account = account; return nil },
		Keys:      s.srv.cfg.Keys,
		ClientKey: s.clientKey(),
	}
}

// authReply maps the flow's errors to replies (RFC 4954 §6); after
// ErrTooMany the connection ends.
func (s *session) authReply(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, authflow.ErrInvalid):
		return errAuthInvalid
	case errors.Is(err, authflow.ErrTooMany):
		s.conn.HangupAfterReply()
		return errAuthTooMany
	}
	return errAuthTemp
}

// authenticate checks a login and password, and on success makes the
// session's account the login's. An authzid of another account fails as a
// wrong password does: SMTP has no reply of its own for it.
func (s *session) authenticate(mech, authzid, login, password string) error {
	return s.authReply(s.flow().Password(s.srv.ctx, mech, authzid, login, password))
}
