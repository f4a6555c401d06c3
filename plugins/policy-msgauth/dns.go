package policymsgauth

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/switchyard-mta/switchyard/sdk/dnsresolve"
)

// lookups adapts a dnsresolve.Resolver to the resolver interfaces of
// blitiri.com.ar/go/spf and go-msgauth, which tell outcomes apart by
// *net.DNSError as net.Resolver returns them: IsNotFound for NXDOMAIN (and
// names that cannot be asked), Temporary for everything transient. It also
// records whether every answer it gave was DNSSEC-authentic.
type lookups struct {
	r           *dnsresolve.Resolver
	unauthentic atomic.Bool // Some answer was not authentic.
	used        atomic.Bool // Some answer was given.
}

// authentic reports whether answers were given and all were authentic.
func (l *lookups) authentic() bool {
	return l.used.Load() && !l.unauthentic.Load()
}

func (l *lookups) note(res dnsresolve.Result, err error) {
	if err != nil && !errors.Is(err, dnsresolve.ErrNotFound) {
		return
	}
	l.used.Store(true)
	if !res.Authentic {
		l.unauthentic.Store(true)
	}
}

// dnsError maps an error of dnsresolve to what net.Resolver would return.
func dnsError(name string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, dnsresolve.ErrNotFound), errors.Is(err, dnsresolve.ErrInvalidName):
		// Go's resolver, too, answers "no such host" for a name it
		// cannot ask; RFC 7208 §4.3 treats such a domain as not existing.
		return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	default: // ErrTemporary, a cancelled or expired context.
		return &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
	}
}

func (l *lookups) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txts, res, err := l.r.LookupTXT(ctx, name)
	l.note(res, err)
	return txts, dnsError(name, err)
}

func (l *lookups) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	mxs, res, err := l.r.LookupMX(ctx, name)
	l.note(res, err)
	if errors.Is(err, dnsresolve.ErrNullMX) {
		// A null MX (RFC 7505) names no host: the "mx" mechanism matches
		// nothing.
		return nil, nil
	}
	var out []*net.MX
	for _, mx := range mxs {
		out = append(out, &net.MX{Host: mx.Host + ".", Pref: mx.Pref})
	}
	return out, dnsError(name, err)
}

func (l *lookups) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ips, res, err := l.r.LookupIP(ctx, host)
	l.note(res, err)
	var out []net.IPAddr
	for _, ip := range ips {
		out = append(out, net.IPAddr{IP: ip.AsSlice()})
	}
	return out, dnsError(host, err)
}

func (l *lookups) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr}
	}
	names, res, err := l.r.LookupPTR(ctx, ip)
	l.note(res, err)
	for i, n := range names {
		names[i] = n + "."
	}
	return names, dnsError(addr, err)
}

// txtFunc is a context-bound TXT lookup for go-msgauth, which takes none.
func (l *lookups) txtFunc(ctx context.Context) func(string) ([]string, error) {
	return func(name string) ([]string, error) { return l.LookupTXT(ctx, name) }
}
