package policymsgauth

import (
	"context"
	"net"
	"net/netip"
	"strings"

	"blitiri.com.ar/go/spf"

	"github.com/switchyard-mta/switchyard/sdk/dnsresolve"
)

// spfResult is the SPF verdict on one identity (RFC 7208 §2.6).
type spfResult struct {
	value     spf.Result
	domain    string // The identity's domain: A-labels if valid, else as given.
	authentic bool   // Every DNS answer of the evaluation was DNSSEC-authentic.
	err       error  // What the evaluation said, for the log.
}

// spfDomain returns d in lowercase A-labels if it is a domain SPF can
// evaluate: a valid, multi-label name (RFC 7208 §4.3); an address literal
// or a single label is not.
func spfDomain(d string) (string, bool) {
	a, ok := asciiDomain(d)
	if !ok || !strings.Contains(a, ".") {
		return d, false
	}
	return a, true
}

// checkSPF evaluates check_host() (RFC 7208 §4) for the client ip and the
// identity sender, whose domain is domain, with helo for macros.
func checkSPF(ctx context.Context, r *dnsresolve.Resolver, ip netip.Addr, helo, local, domain string) spfResult {
	d, ok := spfDomain(domain)
	if !ok {
		// A malformed or single-label domain: "none" (RFC 7208 §4.3).
		return spfResult{value: spf.None, domain: d}
	}
	l := &lookups{r: r}
	h, _ := spfDomain(helo)
	res, err := spf.CheckHostWithSender(net.IP(ip.AsSlice()), h, local+"@"+d,
		spf.WithContext(ctx), spf.WithResolver(l))
	return spfResult{value: res, domain: d, authentic: l.authentic(), err: err}
}

// checkSPFIdentities evaluates the MAIL FROM identity and the HELO identity
// (RFC 7208 §2.3, §2.4). For the null reverse-path, the MAIL FROM identity
// is postmaster@HELO (RFC 7208 §2.4), whose result is the HELO's.
func checkSPFIdentities(ctx context.Context, r *dnsresolve.Resolver, ip netip.Addr, helo, mailFrom string) (mfrom, hello spfResult) {
	done := make(chan spfResult, 1)
	go func() { done <- checkSPF(ctx, r, ip, helo, "postmaster", helo) }()
	if mailFrom == "" {
		hello = <-done
		return hello, hello
	}
	at := strings.LastIndexByte(mailFrom, '@')
	if at < 0 {
		mfrom = spfResult{value: spf.None}
	} else {
		mfrom = checkSPF(ctx, r, ip, helo, mailFrom[:at], mailFrom[at+1:])
	}
	return mfrom, <-done
}
