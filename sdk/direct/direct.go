// Package direct delivers messages straight to the mail exchangers of each
// recipient domain, as securely as the destination allows: the engine of the
// transport-direct plugin, reusable with any Dialer (e.g. a SOCKS5 proxy).
//
// For each recipient domain, Deliver:
//
//   - finds the destination hosts: the MX records by preference, equal ones
//     shuffled (RFC 5321 §5.1); without MX records the domain itself
//     (implicit MX, RFC 5321 §5.1); a null MX fails permanently (RFC 7505 §3);
//     an address literal "[192.0.2.1]" is that IP (RFC 5321 §4.1.3);
//   - chooses the TLS of each host: DANE (RFC 7672) when the MX lookup, the
//     host's addresses and its TLSA records are DNSSEC-authentic; otherwise
//     MTA-STS (RFC 8461) when the domain has a policy in mode enforce;
//     otherwise opportunistic STARTTLS (RFC 3207), retried once in plaintext
//     when the handshake fails (RFC 7435 §3);
//   - tries the hosts in order, with one SMTP transaction for all recipients
//     of the domain, until a host accepts the message or refuses it with a
//     5xx reply (RFC 5321 §5.1).
//
// Sessions are reused, as Postfix's connection cache does: after a
// delivery a session waits a few seconds for the next one to the same
// address protected the same way, whatever the recipient domain (many
// domains share their MX hosts), and answers RSET before it is used again.
//
// A verification failure under DANE or an enforced MTA-STS policy is
// temporary and never downgraded (RFC 7672 §2.2, RFC 8461 §5). REQUIRETLS
// messages (RFC 8689 §4.2.1) go only over TLS verified by DANE or MTA-STS.
package direct

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/dane"
	"github.com/switchyard-mta/switchyard/sdk/dnsresolve"
	"github.com/switchyard-mta/switchyard/sdk/mtasts"
	"github.com/switchyard-mta/switchyard/sdk/smtpclient"
)

// Config configures an Engine.
type Config struct {
	// Resolver answers all DNS queries; its TrustAD decides whether DANE
	// can apply. Required.
	Resolver *dnsresolve.Resolver
	// Port is the SMTP port of every destination host. Zero: 25.
	Port int
	// EHLO is the name announced in EHLO (RFC 5321 §4.1.1.1). Required.
	EHLO string
	// Dialer makes the TCP connections. Nil: a net.Dialer.
	Dialer smtpclient.Dialer
	// Timeouts bound each SMTP step; zero fields take smtpclient's defaults.
	Timeouts smtpclient.Timeouts
	// RootCAs verify certificates under MTA-STS. Nil: the system roots.
	RootCAs *x509.CertPool
	// MTASTS caches MTA-STS policies. Nil: MTA-STS is not used.
	MTASTS *mtasts.Cache
	// FetchPolicy fetches MTA-STS policies; see PolicyFetcher. Required
	// with MTASTS.
	FetchPolicy mtasts.FetchFunc
	// Log receives one line per domain and attempt. Nil: discarded.
	Log *slog.Logger
	// IdleTimeout is how long a session is kept for reuse after a
	// delivery. Zero: sessions are not reused.
	IdleTimeout time.Duration
	// MaxIdle bounds the sessions kept for reuse, to all hosts. Zero:
	// DefaultMaxIdle.
	MaxIdle int
}

// DefaultMaxIdle is the default of Config.MaxIdle.
const DefaultMaxIdle = 100

// reuseLimit is how long after it was set up a session may be reused, as
// Postfix's smtp_connection_reuse_time_limit: a server's limits on a
// session's length, and changes of its DNS, take effect within it.
const reuseLimit = 5 * time.Minute

// Engine delivers messages directly to recipient domains. It is safe for
// concurrent use.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	cache *smtpclient.Cache[*session] // Idle sessions, by address and security key.
}

