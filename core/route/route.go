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

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// Direct is the transport used when no route matches.
const Direct = "direct"

// Select returns the transport of the first matching route of account, then
// domain, then global, or Direct. from is the domain of MAIL FROM (zero for
// the null reverse-path), to the recipient's domain, and attempts the number
// of earlier delivery attempts. The routes' patterns are in the form
// FromConfig gives them.
func Select(account, domain, global []config.Route, from, to mailaddr.Domain, attempts int) string {
	for _, routes := range [][]config.Route{account, domain, global} {
		for _, r := range routes {
			if Match(r, from, to, attempts) {
				return r.Transport
			}
		}
	}
	return Direct
}

// Match reports whether r applies to a delivery from from to to after
// attempts earlier attempts. An empty domain list matches any domain,
// including none; a domain written with a leading dot also matches its
// subdomains. r's patterns are A-labels, as config and FromConfig give them,
// compared with the domains' A-labels: no conversion per call.
func Match(r config.Route, from, to mailaddr.Domain, attempts int) bool {
	return attempts >= r.MinimumAttempts &&
		matchDomain(r.FromDomains, from) &&
		matchDomain(r.ToDomains, to)
}

func matchDomain(patterns []string, d mailaddr.Domain) bool {
	if len(patterns) == 0 {
		return true
	}
	if d.IsZero() {
		return false
	}
	for _, p := range patterns {
		if sub, ok := strings.CutPrefix(p, "."); ok {
			if d.ASCII == sub || strings.HasSuffix(d.ASCII, p) {
				return true
			}
		} else if d.ASCII == p {
			return true
		}
	}
	return false
}

// Table holds the routes of a configuration. It implements the router the
// queue asks for each delivery attempt.
type Table struct {
	Accounts map[string][]config.Route // Account routes, by account name.
	Domains  map[string][]config.Route // Sender domain routes, by mailaddr.Domain.ASCII.
	Global   []config.Route
}

// FromConfig returns the routes of c, their domain patterns in A-labels
// (those of a checked Config are already).
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
		if dn, err := mailaddr.ParseDomain(name); err == nil && d != nil && len(d.Routes) > 0 {
			t.Domains[dn.ASCII] = normalized(d.Routes)
		}
	}
	return t
}

// normalized returns routes with their domain patterns in A-labels, once
// when the table is built; a pattern that is no domain matches nothing.
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
		name, sub := strings.CutPrefix(p, ".")
		d, err := mailaddr.ParseDomain(name)
		switch {
		case err != nil:
			out[i] = "\x00invalid" // Matches nothing: A-labels hold no NUL.
		case sub:
			out[i] = "." + d.ASCII
		default:
			out[i] = d.ASCII
		}
	}
	return out
}

// Route returns the transport for a delivery of a message of account from
// the domain from (zero for the null reverse-path) to a recipient at to
// after attempts earlier attempts.
func (t *Table) Route(account string, from, to mailaddr.Domain, attempts int) string {
	var acc []config.Route
	if account != "" {
		acc = t.Accounts[account]
	}
	return Select(acc, t.Domains[from.ASCII], t.Global, from, to, attempts)
}
