package smtpd

import (
	"context"
	"log/slog"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

var (
	// RFC 4954 §6. The same reply for an unknown user and a wrong password.
	errAuthInvalid = &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
	errAuthTemp    = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Temporary authentication failure"}
	// Sent before closing the connection (RFC 5321 §3.8).
	errAuthTooMany = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many failed authentications, try again later"}
)

// AuthMechanisms lists the built-in mechanisms, on submission listeners
// only; go-smtp advertises and allows them only over TLS.
func (s *session) AuthMechanisms() []string {
	if !s.srv.submission() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

func (s *session) Auth(mech string) (sasl.Server, error) {
	if !s.srv.submission() {
		return nil, smtp.ErrAuthUnsupported
	}
	switch mech {
	case sasl.Plain:
		// RFC 4616 §2: authzid NUL authcid NUL passwd.
		return sasl.NewPlainServer(func(authzid, login, password string) error {
			return s.authenticate(mech, authzid, login, password)
		}), nil
	case sasl.Login:
		return &loginServer{auth: func(login, password string) error {
			return s.authenticate(mech, "", login, password)
		}}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// authenticate checks a login and password, and on success makes the
// session's account the login's. A non-empty authzid must name the same
// account: acting as another user is not supported.
func (s *session) authenticate(mech, authzid, login, password string) error {
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
	ctx, cancel := context.WithTimeout(s.srv.ctx, authTimeout)
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
			reason = "authorization identity is another account"
		}
	}
	if reason != "" {
		log.Info("authentication failed", slog.String("reason", reason))
		if limit != nil {
			// The delay holds this session only; a client that hangs up
			// and reconnects finds the count where it left it.
			select {
			case <-time.After(limit.Failed(s.conn.ip)):
			case <-s.srv.ctx.Done():
			}
		}
		return errAuthInvalid
	}
	if limit != nil {
		limit.Succeeded(s.conn.ip)
	}
	s.account = account
	log.Info("authenticated", slog.String("account", account))
	return nil
}

// loginServer is the server side of LOGIN (draft-murchison-sasl-login): the
// username and the password each answer a challenge, unless the username
// came as initial response.
type loginServer struct {
	auth  func(login, password string) error
	step  int
	login string
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		if response == nil {
			l.step = 1
			return []byte("Username:"), false, nil
		}
		l.login = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 1:
		l.login = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.auth(l.login, string(response))
	}
	return nil, true, sasl.ErrUnexpectedClientResponse
}
