package policymsgauth

import (
	"context"
	"errors"
	"net/netip"

	"github.com/switchyard-mta/switchyard/sdk/dnsresolve"
)

// maxPTRNames bounds the names whose addresses are looked up, as RFC 7208
// §4.6.4 bounds them for the SPF "ptr" mechanism.
const maxPTRNames = 10

// iprevResult is the iprev result of the client (RFC 8601 §3).
type iprevResult struct {
	value     string // pass, fail, temperror, permerror (RFC 8601 §2.7.3).
	name      string // The name confirmed, or the first one that was not.
	authentic bool   // The PTR and the confirming answers were DNSSEC-authentic.
}

// checkIPRev looks up the PTR names of ip, then the addresses of each; the
// client passes if one of them has ip among its addresses (RFC 8601 §3).
func checkIPRev(ctx context.Context, r *dnsresolve.Resolver, ip netip.Addr) iprevResult {
	names, res, err := r.LookupPTR(ctx, ip)
	switch {
	case errors.Is(err, dnsresolve.ErrNotFound), errors.Is(err, dnsresolve.ErrInvalidName), err == nil && len(names) == 0:
		return iprevResult{value: "permerror"} // No PTR data (RFC 8601 §2.7.3).
	case err != nil:
		return iprevResult{value: "temperror"}
	}
	if len(names) > maxPTRNames {
		names = names[:maxPTRNames]
	}
	temporary := false
	for _, n := range names {
		addrs, fres, err := r.LookupIP(ctx, n)
		if err != nil {
			temporary = temporary || !errors.Is(err, dnsresolve.ErrNotFound)
			continue
		}
		for _, a := range addrs {
			if a.Unmap() == ip {
				return iprevResult{value: "pass", name: n, authentic: res.Authentic && fres.Authentic}
			}
		}
	}
	if temporary {
		// A name not looked up might have confirmed the address.
		return iprevResult{value: "temperror", name: names[0]}
	}
	return iprevResult{value: "fail", name: names[0]}
}
