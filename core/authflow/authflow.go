// Package authflow runs one login attempt from start to outcome, for every
// protocol: SMTP AUTH (RFC 4954), IMAP LOGIN and AUTHENTICATE (RFC 9051
// §6.2.2, §6.2.3). The attempt is counted against the client's address
// before any credential is checked (core/authlimit); then a password is
// checked (sasl.CheckPassword), or a mechanism decides without one and its
// sasl.Outcome ends the attempt (a plugin's exchange). The flow checks the
// account the outcome names, makes it the session's, ends the attempt, logs
// the result in one line and returns one of the errors below, which each
// protocol maps to its replies: the client learns no more than that.
//
// A failure is the client's (a wrong password or an unknown login, alike)
// and is counted and delayed; a temporary failure is the server's (a plugin
// down, a store error, a panic) and is not counted against the client.
//
// A client that presented a TLS certificate with a known key (mta
// tlspubkey) logs in only to the key's account, by whatever mechanism: a
// login to another account fails as a wrong password does. The key cannot
// be passed on to another connection, a password can.
package authflow

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/netip"
	"time"

	"github.com/switchyard-mta/switchyard/core/authlimit"
	"github.com/switchyard-mta/switchyard/core/sasl"
	"github.com/switchyard-mta/switchyard/core/store"
	"github.com/switchyard-mta/switchyard/sdk"
)

// How an attempt ended, when not in success. Causes are logged, never
// returned: the protocol answers each with a fixed reply.
var (
	// ErrInvalid: the credentials are invalid; an unknown login and a wrong
	// password alike, so that logins cannot be probed (RFC 4954 §6, RFC
	// 9051 §7.1). Counted against the client and returned after the
	// limiter's delay. SMTP 535 5.7.8, IMAP NO [AUTHENTICATIONFAILED].
	ErrInvalid = errors.New("authflow: credentials invalid")
	// ErrTemporary: the server could not decide (a plugin down or failing,
	// the password store failing, an account that cannot be opened). Not
	// counted. SMTP 454 4.7.0, IMAP NO [UNAVAILABLE] (RFC 5530 §3).
	ErrTemporary = errors.New("authflow: temporary failure")
	// ErrTooMany: the client's address failed too often and nothing was
	// checked. The protocol answers, then hangs up: SMTP 421 4.7.0, IMAP
	// NO [UNAVAILABLE].
	ErrTooMany = errors.New("authflow: too many failures from this address")
	// ErrAuthzid: the password was right, but the authorization identity
	// names another account; only with Flow.RefuseAuthzid. Not counted.
	// IMAP NO [AUTHORIZATIONFAILED] (RFC 5530 §3).
	ErrAuthzid = errors.New("authflow: authorization identity is another account")
)

// Flow runs the login attempts of one client connection; a protocol fills
// one for each command that logs in.
type Flow struct {
	Limiter   *authlimit.Limiter // Shared among listeners. Nil: no limit.
	Accounts  sasl.Accounts
	Passwords sasl.Passwords
	Timeout   time.Duration // Bounds a password check. Zero: ctx alone.
	// RefuseAuthzid: the protocol has a reply of its own for an authzid
	// naming another account (IMAP NO [AUTHORIZATIONFAILED]): Password
	// returns ErrAuthzid and does not count the attempt, as the password
	// was right. False (SMTP, RFC 4954 has none): ErrInvalid, counted like
	// a wrong password.
	RefuseAuthzid bool

	IP  netip.Addr   // The client's, which Limiter counts.
	Log *slog.Logger // The connection's; each line adds mech and login.
	// SuccessAttrs end the success line, after the account: what the
	// protocol tells of the session (IMAP: tls).
	SuccessAttrs []slog.Attr
	// Accept makes account the session's, before the attempt counts as a
	// success. An error is a temporary failure, logged with the account.
	Accept func(account string) error

	Keys Keys // The known TLS client keys. Nil: none.
	// ClientKey is the SHA-256 of the SubjectPublicKeyInfo of the
	// client's TLS certificate (ClientKeyHash); nil without one.
	ClientKey []byte
}

// Keys are the known TLS client keys; *store.Store is.
type Keys interface {
	TLSPublicKey(ctx context.Context, fingerprint string) (store.TLSPublicKey, error)
	TLSPublicKeyUsed(ctx context.Context, fingerprint string, t time.Time) error
}