// session is a connection ready for mail transactions.
type session struct {
	*smtpclient.Client
	tls      sdk.TLSUse
	created  time.Time
	fellBack bool // In plaintext after a failed TLS handshake.
}

// New returns an engine for cfg.
func New(cfg Config) *Engine {
	if cfg.Port == 0 {
		cfg.Port = 25
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxIdle == 0 {
		cfg.MaxIdle = DefaultMaxIdle
	}
	max := cfg.MaxIdle
	if cfg.IdleTimeout <= 0 {
		max = 0
	}
	quit := func(s *session) { s.Quit() }
	return &Engine{cfg: cfg, log: log, cache: smtpclient.NewCache(max, cfg.IdleTimeout, quit)}
}

// Close ends the sessions kept for reuse, and those of deliveries in
// progress as they end.
func (e *Engine) Close() { e.cache.Close() }

// PolicyFetcher returns a FetchFunc that fetches MTA-STS policies over HTTPS
// on port (0: 443), resolving mta-sts.<domain> with r and connecting through
// dialer (nil: a net.Dialer), verifying the server against roots (nil: the
// system roots), as RFC 8461 §3.3 requires.
func PolicyFetcher(r *dnsresolve.Resolver, dialer smtpclient.Dialer, roots *x509.CertPool, port int) mtasts.FetchFunc {
	if dialer == nil {
		dialer = &net.Dialer{}
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, p, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			ips, _, err := r.LookupIP(ctx, host)
			if err != nil {
				return nil, err
			}
			if len(ips) == 0 {
				return nil, fmt.Errorf("%s has no addresses", host)
			}
			var derr error
			for _, ip := range ips {
				c, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), p))
				if err == nil {
					return c, nil
				}
				derr = err
			}
			return nil, derr
		},
	}
	return mtasts.Fetcher(&http.Client{Transport: tr, Timeout: time.Minute}, port)
}

// Deliver makes one delivery attempt of req to the domain of each recipient.
// The result has one entry per recipient, in order. The message is read
// into memory first, since it may be sent to several hosts in turn; the
// error is a failure to read it.
func (e *Engine) Deliver(ctx context.Context, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	var msg []byte
	if req.Message != nil {
		b, err := io.ReadAll(req.Message)
		if err != nil {
			return nil, fmt.Errorf("reading message: %w", err)
		}
		msg = b
	}
	res := sdk.ResultAll(req, sdk.StatusTemporary, 0, "", "")
	var order []string
	groups := map[string][]int{}
	for i, r := range req.Recipients {
		at := strings.LastIndexByte(r.Address, '@')
		if at < 0 || !smtpclient.ValidPath(r.Address) {
			setResult(&res.Recipients[i], failure{sdk.StatusPermanent, 0, "5.1.3", "recipient address cannot be sent in SMTP", noReply})
			continue
		}
		d := strings.ToLower(r.Address[at+1:])
		if _, ok := groups[d]; !ok {
			order = append(order, d)
		}
		groups[d] = append(groups[d], i)
	}
	for _, d := range order {
		dl := &delivery{e: e, ctx: ctx, req: req, msg: msg, res: res, idx: groups[d], domain: d}
		dl.run()
	}
	return res, nil
}

// failure is an outcome for recipients, decided by a reply at stage or by
// none (noReply).
type failure struct {
	status sdk.Status
	code   int
	enh    string
	text   string
	stage  sdk.Stage
}

// noReply is the stage of a failure no reply decided.
const noReply sdk.Stage = 0

func setResult(r *sdk.RecipientResult, f failure) {
	r.Status, r.Code, r.EnhancedCode, r.Text, r.Stage = f.status, f.code, f.enh, f.text, f.stage
}

// delivery is the attempt for the recipients of one domain.
type delivery struct {
	e        *Engine
	ctx      context.Context
	req      *sdk.DeliverRequest
	msg      []byte
	res      *sdk.DeliverResult
	idx      []int // Indexes of the domain's recipients in req and res.
	domain   string
	expanded string // The domain after CNAMEs, from the MX lookup.
	done     map[int]bool
}

