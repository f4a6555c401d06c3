// Package route picks the transport for a delivery attempt.
//
// Routes are tried in order: those of the sender's account, then those of the
// sender's domain, then the global ones; the first route that matches wins.
// A route matches on the sender's domain (from_domains), the recipient's
// domain (to_domains) and the number of earlier attempts (minimum_attempts).
// Without a match, messages go out through the transport named Direct.
package route

import (
	"strings"

	"golang.org/x/net/idna"

	"github.com/switchyard-mta/switchyard/core/config"
)

// Direct is the transport used when no route matches.
const Direct = "direct"

// Select returns the transport of the first matching route of account, then
// domain, then global, or Direct. fromDomain is the domain of MAIL FROM
// (empty for the null reverse-path), toDomain the recipient's domain, and
// attempts the number of earlier delivery attempts.
func Select(account, domain, global []config.Route, fromDomain, toDomain string, attempts int) string {
	from, to := normalize(fromDomain), normalize(toDomain)
	for _, routes := range [][]config.Route{account, domain, global} {
		for _, r := range routes {
			if Match(r, from, to, attempts) {
				return r.Transport
			}
		}
	}
	return Direct
}

// Match reports whether r applies to a delivery from fromDomain to toDomain
// after attempts earlier attempts. An empty domain list matches any domain,
// including none; a domain written with a leading dot also matches its
// subdomains. Domains compare case-insensitively, U-labels equal to their
// A-labels (RFC 5890).
func Match(r config.Route, fromDomain, toDomain string, attempts int) bool {
	return attempts >= r.MinimumAttempts &&
		matchDomain(r.FromDomains, normalize(fromDomain)) &&
		matchDomain(r.ToDomains, normalize(toDomain))
}

func matchDomain(patterns []string, d string) bool {
	if len(patterns) == 0 {
		return true
	}
	if d == "" {
		return false
	}
	for _, p := range patterns {
		if sub, ok := strings.CutPrefix(p, "."); ok {
			sub = normalize(sub)
			if d == sub || strings.HasSuffix(d, "."+sub) {
				return true
			}
		} else if d == normalize(p) {
			return true
		}
	}
	return false
}

// normalize returns d in lower case without a trailing dot, IDNA U-labels
// converted to A-labels.
func normalize(d string) string {
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	for i := 0; i < len(d); i++ {
		if d[i] >= 0x80 {
			if a, err := idna.Lookup.ToASCII(d); err == nil {
				return a
			}
			return d
		}
	}
	return d
}

// Table holds the routes of a configuration. It implements the router the
// queue asks for each delivery attempt.
type Table struct {
	Accounts map[string][]config.Route // Account routes, by account name.
	Domains  map[string][]config.Route // Sender domain routes, by domain as normalized by Domain.
	Global   []config.Route
}

// FromConfig returns the routes of c.
func FromConfig(c *config.Config) *Table {
	t := &Table{
		Accounts: map[string][]config.Route{},
		Domains:  map[string][]config.Route{},
		Global:   normalized(c.Routes),
	}
	for name, a := range c.Accounts {
		if a != nil && len(a.Routes) > 0 {
			t.Accounts[name] = normalized(a.Routes)
		}
	}
	for name, d := range c.Domains {
		if d != nil && len(d.Routes) > 0 {
			t.Domains[Domain(name)] = normalized(d.Routes)
		}
	}
	return t
}

// normalized returns routes with their domain patterns normalized, once
// when the table is built: matching under the queue's lock then converts
// nothing (normalize of a normalized name allocates nothing).
func normalized(routes []config.Route) []config.Route {
	out := make([]config.Route, len(routes))
	for i, r := range routes {
		r.FromDomains, r.ToDomains = patterns(r.FromDomains), patterns(r.ToDomains)
		out[i] = r
	}
	return out
}

func patterns(ps []string) []string {
	if ps == nil {
		return nil
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		if sub, ok := strings.CutPrefix(p, "."); ok {
			out[i] = "." + normalize(sub)
		} else {
			out[i] = normalize(p)
		}
	}
	return out
}

// Domain returns the lookup form of a domain name: lower case, no trailing
// dot, A-labels.
func Domain(d string) string {
	return normalize(d)
}

// Route returns the transport for a delivery of a message of account with
// MAIL FROM from to a recipient at toDomain after attempts earlier attempts.
func (t *Table) Route(account, from, toDomain string, attempts int) string {
	fromDomain := ""
	if i := strings.LastIndexByte(from, '@'); i >= 0 {
		fromDomain = normalize(from[i+1:])
	}
	var acc []config.Route
	if account != "" {
		acc = t.Accounts[account]
	}
	return Select(acc, t.Domains[fromDomain], t.Global, fromDomain, toDomain, attempts)
}