// ClientKeyHash returns the SHA-256 of the SubjectPublicKeyInfo of the
// client's TLS certificate, the first of peer (the TLS state's
// PeerCertificates), which identifies its key; nil without one. The
// certificate itself is not verified: the TLS handshake proved the client
// holds the key, and only the key counts.
func ClientKeyHash(peer []*x509.Certificate) []byte {
	if len(peer) == 0 || peer[0] == nil {
		return nil
	}
	sum := sha256.Sum256(peer[0].RawSubjectPublicKeyInfo)
	return sum[:]
}

// Key returns the known key the client presented, or nil: no certificate,
// an unknown key, or one of an account no longer configured. It is read
// at each call, so that a removed key stops working at once.
func (f *Flow) Key(ctx context.Context) (*store.TLSPublicKey, error) {
	if f.Keys == nil || f.ClientKey == nil {
		return nil, nil
	}
	k, err := f.Keys.TLSPublicKey(ctx, store.TLSFingerprint(f.ClientKey))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	if account, ok := f.Accounts.AccountByLogin(k.Account); !ok || account != k.Account {
		return nil, nil
	}
	return &k, nil
}

// Answer turns the end of a plugin's exchange into the protocol's reply:
// it calls end, which ends the attempt with the exchange's outcome (End)
// and returns the flow's error, under whatever lock guards the session, and
// maps that error.
type Answer func(end func() error) error

// Begin counts an attempt of mechanism mech against the client's address
// before any credential is checked, waiting while attempts in progress
// could still fail (authlimit.Limiter.Begin), or refuses with ErrTooMany.
// The caller ends the attempt with End, or with Cancel if it proves
// nothing.
func (f *Flow) Begin(ctx context.Context, mech string) (*authlimit.Attempt, error) {
	return f.begin(ctx, f.Log.With(slog.String("mech", mech)))
}

func (f *Flow) begin(ctx context.Context, log *slog.Logger) (*authlimit.Attempt, error) {
	att, ok := f.Limiter.Begin(ctx, f.IP)
	if !ok {
		log.Warn("authentication refused: too many failures from this address")
		return nil, ErrTooMany
	}
	return att, nil
}

// End ends att with the outcome of a mechanism that decided without a
// password checked here, such as a plugin's exchange. The account of a
// success must be one (Accounts): a plugin names what the Host gave it.
// ctx bounds the delay of a failure. A panic in Accept, or in Accounts,
// ends att as abandoned, not counted, and goes on to the protocol.
func (f *Flow) End(ctx context.Context, att *authlimit.Attempt, o sasl.Outcome) error {
	defer att.Abandon() // After a panic; does nothing once att ended.
	log := f.Log.With(slog.String("mech", o.Mechanism), slog.String("login", o.Login))
	switch {
	case o.Temporary:
		att.Abandon()
		log.Warn("authentication: temporary failure", slog.String("reason", o.Reason))
		return ErrTemporary
	case !o.Success:
		return f.failed(ctx, log, att, o.Reason)
	}
	if account, ok := f.Accounts.AccountByLogin(o.Account); !ok || account != o.Account {
		att.Abandon()
		log.Error("authentication: plugin named an unknown account", slog.String("account", o.Account))
		return ErrTemporary
	}
	return f.succeeded(ctx, log, att, o.Mechanism, o.Account)
}

// PreAuth logs the connection in by its TLS client certificate alone,
// before any command, if the plugin serving EXTERNAL says so
// (sasl.Server.PreAuth). It is no attempt of the client's and is not
// counted: ErrInvalid means no (no certificate, an unknown key, a key
// that does not pre-authenticate this protocol), ErrTemporary that the
// plugin could not say.
func (f *Flow) PreAuth(ctx context.Context, ss *sasl.Server, conn sdk.ConnInfo) error {
	o, ok := ss.PreAuth(ctx, conn)
	if !ok {
		return ErrInvalid
	}
	log := f.Log.With(slog.String("mech", o.Mechanism), slog.String("login", o.Login), slog.Bool("preauth", true))
	switch {
	case o.Temporary:
		log.Warn("pre-authentication: temporary failure", slog.String("reason", o.Reason))
		return ErrTemporary
	case !o.Success:
		log.Debug("not pre-authenticated", slog.String("reason", o.Reason))
		return ErrInvalid
	}
	if account, ok := f.Accounts.AccountByLogin(o.Account); !ok || account != o.Account {
		log.Error("pre-authentication: plugin named an unknown account", slog.String("account", o.Account))
		return ErrTemporary
	}
	return f.succeeded(ctx, log, nil, o.Mechanism, o.Account)
}