// destination is one host to try.
type destination struct {
	host   string // MX host name; empty for an address literal.
	ips    []netip.Addr
	ipAuth bool   // The MX lookup and the address records are authentic: DANE may apply.
	base   string // TLSA base domain: the CNAME-expanded host if authentic.
}

// security is how a connection to a host must be protected.
type security struct {
	mode         smtpclient.TLSMode
	config       *tls.Config
	verification sdk.Verification // When TLS is established.
	fallback     bool             // Retry in plaintext after a failed handshake (RFC 7435).
	// key is what a session set up for this must have been set up for to
	// be reused: the verification and what it checked against.
	key string
}

// run tries the domain's hosts in order and decides every recipient.
func (d *delivery) run() {
	start := time.Now()
	d.done = map[int]bool{}
	log := d.e.log.With(slog.String("queueid", d.req.QueueID), slog.String("domain", d.domain))
	host, ip, verif := "", "", sdk.VerifyNone
	defer func() {
		var n [3]int
		reason := ""
		for _, i := range d.idx {
			r := &d.res.Recipients[i]
			n[r.Status]++
			if r.Status != sdk.StatusDelivered && reason == "" {
				reason = fmt.Sprintf("%d %s %s", r.Code, r.EnhancedCode, r.Text)
			}
		}
		// The core logs each recipient's result: this line is for debugging.
		log.Debug("delivery attempt", slog.Int("attempt", d.req.Attempt), slog.String("host", host), slog.String("ip", ip),
			slog.String("verification", verif.String()), slog.Int("delivered", n[sdk.StatusDelivered]),
			slog.Int("temporary", n[sdk.StatusTemporary]), slog.Int("permanent", n[sdk.StatusPermanent]),
			slog.String("reason", reason), slog.Duration("duration", time.Since(start)))
	}()

	dests, policy, f := d.destinations(log)
	if f != nil {
		d.failPending(*f)
		return
	}
	var last *failure // The outcome if every host fails.
	for _, dst := range dests {
		sec, f := d.security(dst, policy, log)
		if f == nil && d.req.Options.RequireTLS && sec.verification != sdk.VerifyDANE && sec.verification != sdk.VerifyMTASTS {
			// RFC 8689 §4.2.1: only over TLS verified by DANE or MTA-STS.
			f = &failure{sdk.StatusPermanent, 0, "5.7.10", "REQUIRETLS: " + dst.name() + " offers no DANE or MTA-STS verified TLS", noReply}
		}
		if f != nil {
			log.Debug("host skipped", slog.String("host", dst.name()), slog.String("reason", f.text))
			last = worse(last, f)
			continue
		}
		for _, a := range alternate(dst.ips, d.req.Attempt) {
			f, final := d.attempt(dst, a, sec, log)
			host, ip = dst.name(), a.String()
			if final {
				for _, i := range d.idx {
					if d.res.Recipients[i].TLS.Verification > verif {
						verif = d.res.Recipients[i].TLS.Verification
					}
				}
				return
			}
			log.Debug("host failed", slog.String("host", dst.name()), slog.String("ip", a.String()), slog.String("reason", f.text))
			last = worse(last, &f)
		}
	}
	if last == nil {
		last = &failure{sdk.StatusTemporary, 0, "4.4.4", "no usable destination host", noReply}
	}
	d.failPending(*last)
}

// worse returns the failure that decides recipients when every host fails:
// the last temporary one, since another attempt may reach a host, else the
// last permanent one.
func worse(last, f *failure) *failure {
	if last == nil || last.status != sdk.StatusTemporary || f.status == sdk.StatusTemporary {
		return f
	}
	return last
}

// name is the host name, or the address literal.
func (dst *destination) name() string {
	if dst.host == "" && len(dst.ips) > 0 {
		return "[" + dst.ips[0].String() + "]"
	}
	return dst.host
}

