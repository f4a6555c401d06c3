// Package dnsresolve is a DNSSEC-aware stub resolver for mail delivery, on
// github.com/miekg/dns.
//
// Queries carry EDNS0 (RFC 6891) with a 1232-byte UDP payload size and the DO
// bit (RFC 3225) and are retried over TCP when the answer is truncated
// (RFC 7766 §5). The resolver does not validate DNSSEC itself: an answer is
// authentic when the recursive resolver set the AD bit (RFC 4035 §3.2.3) and
// that resolver is trusted, which is what DANE requires (RFC 6698 §4.1,
// RFC 7672 §2.1). CNAMEs are followed and every answer reports the final name
// and whether every step was authentic (RFC 7672 §2.2.2).
//
// Outcomes callers branch on: ErrNotFound (NXDOMAIN), an empty result with no
// error (NODATA: the name exists without records of that type), ErrTemporary
// (SERVFAIL, timeouts, network errors), and for MX, ErrNullMX (RFC 7505).
// Names may be given as U-labels; they are queried as A-labels (RFC 5891).
package dnsresolve

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"

	"github.com/switchyard-mta/switchyard/sdk/dane"
)

// Errors callers branch on with errors.Is.
var (
	// ErrNotFound: the name does not exist (NXDOMAIN); permanent.
	ErrNotFound = errors.New("dnsresolve: name not found")
	// ErrTemporary: SERVFAIL, another error rcode, a timeout or a network
	// error; try again later.
	ErrTemporary = errors.New("dnsresolve: temporary failure")
	// ErrNullMX: the domain publishes a null MX and accepts no mail
	// (RFC 7505 §3); permanent.
	ErrNullMX = errors.New("dnsresolve: null mx: domain accepts no mail")
	// ErrInvalidName: the name cannot be converted to A-labels; permanent.
	ErrInvalidName = errors.New("dnsresolve: invalid domain name")
)

const (
	// udpSize is the advertised EDNS0 payload size, the DNS flag day 2020
	// value that avoids IP fragmentation.
	udpSize = 1232
	// maxQueries bounds the queries for one lookup while following CNAMEs.
	maxQueries = 8
	// DefaultTimeout is the time for one exchange when Resolver.Timeout is zero.
	DefaultTimeout = 5 * time.Second
)

// idnaProfile converts U-labels to A-labels (RFC 5891 §5) like idna.Lookup,
// but allows underscores, as in "_mta-sts" and "_25._tcp" labels.
var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false), idna.StrictDomainName(false))

// Resolver sends queries to one recursive resolver. Its zero value is not
// usable; use New or set Server.
type Resolver struct {
	Server string // host:port of the recursive resolver.
	// TrustAD makes answers with the AD bit authentic: set it only for a
	// validating resolver reached over a trusted path, such as loopback.
	TrustAD bool
	Timeout time.Duration // Per exchange; zero: DefaultTimeout.
	// Cache, if set, keeps answers for their TTL and answers from it.
	Cache *Cache
}

// New returns a resolver for server (host:port, or a host for port 53). An
// empty server means the first nameserver of /etc/resolv.conf. A nil trustAD
// means: trust the AD bit only from a loopback server.
func New(server string, trustAD *bool) (*Resolver, error) {
	return newResolver(server, trustAD, "/etc/resolv.conf")
}

func newResolver(server string, trustAD *bool, resolvConf string) (*Resolver, error) {
	if server == "" {
		cc, err := dns.ClientConfigFromFile(resolvConf)
		if err != nil {
			return nil, fmt.Errorf("dnsresolve: reading %s: %w", resolvConf, err)
		}
		if len(cc.Servers) == 0 {
			return nil, fmt.Errorf("dnsresolve: no nameserver in %s", resolvConf)
		}
		server = net.JoinHostPort(cc.Servers[0], cc.Port)
	}
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		host, port = strings.Trim(server, "[]"), "53"
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil || host == "" {
		return nil, fmt.Errorf("dnsresolve: invalid server address %q", server)
	}
	r := &Resolver{Server: net.JoinHostPort(host, port)}
	if trustAD != nil {
		r.TrustAD = *trustAD
	} else {
		ip, err := netip.ParseAddr(host)
		r.TrustAD = host == "localhost" || err == nil && ip.IsLoopback()
	}
	return r, nil
}