// Password checks the credentials of PLAIN (RFC 4616), LOGIN or IMAP
// LOGIN in an attempt of its own (sasl.CheckPassword); ctx bounds the
// wait for the limiter and the delay of a failure. A panic in the check
// ends the attempt as abandoned, not counted, and goes on to the protocol.
func (f *Flow) Password(ctx context.Context, mech, authzid, login, password string) error {
	log := f.Log.With(slog.String("mech", mech), slog.String("login", login))
	att, err := f.begin(ctx, log)
	if err != nil {
		return err
	}
	defer att.Abandon() // After a panic; does nothing once att ended.
	cctx := ctx
	if f.Timeout > 0 {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, f.Timeout)
		defer cancel()
	}
	account, reason, err := sasl.CheckPassword(cctx, f.Accounts, f.Passwords, authzid, login, password)
	switch {
	case err != nil:
		att.Abandon()
		log.Error("authentication: checking password", slog.Any("err", err))
		return ErrTemporary
	case reason == sasl.ReasonAuthzid && f.RefuseAuthzid:
		att.Abandon()
		log.Info("authentication failed", slog.String("reason", reason), slog.String("authzid", authzid))
		return ErrAuthzid
	case reason != "":
		return f.failed(ctx, log, att, reason)
	}
	return f.succeeded(ctx, log, att, mech, account)
}

// Start begins an attempt (Begin) and the exchange of plugin mechanism
// mech on conn (sasl.Server.Start). The exchange's outcome ends the
// attempt through answer, whose error the exchange's last Next returns.
// Start fails with ErrTooMany, with an error wrapping
// sasl.ErrUnknownMechanism, or with ErrTemporary while the plugin is down,
// the attempt ended each time. Otherwise the caller holds the exchange
// and its attempt until the outcome, and gives them to Cancel if the
// client cancels or goes away first.
func (f *Flow) Start(ctx context.Context, ss *sasl.Server, mech string, conn sdk.ConnInfo, answer Answer) (*sasl.Exchange, *authlimit.Attempt, error) {
	log := f.Log.With(slog.String("mech", mech))
	att, err := f.begin(ctx, log)
	if err != nil {
		return nil, nil, err
	}
	ex, err := ss.Start(ctx, mech, conn, func(o sasl.Outcome) error {
		return answer(func() error { return f.End(ctx, att, o) })
	})
	if errors.Is(err, sasl.ErrUnknownMechanism) {
		att.Abandon()
		return nil, nil, err
	} else if err != nil {
		att.Abandon()
		log.Warn("authentication unavailable", slog.Any("err", err))
		return nil, nil, ErrTemporary
	}
	return ex, att, nil
}

// Cancel abandons an exchange that has not ended and its attempt: a
// cancelled exchange proves nothing, and is not counted. Either may be
// nil; both may have ended.
func Cancel(ex *sasl.Exchange, att *authlimit.Attempt) {
	if ex != nil {
		ex.Close()
	}
	att.Abandon()
}

// failed logs a failure, ends att as failed and waits the limiter's delay.
func (f *Flow) failed(ctx context.Context, log *slog.Logger, att *authlimit.Attempt, reason string) error {
	log.Info("authentication failed", slog.String("reason", reason))
	att.FailAndWait(ctx)
	return ErrInvalid
}

// succeeded makes account the session's and ends att in success, unless
// the client's known key is of another account. A login by EXTERNAL names
// the key and records its use.
func (f *Flow) succeeded(ctx context.Context, log *slog.Logger, att *authlimit.Attempt, mech, account string) error {
	key, err := f.Key(ctx)
	if err != nil {
		att.Abandon()
		log.Error("authentication: reading TLS client key", slog.Any("err", err))
		return ErrTemporary
	}
	if key != nil && key.Account != account {
		log = log.With(slog.String("key", key.Fingerprint), slog.String("key_account", key.Account))
		return f.failed(ctx, log, att, "the TLS client key is of another account")
	}
	if err := f.Accept(account); err != nil {
		att.Abandon()
		log.Error("authentication: opening account", slog.String("account", account), slog.Any("err", err))
		return ErrTemporary
	}
	att.Succeeded()
	attrs := append([]slog.Attr{slog.String("account", account)}, f.SuccessAttrs...)
	if key != nil && mech == sasl.External {
		attrs = append(attrs, slog.String("key", key.Fingerprint), slog.String("key_name", key.Name))
		if err := f.Keys.TLSPublicKeyUsed(ctx, key.Fingerprint, time.Now()); err != nil {
			log.Warn("recording the use of a TLS client key", slog.String("key", key.Fingerprint), slog.Any("err", err))
		}
	}
	log.LogAttrs(ctx, slog.LevelInfo, "authenticated", attrs...)
	return nil
}