// destinations returns the hosts to try in order, and the MTA-STS policy in
// force, or a failure for all recipients.
func (d *delivery) destinations(log *slog.Logger) ([]*destination, *mtasts.Policy, *failure) {
	r := d.e.cfg.Resolver
	if strings.HasPrefix(d.domain, "[") && strings.HasSuffix(d.domain, "]") {
		// Address literal (RFC 5321 §4.1.3): no DNS, hence no DANE or MTA-STS.
		lit := strings.TrimSuffix(strings.TrimPrefix(d.domain, "["), "]")
		if v6, ok := strings.CutPrefix(lit, "ipv6:"); ok {
			lit = v6
		}
		a, err := netip.ParseAddr(lit)
		if err != nil || a.Zone() != "" {
			return nil, nil, &failure{sdk.StatusPermanent, 0, "5.1.2", fmt.Sprintf("bad address literal %s", d.domain), noReply}
		}
		return []*destination{{ips: []netip.Addr{a}}}, nil, nil
	}
	mxs, mxres, err := r.LookupMX(d.ctx, d.domain)
	switch {
	case errors.Is(err, dnsresolve.ErrNullMX):
		return nil, nil, &failure{sdk.StatusPermanent, 0, "5.1.10", fmt.Sprintf("%s publishes a null MX: it accepts no mail (RFC 7505)", d.domain), noReply}
	case errors.Is(err, dnsresolve.ErrNotFound), errors.Is(err, dnsresolve.ErrInvalidName):
		return nil, nil, &failure{sdk.StatusPermanent, 0, "5.1.2", fmt.Sprintf("domain %s does not exist", d.domain), noReply}
	case err != nil:
		return nil, nil, &failure{sdk.StatusTemporary, 0, "4.4.3", fmt.Sprintf("MX lookup of %s: %v", d.domain, err), noReply}
	}
	ascii, _ := dnsresolve.ToASCII(d.domain)
	d.expanded = mxres.Name
	if len(mxs) == 0 {
		// Implicit MX (RFC 5321 §5.1): the domain itself, as if at preference 0.
		mxs = []dnsresolve.MX{{Host: ascii}}
	}

	var policy *mtasts.Policy
	if c := d.e.cfg.MTASTS; c != nil {
		lookup := func(ctx context.Context, name string) ([]string, error) {
			txt, _, err := r.LookupTXT(ctx, strings.TrimSuffix(name, "."))
			if errors.Is(err, dnsresolve.ErrNotFound) {
				return nil, fmt.Errorf("%w: %v", mtasts.ErrNoRecord, err)
			}
			return txt, err
		}
		p, src, err := c.Get(d.ctx, ascii, lookup, d.e.cfg.FetchPolicy, time.Now())
		switch {
		case err != nil:
			if !errors.Is(err, mtasts.ErrNoPolicy) || !errors.Is(err, mtasts.ErrNoRecord) {
				log.Info("no mta-sts policy", slog.Any("err", err))
			}
		case p.Mode == mtasts.ModeNone:
		default:
			log.Debug("mta-sts policy", slog.String("mode", string(p.Mode)), slog.Any("source", src))
			policy = p
		}
	}

	var dests []*destination
	var last *failure
	for _, mx := range mxs {
		ips, ipres, err := r.LookupIP(d.ctx, mx.Host)
		if err != nil || len(ips) == 0 {
			st, enh := sdk.StatusTemporary, "4.4.3"
			if err == nil || errors.Is(err, dnsresolve.ErrNotFound) {
				// Permanent only if no other host does better.
				st, enh = sdk.StatusPermanent, "5.4.4" // Unable to route (RFC 3463 §3.5).
			}
			f := &failure{st, 0, enh, fmt.Sprintf("address lookup of %s: no addresses", mx.Host), noReply}
			if err != nil {
				f.text = fmt.Sprintf("address lookup of %s: %v", mx.Host, err)
			}
			last = worse(last, f)
			continue
		}
		dst := &destination{host: mx.Host, ips: ips, base: mx.Host}
		// RFC 7672 §2.2.1: DANE only when the MX lookup (or, for an
		// implicit MX, its denial) and the host's addresses are authentic.
		dst.ipAuth = ipres.Authentic && mxres.Authentic
		if dst.ipAuth && ipres.Name != "" {
			// RFC 7672 §2.2.2: a signed CNAME chain's target is the base.
			dst.base = ipres.Name
		}
		dests = append(dests, dst)
	}
	if len(dests) == 0 {
		if last == nil {
			last = &failure{sdk.StatusTemporary, 0, "4.4.4", "no destination host", noReply}
		}
		return nil, nil, last
	}
	return dests, policy, nil
}

