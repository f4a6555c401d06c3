package policymsgauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
)

const (
	// sizeSlack is how much more than CheckRequest.Size a message may be.
	sizeSlack = 64 << 10
	// maxUnsized bounds a message whose size the request does not give.
	maxUnsized = 64 << 20
)

var errTooLarge = errors.New("policy-msgauth: message larger than its announced size")

// checker is the plugin's sdk.Checker: settings per instance.
type checker struct {
	log *slog.Logger
	// percent draws the number in [0,100) that pct= is compared with
	// (RFC 7489 §6.6.4); tests replace it.
	percent func() int

	mu        sync.Mutex
	hostname  string               // From the plugin-wide Configure.
	instances map[string]*settings // By [policies.NAME].
}

var (
	_ sdk.Checker    = (*checker)(nil)
	_ sdk.Configurer = (*checker)(nil)
)

func newChecker(log *slog.Logger) *checker {
	return &checker{
		log:       log,
		percent:   func() int { return rand.IntN(100) },
		instances: map[string]*settings{},
	}
}

// Configure takes the plugin-wide table, which has no keys, and each
// instance's table (see options).
func (c *checker) Configure(ctx context.Context, cfg *sdk.Configuration) error {
	switch cfg.Kind {
	case sdk.KindPlugin:
		var none struct{}
		if err := cfg.Decode(&none); err != nil {
			return err
		}
		c.mu.Lock()
		c.hostname = cfg.Hostname
		c.mu.Unlock()
		return nil
	case sdk.KindPolicy:
		hostname := cfg.Hostname
		if hostname == "" {
			c.mu.Lock()
			hostname = c.hostname
			c.mu.Unlock()
		}
		s, err := parseSettings(cfg, hostname)
		if err != nil || cfg.CheckOnly {
			return err
		}
		c.mu.Lock()
		c.instances[cfg.Instance] = s
		c.mu.Unlock()
		return nil
	}
	return sdk.ConfigErrors{{Msg: "policy-msgauth is configured only as a policy"}}
}

// Check runs every check of the message at StageData; at other stages,
// and for submission, it has no opinion.
func (c *checker) Check(ctx context.Context, req *sdk.CheckRequest) (sdk.Verdict, error) {
	if req.Stage != sdk.StageData || req.Submission {
		return sdk.Verdict{}, nil
	}
	c.mu.Lock()
	s := c.instances[req.Instance]
	c.mu.Unlock()
	if s == nil {
		return sdk.Verdict{}, fmt.Errorf("policy-msgauth: instance %q is not configured", req.Instance)
	}
	ip, err := remoteIP(req.Conn.RemoteAddr)
	if err != nil {
		return sdk.Verdict{}, err
	}
	msg, err := readMessage(req.Message, req.Size)
	if err != nil {
		return sdk.Verdict{}, err
	}
	return c.check(ctx, s, req, ip, msg), nil
}

// remoteIP returns the client's address from "ip:port" (or a bare ip), an
// IPv4-mapped address as IPv4.
func remoteIP(addr string) (netip.Addr, error) {
	ap, err := netip.ParseAddrPort(addr)
	ip := ap.Addr()
	if err != nil {
		if ip, err = netip.ParseAddr(addr); err != nil {
			return netip.Addr{}, fmt.Errorf("policy-msgauth: client address %q is not ip:port", addr)
		}
	}
	return ip.Unmap().WithZone(""), nil
}

// readMessage reads the message into memory, up to its announced size and
// sizeSlack more.
func readMessage(r io.Reader, size int64) ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	limit := int64(maxUnsized)
	if size > 0 {
		// The core has bounded the size (limits.max_message_size).
		limit = min(size, 1<<40) + sizeSlack
	}
	// Room for the announced size and the read that finds the end: without
	// it, ReadFrom doubles the buffer just to see EOF.
	var buf bytes.Buffer
	buf.Grow(int(min(max(size, 0), maxUnsized)) + bytes.MinRead) // More as it comes.
	if _, err := buf.ReadFrom(io.LimitReader(r, limit+1)); err != nil {
		return nil, fmt.Errorf("policy-msgauth: reading message: %w", err)
	}
	if int64(buf.Len()) > limit {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

// budget is how long the DNS work of a check may take: the instance's
// timeout, within the caller's deadline with a tenth of it left to answer.
func budget(ctx context.Context, timeout time.Duration) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return min(timeout, time.Until(d)*9/10)
	}
	return timeout
}

// lookupPool runs the DNS checks of messages alongside their DKIM
// verification: three per message, for as many messages as the core checks
// at once (a few per core).
var lookupPool = newPool(24)

