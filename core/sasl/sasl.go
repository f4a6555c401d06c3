// Package sasl runs SASL exchanges (RFC 4422) for the core's listeners,
// SMTP AUTH (RFC 4954) and IMAP AUTHENTICATE (RFC 9051 §6.2.2): it decides
// which mechanisms a connection is offered and in what order, describes the
// connection to mechanism plugins with its channel-binding data
// (tls-exporter, RFC 9266; tls-unique and tls-server-end-point, RFC 5929),
// runs a plugin's exchange behind go-sasl's sasl.Server, which go-smtp and
// go-imap drive, and reports how it ended.
//
// PLAIN (RFC 4616) and LOGIN are built into the listeners, which check them
// against the password hash: this package places them in the order, and
// gives the listeners the LOGIN exchange (NewLoginServer) and the password
// check (CheckPassword) they share.
// Every call into a plugin has a deadline (Options.StepTimeout) and a whole
// exchange is bounded (Options.ExchangeTimeout): a plugin that is down, slow
// or hung ends the exchange with a temporary failure, never a hang.
package sasl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
)

// Built-in mechanisms.
const (
	Plain = "PLAIN" // RFC 4616
	Login = "LOGIN" // draft-murchison-sasl-login
)

// External is SASL EXTERNAL (RFC 4422 Appendix A), which a plugin serves:
// over TLS, the login of the client's certificate. Its plugin is also
// asked to log a connection in before any command (PreAuth).
const External = "EXTERNAL"

// Errors of Start.
var (
	// ErrUnknownMechanism: the mechanism is not offered on this connection,
	// or is built in. SMTP 504 5.5.4 (RFC 4954 §4), IMAP NO.
	ErrUnknownMechanism = errors.New("sasl: mechanism not offered")
	// ErrUnavailable: the plugin serving the mechanism is down or did not
	// answer in time. Temporary: SMTP 454 4.7.0, IMAP NO [UNAVAILABLE].
	ErrUnavailable = errors.New("sasl: mechanism temporarily unavailable")
)

// Default limits.
const (
	// DefaultStepTimeout bounds one call into a plugin. Steps are a secret
	// lookup and a few HMACs, milliseconds; a plugin that takes longer is
	// hung, and the client gets its temporary failure within 2 seconds.
	DefaultStepTimeout = 1500 * time.Millisecond
	// DefaultExchangeTimeout bounds an exchange from start to outcome,
	// including the client's turns: SASL clients answer at once.
	DefaultExchangeTimeout = time.Minute
)

// Plugins serves the plugin mechanisms; *pluginhost.Manager implements it.
type Plugins interface {
	// Mechanisms lists the SASL names the loaded plugins serve.
	Mechanisms() []string
	// Mechanism returns the mechanism serving name. It fails at once, with
	// an error wrapping pluginhost.ErrUnavailable, while its plugin is down.
	Mechanism(name string) (sdk.Mechanism, error)
}

// Options configure a Server.
type Options struct {
	// Mechanisms is the configured order ([auth] mechanisms); nil: Default.
	Mechanisms      []string
	Plugins         Plugins       // Nil: only the built-in mechanisms.
	StepTimeout     time.Duration // Zero: DefaultStepTimeout.
	ExchangeTimeout time.Duration // Zero: DefaultExchangeTimeout.
}

// Server chooses and runs mechanisms for the listeners. It is safe for
// concurrent use; one Server serves every listener.
type Server struct {
	order       []string
	plugin      map[string]bool // Mechanisms a plugin serves.
	plugins     Plugins
	stepTimeout time.Duration
	exTimeout   time.Duration
}

// New returns a Server advertising opts.Mechanisms, or by default every
// served mechanism strongest first (Default). Problems with the configured
// list are *OrderError values, joined.
func New(opts Options) (*Server, error) {
	var served []string
	if opts.Plugins != nil {
		served = opts.Plugins.Mechanisms()
	}
	order, err := Order(opts.Mechanisms, served)
	if err != nil {
		return nil, err
	}
	s := &Server{
		order:       order,
		plugin:      map[string]bool{},
		plugins:     opts.Plugins,
		stepTimeout: opts.StepTimeout,
		exTimeout:   opts.ExchangeTimeout,
	}
	for _, m := range served {
		s.plugin[m] = true
	}
	if s.stepTimeout <= 0 {
		s.stepTimeout = DefaultStepTimeout
	}
	if s.exTimeout <= 0 {
		s.exTimeout = DefaultExchangeTimeout
	}
	return s, nil
}

// OrderError is a problem with one entry of the configured mechanisms.
type OrderError struct {
	Index int // In the configured list; the TOML key is auth.mechanisms[Index].
	Name  string
	Msg   string
}

func (e *OrderError) Error() string { return e.Name + ": " + e.Msg }