// Result describes how an answer was obtained.
type Result struct {
	// Name is the name the records belong to after following CNAMEs, in
	// lowercase A-labels without a trailing dot: the "CNAME-expanded" name of
	// RFC 7672 §2.2.2.
	Name string
	// Authentic: every response on the way had the AD bit and TrustAD is set.
	Authentic bool
}

// ToASCII returns name in lowercase A-labels without a trailing dot
// (RFC 5891 §5); it fails with ErrInvalidName.
func ToASCII(name string) (string, error) {
	n := strings.TrimSuffix(name, ".")
	if plainName(n) {
		return strings.ToLower(n), nil
	}
	a, err := idnaProfile.ToASCII(n)
	if err != nil || a == "" {
		return "", fmt.Errorf("%w: %q: %v", ErrInvalidName, name, err)
	}
	if _, ok := dns.IsDomainName(a); !ok {
		return "", fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	return strings.ToLower(a), nil
}

// plainName reports whether name is a host name the IDNA mapping would
// only lowercase: labels of 1–63 ASCII letters, digits, hyphens and
// underscores, none starting or ending with a hyphen, none with hyphens as
// its third and fourth octets (as "xn--" has), 253 octets in all. Almost
// every name looked up is one; checking is much cheaper than the mapping.
func plainName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '.' {
			c := name[i] | 0x20 // Lowercase for letters.
			if !(c >= 'a' && c <= 'z' || name[i] >= '0' && name[i] <= '9' || name[i] == '-' || name[i] == '_') {
				return false
			}
			continue
		}
		l := name[start:i]
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' || len(l) >= 4 && l[2] == '-' && l[3] == '-' {
			return false
		}
		start = i + 1
	}
	return true
}

// MX is a mail exchanger.
type MX struct {
	Host string // Lowercase A-labels, no trailing dot.
	Pref uint16
}

// LookupMX returns the MX records of domain sorted by preference, equal
// preferences in random order (RFC 5321 §5.1). No records and no error means
// the domain has none: the caller uses the domain itself (implicit MX,
// RFC 5321 §5.1). A null MX gives ErrNullMX (RFC 7505 §3). Records whose
// target is not a host name are skipped; if no record remains, the error
// wraps ErrTemporary.
func (r *Resolver) LookupMX(ctx context.Context, domain string) ([]MX, Result, error) {
	rrs, res, err := r.lookupName(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, res, err
	}
	var mxs []MX
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		mxs = append(mxs, MX{Host: name(mx.Mx), Pref: mx.Preference})
	}
	if len(mxs) == 1 && mxs[0].Host == "" {
		return nil, res, fmt.Errorf("%w: %s", ErrNullMX, res.Name)
	}
	// A "." next to other MX records breaks RFC 7505 §3; it names no host.
	// Nor does a name with octets no host name has (RFC 5321 §2.3.5),
	// which miekg/dns gives escaped (`mx\ a`, `\195\169`): such records
	// are skipped, as Go's own resolver skips them.
	mxs = slices.DeleteFunc(mxs, func(mx MX) bool { return !validName(mx.Host) })
	if len(mxs) == 0 && len(rrs) > 0 {
		// Not "no MX records": the implicit MX (RFC 5321 §5.1) does not apply.
		return nil, res, fmt.Errorf("%w: %s: no mx record names a valid host", ErrTemporary, res.Name)
	}
	slices.SortStableFunc(mxs, func(a, b MX) int { return int(a.Pref) - int(b.Pref) })
	for i := 0; i < len(mxs); {
		j := i + 1
		for j < len(mxs) && mxs[j].Pref == mxs[i].Pref {
			j++
		}
		group := mxs[i:j]
		rand.Shuffle(len(group), func(a, b int) { group[a], group[b] = group[b], group[a] })
		i = j
	}
	return mxs, res, nil
}

