package sdk

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
)

// Mechanism runs SASL exchanges (RFC 4422) for one or more mechanisms that the
// plugin names in Plugin.Mechanisms.
type Mechanism interface {
	// Start begins an exchange of mechanism mech on a connection. The ctx
	// bounds the whole exchange: cancel it to abandon the exchange.
	Start(ctx context.Context, mech string, conn ConnInfo) (Exchange, error)
}

// Exchange is one SASL exchange in progress.
type Exchange interface {
	// Next processes a client response and returns the next challenge or,
	// at the end, the outcome; exactly one of them is non-nil. The first
	// call passes the client's initial response: nil if it sent none, empty
	// and non-nil if it sent an empty one (RFC 4422 §5).
	Next(ctx context.Context, response []byte) (challenge []byte, outcome *AuthOutcome, err error)
}

// AuthOutcome ends an exchange.
type AuthOutcome struct {
	Success   bool
	Account   string // On success.
	Login     string // Name or address the user logged in as.
	Reason    string // For the log only; clients see a generic failure.
	Temporary bool   // The failure is temporary (454 4.7.0, IMAP NO [UNAVAILABLE]).
	FinalData []byte // Additional data with success (e.g. SCRAM server-final-message).
}

// Result is "success", "tempfail" or "failure": the outcome for a log line.
func (o *AuthOutcome) Result() string {
	switch {
	case o.Success:
		return "success"
	case o.Temporary:
		return "tempfail"
	}
	return "failure"
}

// LogAttrs are the attributes of a mechanism's one log line per exchange:
// mechanism, login (as the client gave it, or the outcome's on success),
// account, result, reason, TLS version, protocol and remote address.
// Never credentials.
func (o *AuthOutcome) LogAttrs(mechanism, login string, conn ConnInfo) []any {
	if o.Success && o.Login != "" {
		login = o.Login
	}
	tlsVersion := "none"
	if conn.TLS != nil {
		tlsVersion = tls.VersionName(conn.TLS.Version)
	}
	return []any{
		slog.String("mechanism", mechanism),
		slog.String("login", login),
		slog.String("account", o.Account),
		slog.String("result", o.Result()),
		slog.String("reason", o.Reason),
		slog.String("tls", tlsVersion),
		slog.String("protocol", conn.Protocol),
		slog.String("remote", conn.RemoteAddr),
	}
}

// Deriver is implemented by mechanisms that store per-password secrets, so
// the core never stores the password itself for them.
type Deriver interface {
	// Derive returns the secrets to store for account's new password, by
	// mechanism name. The plugin reads them back with Host.Secret.
	Derive(ctx context.Context, account, password string) (map[string][]byte, error)
}

// PreAuther is implemented by mechanisms that authenticate from the
// connection alone, such as by TLS client certificate (IMAP PREAUTH).
type PreAuther interface {
	PreAuth(ctx context.Context, conn ConnInfo) (*AuthOutcome, error)
}

// ConnInfo describes the client connection an exchange or check runs on.
type ConnInfo struct {
	Protocol   string // "smtp" or "imap".
	Listener   string // Listener name in mta.toml.
	LocalAddr  string
	RemoteAddr string
	TLS        *TLSInfo // Nil without TLS.
	// Offered are the SASL mechanisms the core offered on this connection,
	// in order, when a mechanism starts: how SCRAM tells a client's
	// downgrade from a server that offers no -PLUS (RFC 5802 §6). Nil
	// outside authentication.
	Offered []string
}

// TLSInfo is the TLS state of a client connection, including channel binding
// data for SCRAM-*-PLUS.
type TLSInfo struct {
	Version          uint16 // crypto/tls version constant.
	ServerName       string
	Exporter         []byte // tls-exporter (RFC 9266); TLS 1.3 only.
	Unique           []byte // tls-unique (RFC 5929 §3); TLS 1.2 only.
	ServerEndPoint   []byte // tls-server-end-point (RFC 5929 §4).
	PeerCertificates []*x509.Certificate
}