// strength ranks the mechanisms Switchyard's plugins serve, strongest first:
// SHA-256 (RFC 7677) over SHA-1, SCRAM over CRAM-MD5, whose server secret is
// password-equivalent.
// EXTERNAL comes first: clients use it only when set up with a
// certificate, which then proves more than any password.
var strength = []string{External, "SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5"}

// Default returns the default order of the served mechanisms: those ranked
// by strength first, then any other in name order, then the built-in PLAIN
// and LOGIN, which send the password itself. The channel-binding -PLUS
// variants are left out: clients pick the strongest mechanism offered, and
// common ones (GNU SASL in neomutt and msmtp, before tls-exporter support)
// then fail over TLS 1.3, where only tls-exporter binds (RFC 9266). An
// operator lists them in [auth] mechanisms to offer them; SCRAM without
// binding is still safe against a downgrade, as the plugin sees what was
// offered (sdk.ConnInfo.Offered).
func Default(served []string) []string {
	var order []string
	for _, m := range strength {
		if slices.Contains(served, m) {
			order = append(order, m)
		}
	}
	var rest []string
	for _, m := range served {
		if !slices.Contains(strength, m) && !slices.Contains(rest, m) && m != Plain && m != Login && !strings.HasSuffix(m, "-PLUS") {
			rest = append(rest, m)
		}
	}
	slices.Sort(rest)
	return append(append(order, rest...), Plain, Login)
}

// Order returns the mechanisms to advertise: configured, checked against
// what the plugins serve and the built-in ones, or Default(served) if nil.
func Order(configured, served []string) ([]string, error) {
	if configured == nil {
		return Default(served), nil
	}
	var errs []error
	seen := map[string]int{}
	for i, m := range configured {
		if j, dup := seen[m]; dup {
			errs = append(errs, &OrderError{Index: i, Name: m, Msg: fmt.Sprintf("listed twice (also at %d)", j)})
			continue
		}
		seen[m] = i
		if m != Plain && m != Login && !slices.Contains(served, m) {
			msg := "no loaded plugin serves it"
			if len(served) > 0 {
				msg += " (served: " + strings.Join(served, ", ") + "; built in: PLAIN, LOGIN)"
			}
			errs = append(errs, &OrderError{Index: i, Name: m, Msg: msg})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return slices.Clone(configured), nil
}

// Mechanisms returns the mechanisms to offer on a connection, in order:
// the -PLUS variants and EXTERNAL only with TLS, as they bind to it (RFC
// 5802 §6).
func (s *Server) Mechanisms(tls bool) []string {
	l := make([]string, 0, len(s.order))
	for _, m := range s.order {
		if tls || (!strings.HasSuffix(m, "-PLUS") && m != External) {
			l = append(l, m)
		}
	}
	return l
}

// Advertised returns the mechanisms to announce on a connection: those
// offered (Mechanisms), less EXTERNAL unless external, which the protocol
// decides (SMTP: a client certificate was presented; IMAP: its key is
// known). EXTERNAL not announced stays offered, and fails as a wrong
// password does where the key is unknown.
func (s *Server) Advertised(tls, external bool) []string {
	l := s.Mechanisms(tls)
	if !external {
		l = slices.DeleteFunc(l, func(m string) bool { return m == External })
	}
	return l
}

// Offered reports whether mech is offered on a connection with or without TLS.
func (s *Server) Offered(mech string, tls bool) bool {
	return slices.Contains(s.Mechanisms(tls), mech)
}

// Builtin reports whether mech is offered and one the listener runs itself
// (PLAIN, LOGIN), not a plugin.
func (s *Server) Builtin(mech string) bool {
	return (mech == Plain || mech == Login) && !s.plugin[mech] && slices.Contains(s.order, mech)
}

// Outcome is how an exchange ended.
type Outcome struct {
	Mechanism string
	Success   bool
	Account   string // On success.
	Login     string // As the client gave it; on failure too if the plugin said.
	// Temporary: the plugin is down, timed out, failed, or said so. Not
	// the client's fault; it should not count against it.
	Temporary bool
	Reason    string // For the log only; never sent to the client.
}

// Finish receives an exchange's outcome and returns the error the protocol
// answers with (nil on success).
type Finish func(Outcome) error

// Start begins an exchange of plugin mechanism mech on a connection, which
// must be offered on it; the plugin sees in conn.Offered what is. finish
// is called once, with the outcome, from the
// Next that ends the exchange; Next returns its error. Abandoning an
// exchange (client cancel, disconnect) needs Close.
func (s *Server) Start(ctx context.Context, mech string, conn sdk.ConnInfo, finish Finish) (*Exchange, error) {
	if !s.Offered(mech, conn.TLS != nil) || s.Builtin(mech) || s.plugins == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownMechanism, mech)
	}
	m, err := s.plugins.Mechanism(mech)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, mech, err)
	}
	conn.Offered = s.Mechanisms(conn.TLS != nil)
	e := &Exchange{mech: mech, finish: finish, stepTimeout: s.stepTimeout}
	e.ctx, e.cancel = context.WithTimeout(ctx, s.exTimeout)
	err = e.call(func() (err error) {
		e.ex, err = m.Start(e.ctx, mech, conn)
		return err
	})
	if err != nil {
		e.cancel()
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, mech, err)
	}
	return e, nil
}

