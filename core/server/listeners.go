package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/connlimit"
)

// bound is a listener of the configuration with its socket.
type bound struct {
	cfg *config.Listener
	ln  net.Listener
}

// bind listens on every listener's address. On the first failure it closes
// what it bound and returns the error, naming the listener, with the file
// and line of its address.
func bind(cfg *config.Config) ([]bound, error) {
	var bs []bound
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		ln, err := net.Listen("tcp", l.Address)
		if err != nil {
			for _, b := range bs {
				b.ln.Close()
			}
			return nil, bindError(cfg, i, err)
		}
		bs = append(bs, bound{l, ln})
	}
	return bs, nil
}

// CheckListeners binds every listener's address and closes it again, for
// `mta config check`: the errors (an address in use, a port below 1024
// without the privilege, an address not of this host) name the listener,
// with file and line.
func CheckListeners(cfg *config.Config) config.Errors {
	var errs config.Errors
	for i, l := range cfg.Listeners {
		ln, err := net.Listen("tcp", l.Address)
		if err != nil {
			errs = append(errs, bindError(cfg, i, err))
			continue
		}
		ln.Close()
	}
	return errs
}

func bindError(cfg *config.Config, i int, err error) config.Error {
	l := cfg.Listeners[i]
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err // "bind: address already in use"
	}
	return cfg.KeyError(fmt.Sprintf("listeners[%d].address", i), fmt.Sprintf("listener %q (%s) cannot listen on %s: %v", l.Name, l.Kind, l.Address, err))
}

// limit puts the connection caps of l on ln: connections over them are
// answered with the protocol's refusal by the listener itself.
func limit(gate *connlimit.Gate, b bound, hostname string, tlsConfig *tls.Config, log *slog.Logger) net.Listener {
	l := b.cfg
	refusal := connlimit.Refusal{Reply: smtpRefusal(hostname)}
	switch l.Kind {
	case config.KindIMAP, config.KindIMAPS:
		refusal.Reply = imapRefusal
	}
	if l.Kind == config.KindSubmissions || l.Kind == config.KindIMAPS {
		refusal.TLS = tlsConfig
	}
	lim := connlimit.Limits{
		MaxConnections: l.Conns.MaxConnections,
		MaxPerIP:       l.Conns.MaxPerIP,
		RatePerIP:      l.Conns.RatePerIP,
		Exempt:         l.Conns.Exempt,
	}
	return gate.Listener(b.ln, lim, refusal, log.With(slog.String("listener", l.Name)))
}

// refusalText says why a connection is turned away.
func refusalText(r connlimit.Reason) string {
	switch r {
	case connlimit.ReasonPerIP:
		return "Too many connections from your address, try again later"
	case connlimit.ReasonRate:
		return "Too many new connections from your address, try again later"
	}
	return "Too many connections, try again later"
}

// smtpRefusal is 421 before the greeting (RFC 5321 §3.1, §4.2.3), with the
// policy enhanced code 4.7.0.
func smtpRefusal(hostname string) func(connlimit.Reason) string {
	return func(r connlimit.Reason) string {
		return "421 4.7.0 " + hostname + " " + refusalText(r) + "\r\n"
	}
}

// imapRefusal is a BYE greeting (RFC 9051 §7.1.5) with the UNAVAILABLE
// response code (RFC 5530 §3).
func imapRefusal(r connlimit.Reason) string {
	return "* BYE [UNAVAILABLE] " + refusalText(r) + "\r\n"
}

// listenerTLS is the TLS configuration of a listener of kind. Those where
// users log in ask for a client certificate, never require one, and take
// any: its key alone may log in an account (mta tlspubkey), and the
// handshake proves the client holds it. Inbound MX (smtp) asks for none:
// relaying servers would present theirs for nothing.
func listenerTLS(kind string, base *tls.Config) *tls.Config {
	if base == nil || kind == config.KindSMTP {
		return base
	}
	c := base.Clone()
	c.ClientAuth = tls.RequestClientCert
	return c
}