// security returns how to protect connections to dst, or a failure that
// makes the host unusable.
func (d *delivery) security(dst *destination, policy *mtasts.Policy, log *slog.Logger) (security, *failure) {
	if dst.ipAuth {
		// RFC 7672 §2.2.2: the TLSA base is the CNAME-expanded host name,
		// else the original one.
		bases := []string{dst.base}
		if dst.base != dst.host {
			bases = append(bases, dst.host)
		}
		for _, base := range bases {
			recs, tres, err := d.e.cfg.Resolver.LookupTLSA(d.ctx, d.e.cfg.Port, "tcp", base)
			switch {
			case err != nil && !errors.Is(err, dnsresolve.ErrNotFound):
				// RFC 7672 §2.2.1: a failed TLSA lookup makes the host unusable.
				return security{}, &failure{sdk.StatusTemporary, 0, "4.7.5", fmt.Sprintf("TLSA lookup for %s: %v", base, err), noReply}
			case err != nil || !tres.Authentic || len(recs) == 0:
				continue
			case !dane.Usable(recs):
				// RFC 7672 §2.2: TLS required, not verified.
				return security{mode: smtpclient.TLSStartTLS, config: &tls.Config{ServerName: base, InsecureSkipVerify: true}, verification: sdk.VerifyOpportunistic, key: "tls " + base}, nil
			}
			// RFC 7672 §3.2.2: the names a DANE-TA leaf may match; SNI is
			// the TLSA base (§8.1).
			allowed := []string{d.domain, d.expanded, dst.host, base}
			return security{mode: smtpclient.TLSStartTLS, config: dane.Config(recs, allowed, base), verification: sdk.VerifyDANE, key: daneKey(base, recs, allowed)}, nil
		}
	}
	// DANE applies first; MTA-STS only to hosts without it (RFC 8461 §2).
	if policy != nil && !policy.MatchMX(dst.host) {
		if policy.Enforce() {
			// RFC 8461 §4.1: only MX hosts the policy lists.
			return security{}, &failure{sdk.StatusTemporary, 0, "4.7.5", fmt.Sprintf("MX host %s is not allowed by the MTA-STS policy of %s", dst.host, d.domain), noReply}
		}
		log.Warn("mta-sts testing: MX host not in policy", slog.String("host", dst.host))
	}
	if policy != nil && policy.Enforce() {
		// RFC 8461 §4.2: PKIX-verified STARTTLS with the MX host name.
		return security{mode: smtpclient.TLSStartTLS, config: &tls.Config{ServerName: dst.host, RootCAs: d.e.cfg.RootCAs}, verification: sdk.VerifyMTASTS, key: "mta-sts " + dst.host}, nil
	}
	if policy != nil {
		log.Info("mta-sts testing: delivering with opportunistic TLS", slog.String("host", dst.name()))
	}
	cfg := &tls.Config{ServerName: dst.host, InsecureSkipVerify: true}
	return security{mode: smtpclient.TLSOpportunistic, config: cfg, verification: sdk.VerifyOpportunistic, fallback: true, key: "opportunistic " + dst.host}, nil
}

