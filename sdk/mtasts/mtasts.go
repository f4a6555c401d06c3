// Package mtasts fetches, parses and caches MTA-STS policies (RFC 8461): a
// TXT record at _mta-sts.<domain> announces an HTTPS-served policy that can
// require PKIX-verified STARTTLS to a listed set of MX hosts.
//
// The pieces follow the RFC's sections: ParseRecord and FindRecord read the
// TXT record (§3.1), ParsePolicy the policy file (§3.2), Fetch retrieves it
// (§3.3), Policy.MatchMX applies its mx patterns (§4.1), and Cache keeps
// policies on disk and decides when to refetch (§5.1, §10.2).
//
// The package does no DNS itself: callers pass a LookupTXTFunc, so any
// resolver (DNSSEC-aware or not) can be plugged in.
package mtasts

import (
	"errors"
)

// Errors callers branch on with errors.Is.
var (
	// ErrNoRecord: no (single, valid) _mta-sts TXT record (§3.1). The domain has
	// no policy unless a cached one is still valid (§5.1).
	ErrNoRecord = errors.New("mtasts: no record")
	// ErrRecordSyntax: the TXT record is malformed; it counts as absent (§3.1).
	ErrRecordSyntax = errors.New("mtasts: bad record syntax")
	// ErrTemporary: the TXT lookup failed temporarily; try later or keep a
	// cached policy.
	ErrTemporary = errors.New("mtasts: temporary dns failure")
	// ErrPolicy: the policy could not be fetched or is invalid (§3.2, §3.3).
	// Without a cached policy the domain is treated as having none (§5).
	ErrPolicy = errors.New("mtasts: policy fetch or syntax")
	// ErrNoPolicy: Cache.Get found no policy that applies; deliver as though the
	// domain did not implement MTA-STS (§5). The error also wraps the cause
	// (ErrNoRecord, ErrTemporary or ErrPolicy).
	ErrNoPolicy = errors.New("mtasts: no policy")
)

// Extension is an unknown key/value pair of a record or policy, kept for
// logging; extensions are otherwise ignored (§3.1, §3.2).
type Extension struct {
	Key   string
	Value string
}