// Exchange is a plugin's exchange in progress, as a go-sasl sasl.Server.
type Exchange struct {
	mech        string
	finish      Finish
	stepTimeout time.Duration
	ctx         context.Context // Bounds the exchange; ends the plugin's stream.
	cancel      context.CancelFunc
	ex          sdk.Exchange

	final *Outcome // Success held back until the client acknowledged its FinalData.
	done  bool
}

// Next passes a client response to the plugin and returns its challenge,
// or ends the exchange with the error of finish. Additional data with
// success (SCRAM's server-final-message) goes out as one more challenge,
// which the client answers empty (RFC 4422 §5, RFC 4954 §4); neither go-smtp
// nor go-imap can send data with the success reply.
func (e *Exchange) Next(response []byte) (challenge []byte, done bool, err error) {
	if e.done {
		return nil, true, e.end(Outcome{Reason: "response after the exchange ended"})
	}
	if e.final != nil {
		if len(response) > 0 {
			return nil, true, e.end(Outcome{Reason: "non-empty response to the additional data with success"})
		}
		return nil, true, e.end(*e.final)
	}
	var c []byte
	var o *sdk.AuthOutcome
	err = e.call(func() (err error) {
		ctx, cancel := context.WithTimeout(e.ctx, e.stepTimeout)
		defer cancel()
		c, o, err = e.ex.Next(ctx, response)
		return err
	})
	switch {
	case err != nil:
		return nil, true, e.end(Outcome{Temporary: true, Reason: err.Error()})
	case o == nil && c == nil:
		return nil, true, e.end(Outcome{Temporary: true, Reason: "plugin returned neither challenge nor outcome"})
	case o == nil:
		return c, false, nil
	}
	out := Outcome{Success: o.Success, Account: o.Account, Login: o.Login, Temporary: o.Temporary, Reason: o.Reason}
	if o.Success && out.Account == "" {
		out = Outcome{Temporary: true, Login: o.Login, Reason: "plugin reported success without an account"}
	}
	if out.Success && len(o.FinalData) > 0 {
		e.final = &out
		return o.FinalData, false, nil
	}
	return nil, true, e.end(out)
}

// PreAuth asks the plugin serving EXTERNAL whether conn logs in from its
// TLS client certificate alone (sdk.PreAuther), before any command (IMAP
// PREAUTH, RFC 9051 §7.1.4; implicit SMTP submission login). ok is false
// when there is nothing to ask: no client certificate, or EXTERNAL not
// offered. A plugin that is down, fails or does not answer within the
// step deadline gives a temporary outcome.
func (s *Server) PreAuth(ctx context.Context, conn sdk.ConnInfo) (o Outcome, ok bool) {
	if conn.TLS == nil || len(conn.TLS.PeerCertificates) == 0 || !s.Offered(External, true) || s.plugins == nil {
		return Outcome{}, false
	}
	o.Mechanism = External
	m, err := s.plugins.Mechanism(External)
	if err != nil {
		o.Temporary, o.Reason = true, err.Error()
		return o, true
	}
	pa, isPA := m.(sdk.PreAuther)
	if !isPA {
		return Outcome{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, s.stepTimeout)
	defer cancel()
	po, err := pa.PreAuth(ctx, conn)
	switch {
	case err != nil:
		o.Temporary, o.Reason = true, err.Error()
	case po == nil:
		o.Temporary, o.Reason = true, "plugin returned no outcome"
	case po.Success && po.Account == "":
		o.Temporary, o.Login, o.Reason = true, po.Login, "plugin reported success without an account"
	default:
		o = Outcome{Mechanism: External, Success: po.Success, Account: po.Account, Login: po.Login, Temporary: po.Temporary, Reason: po.Reason}
	}
	return o, true
}

// Close abandons the exchange if it has not ended; safe to call more than
// once and from any goroutine.
func (e *Exchange) Close() {
	e.cancel()
}

// end finishes the exchange with o.
func (e *Exchange) end(o Outcome) error {
	e.done = true
	e.cancel()
	o.Mechanism = e.mech
	return e.finish(o)
}

// call runs f, a call into the plugin, with the step deadline. A call that
// does not return in time abandons the exchange: canceling its context ends
// the plugin's stream, which makes f return.
func (e *Exchange) call(f func() error) error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	t := time.NewTimer(e.stepTimeout)
	defer t.Stop()
	select {
	case err := <-ch:
		return err
	case <-t.C:
		e.cancel()
		return fmt.Errorf("plugin did not answer within %v", e.stepTimeout)
	case <-e.ctx.Done():
		return fmt.Errorf("exchange ended: %w", context.Cause(e.ctx))
	}
}