// LookupIP returns the IPv4 (A) and IPv6 (AAAA) addresses of host, IPv4
// first. The result is authentic only if both answers are. An error of
// either query fails the lookup, a temporary one first.
func (r *Resolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, Result, error) {
	type answer struct {
		rrs []dns.RR
		res Result
		err error
	}
	aaaa := make(chan answer, 1)
	go func() {
		rrs, res, err := r.lookupName(ctx, host, dns.TypeAAAA)
		aaaa <- answer{rrs, res, err}
	}()
	rrs, res, err := r.lookupName(ctx, host, dns.TypeA)
	a6 := <-aaaa
	if a6.err != nil && (err == nil || errors.Is(a6.err, ErrTemporary)) {
		return nil, a6.res, a6.err
	}
	if err != nil {
		return nil, res, err
	}
	res.Authentic = res.Authentic && a6.res.Authentic
	var ips []netip.Addr
	for _, rr := range append(rrs, a6.rrs...) {
		var ip net.IP
		switch rr := rr.(type) {
		case *dns.A:
			ip = rr.A.To4()
		case *dns.AAAA:
			ip = rr.AAAA
		}
		if addr, ok := netip.AddrFromSlice(ip); ok {
			ips = append(ips, addr)
		}
	}
	return ips, res, nil
}