// daneKey is the security key of DANE verification against recs: a
// session verified with the same records is verified for any domain, but
// a DANE-TA record's check of names depends on the allowed ones.
func daneKey(base string, recs []dane.TLSA, allowed []string) string {
	var b strings.Builder
	b.WriteString("dane " + base)
	ta := false
	for _, r := range recs {
		b.WriteString(" " + r.String())
		ta = ta || r.Usage == dane.UsageDANETA
	}
	if ta {
		b.WriteString(" names " + strings.Join(allowed, " "))
	}
	return b.String()
}

// attempt delivers to one address of dst, on a session kept for reuse if
// there is one. final reports that every recipient is decided; otherwise f
// is why the host failed and the next is tried.
func (d *delivery) attempt(dst *destination, a netip.Addr, sec security, log *slog.Logger) (f failure, final bool) {
	addr := net.JoinHostPort(a.String(), strconv.Itoa(d.e.cfg.Port))
	for _, i := range d.idx {
		if !d.done[i] {
			r := &d.res.Recipients[i]
			r.RemoteHost, r.RemoteIP, r.TLS = dst.name(), a.String(), sdk.TLSUse{}
		}
	}
	key := addr + " " + sec.key
	s, unbind := d.reuse(key)
	if s == nil {
		var f *failure
		if s, f = d.dial(dst, a, addr, sec, log); f != nil {
			return *f, false
		}
		unbind = s.Bind(d.ctx)
		if s.fellBack {
			key = "" // Plaintext after a failed handshake: not for reuse.
		}
	}
	for _, i := range d.idx {
		if !d.done[i] {
			d.res.Recipients[i].TLS = s.tls
		}
	}
	f, final, keep := d.transact(s.Client, dst.name())
	switch {
	case !unbind():
		s.Close()
	case keep && key != "":
		d.e.cache.Put(key, s)
	default:
		s.Quit()
	}
	return f, final
}

// reuse returns a session of key kept for reuse that answers RSET, bound
// to the delivery's context; nil if there is none.
func (d *delivery) reuse(key string) (*session, func() bool) {
	for {
		s, ok := d.e.cache.Take(key)
		if !ok {
			return nil, nil
		}
		if time.Since(s.created) > reuseLimit {
			go s.Quit()
			continue
		}
		unbind := s.Bind(d.ctx)
		if r, err := s.Reset(); err == nil && r.Code == 250 {
			return s, unbind
		}
		// Closed by the server while idle, most likely: not the message's
		// fault, so try the next one.
		unbind()
		s.Close()
	}
}

// dial sets up a session with address a of dst, protected as sec says.
func (d *delivery) dial(dst *destination, a netip.Addr, addr string, sec security, log *slog.Logger) (*session, *failure) {
	cc := smtpclient.Config{EHLO: d.e.cfg.EHLO, TLS: sec.mode, TLSConfig: sec.config, Dialer: d.e.cfg.Dialer, Timeouts: d.e.cfg.Timeouts}
	c, err := smtpclient.Dial(d.ctx, addr, &cc)
	fellBack := false
	if err != nil && errors.Is(err, smtpclient.ErrTLS) && sec.fallback {
		// RFC 7435 §3: without DANE or MTA-STS, plaintext beats no delivery.
		log.Info("TLS handshake failed; retrying without TLS", slog.String("host", dst.name()), slog.Any("err", err))
		cc.TLS, cc.TLSConfig = smtpclient.TLSNone, nil
		c, err = smtpclient.Dial(d.ctx, addr, &cc)
		fellBack = true
	}
	if err != nil {
		var re *smtpclient.ReplyError
		if errors.As(err, &re) {
			stage := sdk.StageHelo // EHLO, STARTTLS.
			if re.Command == "greeting" {
				stage = sdk.StageConnect
			}
			return nil, &failure{sdk.StatusTemporary, re.Reply.Code, re.Reply.EnhancedCode, fmt.Sprintf("%s (%s) refused %s: %s", dst.name(), a, re.Command, re.Reply.Text), stage}
		}
		text := fmt.Sprintf("connecting to %s (%s): %v", dst.name(), a, err)
		if errors.Is(err, smtpclient.ErrTLS) || errors.Is(err, smtpclient.ErrNoSTARTTLS) {
			return nil, &failure{sdk.StatusTemporary, 0, "4.7.5", text, noReply}
		}
		return nil, &failure{sdk.StatusTemporary, 0, "4.4.1", text, noReply}
	}
	s := &session{Client: c, created: time.Now(), fellBack: fellBack}
	if cs, ok := c.TLSConnectionState(); ok {
		s.tls = sdk.TLSUse{Verification: sec.verification, Version: tls.VersionName(cs.Version), Cipher: tls.CipherSuiteName(cs.CipherSuite)}
	}
	return s, nil
}