// check verifies msg from ip and decides.
func (c *checker) check(ctx context.Context, s *settings, req *sdk.CheckRequest, ip netip.Addr, msg []byte) sdk.Verdict {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, budget(ctx, s.timeout))
	defer cancel()

	hdr := parseHeader(msg)
	from, fromErr := authorDomain(hdr.fields)

	var (
		wg           sync.WaitGroup
		mfrom, hello spfResult
		dkims        []dkimResult
		moreSigs     bool
		dkimLookups  = &lookups{r: s.resolver}
		rev          iprevResult
		policy       = dmarcLookup{status: "permerror"}
	)
	// The lookups run alongside; the verification of DKIM, mostly CPU,
	// runs here, on the call's goroutine (a stream worker's, whose stack
	// has grown already: see sdk.Serve), not on a new one.
	lookupPool.Go(&wg, func() { mfrom, hello = checkSPFIdentities(ctx, s.resolver, ip, req.Helo, req.From) })
	lookupPool.Go(&wg, func() { rev = checkIPRev(ctx, s.resolver, ip) })
	if fromErr == nil {
		lookupPool.Go(&wg, func() { policy = lookupDMARC(ctx, s.resolver, from) })
	} else {
		policy.reason = fromErr.Error() // RFC 7489 §6.6.1.
	}
	dkims, moreSigs = verifyDKIM(ctx, dkimLookups, msg, hdr, s.maxSignatures)
	wg.Wait()
	dmarc := evaluateDMARC(from, policy, mfrom, dkims, c.percent)
	if dmarc.disposition == policyReject && s.dmarcReject == sdk.ActionQuarantine {
		dmarc.disposition = policyQuarantine // dmarc_fail = "quarantine".
	}

	v := sdk.Verdict{Action: sdk.ActionContinue}
	switch dmarc.disposition {
	case policyReject:
		// RFC 7489 §10.3 suggests 550 5.7.1.
		v.Action, v.Code, v.EnhancedCode = sdk.ActionReject, 550, "5.7.1"
		v.Text = fmt.Sprintf("message rejected by the DMARC policy of %s", from)
	case policyQuarantine:
		v.Action = sdk.ActionQuarantine
		v.Text = fmt.Sprintf("DMARC policy of %s: quarantine", from)
	}
	v.PrependHeaders = []string{formatResults(s.hostname, authResults(req, ip, mfrom, hello, dkims, dmarc, rev))}
	for _, n := range ownResults(hdr.fields, s.hostname) {
		v.DeleteHeaders = append(v.DeleteHeaders, sdk.HeaderRef{Name: authResultsName, Index: n})
	}

	if !s.logChecks {
		return v
	}
	dkimValues := make([]string, len(dkims))
	for i, d := range dkims {
		dkimValues[i] = d.value + ":" + d.domain
	}
	c.log.Info("message checked",
		slog.String("instance", req.Instance),
		slog.String("remote", ip.String()),
		slog.String("action", v.Action.String()),
		slog.String("spf", string(mfrom.value)),
		slog.String("spf_domain", mfrom.domain),
		slog.Bool("spf_dnssec", mfrom.authentic),
		slog.String("spf_helo", string(hello.value)),
		slog.String("dkim", strings.Join(dkimValues, ",")),
		slog.Bool("dkim_more", moreSigs),
		slog.Bool("dkim_dnssec", dkimLookups.authentic()),
		slog.String("dmarc", dmarc.status),
		slog.String("from_domain", from),
		slog.String("dmarc_policy", dmarc.policy),
		slog.String("dmarc_disposition", dmarc.disposition),
		slog.Bool("dmarc_dnssec", dmarc.authentic),
		slog.String("iprev", rev.value),
		slog.String("iprev_name", rev.name),
		slog.Bool("iprev_dnssec", rev.authentic),
		slog.Int("deleted_results", len(v.DeleteHeaders)),
		slog.Duration("duration", time.Since(start)))
	return v
}

// maxHeloShown bounds the HELO name as reported.
const maxHeloShown = 255

// authResults lists the results for the Authentication-Results field.
func authResults(req *sdk.CheckRequest, ip netip.Addr, mfrom, hello spfResult, dkims []dkimResult, dmarc dmarcOutcome, rev iprevResult) []result {
	helo := hello.domain
	if len(helo) > maxHeloShown {
		helo = helo[:maxHeloShown]
	}
	mailFrom := mfrom.domain
	if req.From == "" {
		mailFrom = "postmaster@" + helo // RFC 7208 §2.4.
	}
	rs := []result{
		{method: "spf", value: string(mfrom.value), props: []prop{{"smtp.mailfrom", mailFrom}}},
		{method: "spf", value: string(hello.value), props: []prop{{"smtp.helo", helo}}},
	}
	if len(dkims) == 0 {
		rs = append(rs, result{method: "dkim", value: "none"})
	}
	for _, d := range dkims {
		rs = append(rs, result{method: "dkim", value: d.value, reason: d.reason, props: []prop{
			{"header.d", d.domain}, {"header.s", d.selector}, {"header.a", d.algorithm}, {"header.b", d.sigPrefix},
		}})
	}
	r := result{method: "dmarc", value: dmarc.status, reason: dmarc.reason, props: []prop{{"header.from", dmarc.from}}}
	if dmarc.policy != "" {
		r.comment = "p=" + dmarc.policy + " dis=" + dmarc.disposition
	}
	rs = append(rs, r)
	rs = append(rs, result{method: "iprev", value: rev.value, comment: rev.name, props: []prop{{"policy.iprev", ip.String()}}})
	return rs
}
