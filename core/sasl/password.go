package sasl

import (
	"context"

	gosasl "github.com/emersion/go-sasl"
)

// Accounts resolves logins; *config.Config implements it.
type Accounts interface {
	// AccountByLogin resolves a login, an account name or one of its
	// addresses, to the account name.
	AccountByLogin(login string) (account string, ok bool)
}

// Passwords checks passwords; *store.Store implements it.
type Passwords interface {
	// CheckPassword reports whether password is account's. The error is for
	// failures to check, not for a wrong password.
	CheckPassword(ctx context.Context, account, password string) (bool, error)
}

// Reasons a password login fails, for the log only: a client gets the same
// answer for an unknown login and a wrong password (RFC 4954 §6, RFC 9051
// §7.1), so that logins cannot be probed.
const (
	ReasonUnknownLogin  = "unknown login"
	ReasonWrongPassword = "wrong password"
	ReasonAuthzid       = "authorization identity is another account"
)

// CheckPassword checks the credentials of PLAIN (RFC 4616), LOGIN or IMAP
// LOGIN and returns the login's account, or the reason it failed. The
// password of an unknown login is checked anyway, so that it takes as long
// as a wrong one and does not reveal which logins exist. A non-empty
// authzid must name the login's account: acting as another user is not
// supported. An error is a failure to check: temporary, not the client's.
func CheckPassword(ctx context.Context, accounts Accounts, passwords Passwords, authzid, login, password string) (account, reason string, err error) {
	account, known := accounts.AccountByLogin(login)
	name := account
	if !known {
		name = login
	}
	ok, err := passwords.CheckPassword(ctx, name, password)
	switch {
	case err != nil:
		return "", "", err
	case !known:
		return "", ReasonUnknownLogin, nil
	case !ok:
		return "", ReasonWrongPassword, nil
	case authzid != "":
		if zacc, zok := accounts.AccountByLogin(authzid); !zok || zacc != account {
			return "", ReasonAuthzid, nil
		}
	}
	return account, "", nil
}

// NewLoginServer returns the server side of LOGIN
// (draft-murchison-sasl-login): the username and the password each answer
// a challenge, unless the username came as initial response. The response
// to the password challenge ends the exchange with check's error.
func NewLoginServer(check func(login, password string) error) gosasl.Server {
	return &loginServer{check: check}
}

type loginServer struct {
	check func(login, password string) error
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
		return nil, true, l.check(l.login, string(response))
	}
	return nil, true, gosasl.ErrUnexpectedClientResponse
}