// LookupTXT returns the TXT records of name, the strings of each record
// concatenated (RFC 7208 §3.3, RFC 8461 §3.1).
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, Result, error) {
	rrs, res, err := r.lookupName(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, res, err
	}
	var txts []string
	for _, rr := range rrs {
		txts = append(txts, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return txts, res, nil
}

// LookupPTR returns the names the reverse zone gives ip: its PTR records
// at in-addr.arpa (RFC 1035 §3.5) or ip6.arpa (RFC 3596 §2.5), lowercase
// A-labels without the trailing dot, in the order of the answer. An
// IPv4-mapped IPv6 address is looked up as IPv4. Records whose target is not
// a host name are skipped, as Go's own resolver skips them: a result with no
// names and no error means there is no usable name. Nothing here confirms
// the names: a caller that relies on one looks up its addresses (iprev,
// RFC 8601 §3; the SPF "ptr" mechanism, RFC 7208 §5.5).
func (r *Resolver) LookupPTR(ctx context.Context, ip netip.Addr) ([]string, Result, error) {
	if !ip.IsValid() {
		return nil, Result{}, fmt.Errorf("%w: no ip address", ErrInvalidName)
	}
	rev, err := dns.ReverseAddr(ip.Unmap().WithZone("").String())
	if err != nil {
		return nil, Result{}, fmt.Errorf("%w: %v: %v", ErrInvalidName, ip, err)
	}
	rrs, res, err := r.lookup(ctx, rev, dns.TypePTR)
	if err != nil {
		return nil, res, err
	}
	var names []string
	for _, rr := range rrs {
		if n := name(rr.(*dns.PTR).Ptr); validName(n) && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names, res, nil
}

// LookupTLSA returns the TLSA records at _port._proto.host (RFC 6698 §3),
// e.g. _25._tcp.mx.example.org (RFC 7672 §2.2.1). Records with unknown
// parameters are returned; dane.Usable judges them. Callers must ignore
// records that are not authentic (RFC 7672 §2.2), and treat ErrTemporary as
// making the host unusable, not as "no TLSA" (RFC 7672 §2.2.1).
func (r *Resolver) LookupTLSA(ctx context.Context, port int, proto, host string) ([]dane.TLSA, Result, error) {
	h, err := ToASCII(host)
	if err != nil {
		return nil, Result{}, err
	}
	rrs, res, err := r.lookup(ctx, fmt.Sprintf("_%d._%s.%s.", port, proto, h), dns.TypeTLSA)
	if err != nil {
		return nil, res, err
	}
	var records []dane.TLSA
	for _, rr := range rrs {
		t := rr.(*dns.TLSA)
		data, err := hex.DecodeString(t.Certificate)
		if err != nil {
			return nil, res, fmt.Errorf("dnsresolve: tlsa record %s: %w", t, err)
		}
		records = append(records, dane.TLSA{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: data})
	}
	return records, res, nil
}

// lookupName converts name to A-labels and looks it up.
func (r *Resolver) lookupName(ctx context.Context, name string, qtype uint16) ([]dns.RR, Result, error) {
	a, err := ToASCII(name)
	if err != nil {
		return nil, Result{}, err
	}
	return r.lookup(ctx, a+".", qtype)
}

// lookup queries the absolute name for qtype, following CNAMEs, within the
// answers and with new queries when a resolver returned a chain without its
// end.
func (r *Resolver) lookup(ctx context.Context, fqdn string, qtype uint16) ([]dns.RR, Result, error) {
	res := Result{Name: fqdn, Authentic: r.TrustAD}
	seen := map[string]bool{}
	for range maxQueries {
		seen[strings.ToLower(fqdn)] = true
		msg, err := r.cachedExchange(ctx, fqdn, qtype)
		if err != nil {
			return nil, Result{Name: name(fqdn)}, err
		}
		res.Authentic = res.Authentic && msg.AuthenticatedData
		rrs, final := follow(msg.Answer, fqdn, qtype)
		res.Name = name(final)
		if !strings.EqualFold(final, fqdn) && !validName(res.Name) {
			// The CNAME-expanded name is a reference identifier for DANE
			// (RFC 7672 §2.2.2) and names the host to connect to: it must be
			// a host name, not whatever octets a CNAME target holds.
			return nil, res, fmt.Errorf("%w: cname to malformed name %q", ErrTemporary, res.Name)
		}
		if msg.Rcode == dns.RcodeNameError {
			return nil, res, fmt.Errorf("%w: %s %s", ErrNotFound, res.Name, dns.TypeToString[qtype])
		}
		if len(rrs) > 0 || strings.EqualFold(final, fqdn) {
			return rrs, res, nil // Records, or NODATA at the end of the chain.
		}
		if seen[strings.ToLower(final)] {
			break
		}
		fqdn = final
	}
	return nil, res, fmt.Errorf("%w: cname loop or chain too long at %s", ErrTemporary, res.Name)
}

// validName reports whether name, lowercase without the trailing dot, is a
// host name: labels of letters, digits and hyphens, or underscores as in
// service labels ("_25._tcp"), of 1 to 63 octets, at most 253 in all
// (RFC 1035 §2.3.4).
func validName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// name returns fqdn lowercase without the trailing dot.
func name(fqdn string) string {
	return strings.ToLower(strings.TrimSuffix(fqdn, "."))
}

// follow walks the CNAME chain from qname through answer and returns the
// records of qtype at its end, and the end's name.
func follow(answer []dns.RR, qname string, qtype uint16) ([]dns.RR, string) {
	cur := qname
	for range len(answer) + 1 {
		var rrs []dns.RR
		next := ""
		for _, rr := range answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, cur) {
				continue
			}
			if h.Rrtype == qtype {
				rrs = append(rrs, rr)
			} else if cname, ok := rr.(*dns.CNAME); ok && next == "" {
				next = cname.Target
			}
		}
		if len(rrs) > 0 || next == "" {
			return rrs, cur
		}
		cur = next
	}
	return nil, cur // A CNAME loop within the answer.
}

// cachedExchange answers from r.Cache if it can, else exchanges and keeps
// the answer there.
func (r *Resolver) cachedExchange(ctx context.Context, fqdn string, qtype uint16) (*dns.Msg, error) {
	if r.Cache == nil {
		return r.exchange(ctx, fqdn, qtype)
	}
	if msg := r.Cache.get(fqdn, qtype); msg != nil {
		return msg, nil
	}
	msg, err := r.exchange(ctx, fqdn, qtype)
	if err == nil {
		r.Cache.put(fqdn, qtype, msg)
	}
	return msg, err
}

// exchange sends one query, over UDP and then TCP if the answer is truncated.
func (r *Resolver) exchange(ctx context.Context, fqdn string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(fqdn, qtype)
	m.RecursionDesired = true
	m.AuthenticatedData = true // Ask for the AD bit (RFC 6840 §5.7).
	m.SetEdns0(udpSize, true)  // DO bit (RFC 3225 §3).

	timeout := r.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	qs := fmt.Sprintf("%s %s", name(fqdn), dns.TypeToString[qtype])
	c := &dns.Client{Net: "udp", UDPSize: udpSize, Timeout: timeout}
	resp, err := r.exchangeOnce(ctx, c, m)
	if err == nil && resp.Truncated {
		c.Net = "tcp" // RFC 7766 §5.
		resp, err = r.exchangeOnce(ctx, c, m)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrTemporary, qs, err)
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, fqdn) || resp.Question[0].Qtype != qtype {
		return nil, fmt.Errorf("%w: %s: answer for another question", ErrTemporary, qs)
	}
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return resp, nil
	}
	return nil, fmt.Errorf("%w: %s: %s", ErrTemporary, qs, dns.RcodeToString[resp.Rcode])
}

func (r *Resolver) exchangeOnce(ctx context.Context, c *dns.Client, m *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	resp, _, err := c.ExchangeContext(ctx, m, r.Server)
	return resp, err
}