// transact runs the mail transaction (RFC 5321 §3.3) for the undecided
// recipients. keep reports that the session can be used again: no I/O
// error, and no 421 reply (RFC 5321 §3.8: the server is closing).
func (d *delivery) transact(c *smtpclient.Client, host string) (f failure, final, keep bool) {
	req := d.req
	o := &req.Options
	if f := d.unsupported(c, host); f != nil {
		d.failPending(*f)
		return failure{}, true, true
	}
	r, err := c.Mail(req.From, &smtpclient.MailOptions{Size: req.Size, Body: o.Body, SMTPUTF8: o.SMTPUTF8, RequireTLS: o.RequireTLS, DSNReturn: o.DSNReturn, EnvelopeID: o.EnvelopeID})
	if err != nil {
		return connFailure(host, "MAIL FROM", err), false, false
	}
	if !r.Positive() {
		f := replyFailure(r, host, "MAIL FROM")
		if f.status == sdk.StatusPermanent {
			// A 5xx ends the search for a host (RFC 5321 §5.1).
			d.failPending(f)
			return f, true, r.Code != 421
		}
		return f, false, r.Code != 421
	}
	var accepted []int
	for _, i := range d.idx {
		if d.done[i] {
			continue
		}
		rc := req.Recipients[i]
		r, err := c.Rcpt(rc.Address, &smtpclient.RcptOptions{Notify: rc.Notify, ORcpt: rc.ORcpt})
		if err != nil {
			return connFailure(host, "RCPT TO", err), false, false
		}
		switch {
		case r.Code == 421:
			return replyFailure(r, host, "RCPT TO"), false, false
		case r.Positive():
			accepted = append(accepted, i)
		default:
			d.set(i, replyFailure(r, host, "RCPT TO"))
		}
	}
	if len(accepted) == 0 {
		return failure{}, true, true
	}
	if strings.EqualFold(o.Body, "BINARYMIME") {
		r, err = c.Bdat(bytes.NewReader(d.msg))
	} else {
		r, err = c.Data()
		if err == nil && r.Code != 354 {
			f := replyFailure(r, host, "DATA")
			for _, i := range accepted {
				d.set(i, f)
			}
			return failure{}, true, r.Code != 421
		}
		if err == nil {
			r, err = c.WriteData(bytes.NewReader(d.msg))
		}
	}
	if err != nil {
		return connFailure(host, "message data", err), false, false
	}
	for _, i := range accepted {
		d.set(i, replyFailure(r, host, "end of data"))
	}
	return failure{}, d.allDone(), r.Code != 421
}

// unsupported returns a permanent failure if the message needs an extension
// c does not offer; no downgrade is done.
func (d *delivery) unsupported(c *smtpclient.Client, host string) *failure {
	o := d.req.Options
	if _, ok := c.Extension("SMTPUTF8"); o.SMTPUTF8 && !ok {
		return &failure{sdk.StatusPermanent, 0, "5.6.7", host + " does not offer SMTPUTF8 (RFC 6531 §3.2)", noReply}
	}
	if _, ok := c.Extension("REQUIRETLS"); o.RequireTLS && !ok {
		return &failure{sdk.StatusPermanent, 0, "5.7.30", host + " does not offer REQUIRETLS (RFC 8689 §5)", noReply}
	}
	if strings.EqualFold(o.Body, "BINARYMIME") {
		_, bin := c.Extension("BINARYMIME")
		_, chunk := c.Extension("CHUNKING")
		if !bin || !chunk {
			return &failure{sdk.StatusPermanent, 0, "5.6.3", host + " does not offer BINARYMIME with CHUNKING (RFC 3030 §3)", noReply}
		}
	}
	if _, ok := c.Extension("8BITMIME"); !ok && strings.EqualFold(o.Body, "8BITMIME") && !sevenBit(d.msg) {
		// RFC 6152 §3: 8-bit data only to a server offering 8BITMIME; no
		// conversion is done.
		return &failure{sdk.StatusPermanent, 0, "5.6.3", host + " does not offer 8BITMIME and the message has 8-bit data (RFC 6152 §3)", noReply}
	}
	if v, ok := c.Extension("SIZE"); ok {
		if limit, err := strconv.ParseInt(v, 10, 64); err == nil && limit > 0 && d.req.Size > limit {
			return &failure{sdk.StatusPermanent, 0, "5.3.4", fmt.Sprintf("message of %d bytes exceeds the limit of %s, %d (RFC 1870 §6.1)", d.req.Size, host, limit), noReply}
		}
	}
	return nil
}

// replyFailure is what reply r to stage means (RFC 5321 §4.2.1).
func replyFailure(r smtpclient.Reply, host, stage string) failure {
	st := sdk.StatusTemporary
	switch {
	case r.Positive() && stage == "end of data":
		st = sdk.StatusDelivered
	case r.Code/100 == 5:
		st = sdk.StatusPermanent
	}
	text := r.Text
	if stage != "end of data" || st != sdk.StatusDelivered {
		text = host + " replied to " + stage + ": " + r.Text
	}
	return failure{st, r.Code, r.EnhancedCode, text, replyStages[stage]}
}

// replyStages are the stages of the replies replyFailure is given.
var replyStages = map[string]sdk.Stage{"MAIL FROM": sdk.StageMail, "RCPT TO": sdk.StageRcpt, "DATA": sdk.StageData, "end of data": sdk.StageData}

func connFailure(host, stage string, err error) failure {
	return failure{sdk.StatusTemporary, 0, "4.4.2", fmt.Sprintf("connection to %s failed during %s: %v", host, stage, err), noReply}
}

func (d *delivery) set(i int, f failure) {
	setResult(&d.res.Recipients[i], f)
	d.done[i] = true
}

func (d *delivery) failPending(f failure) {
	for _, i := range d.idx {
		if !d.done[i] {
			d.set(i, f)
		}
	}
}

func (d *delivery) allDone() bool {
	for _, i := range d.idx {
		if !d.done[i] {
			return false
		}
	}
	return true
}

// alternate orders the addresses of a dual-stack host with the families
// interleaved, IPv6 first on odd attempts and IPv4 first on even ones, so that
// successive attempts do not all fail on a broken family (RFC 6555 §4, RFC
// 5321 §5.1).
func alternate(ips []netip.Addr, attempt int) []netip.Addr {
	var v4, v6 []netip.Addr
	for _, a := range ips {
		if a.Unmap().Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	first, second := v6, v4
	if attempt%2 == 0 {
		first, second = v4, v6
	}
	out := make([]netip.Addr, 0, len(ips))
	for i := 0; i < len(first) || i < len(second); i++ {
		if i < len(first) {
			out = append(out, first[i])
		}
		if i < len(second) {
			out = append(out, second[i])
		}
	}
	return out
}

func sevenBit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
