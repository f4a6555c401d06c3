package queue

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// Filter selects queued messages for the commands that list or change
// them; its zero value selects all. A message matches when it matches
// every field that is set; the recipient fields (To, State, NextBefore,
// Transport) when one of its recipients matches them all.
type Filter struct {
	IDs     []string
	Account string
	From    string // An address, or "@domain" for any at the domain.
	To      string // As From, of a recipient.
	Older   time.Duration
	Newer   time.Duration
	// State is "pending" (to be attempted; in-flight ones included),
	// "delivering" (an attempt in progress), "held" (waiting for a
	// release), "delivered" or "failed".
	State      string
	NextBefore time.Duration // Pending with the next attempt due within it.
	Transport  string        // Routed through this transport now.
}

// Empty reports whether f selects all messages.
func (f Filter) Empty() bool {
	return len(f.IDs) == 0 && f.Account == "" && f.From == "" && f.To == "" && f.Older == 0 && f.Newer == 0 &&
		f.State == "" && f.NextBefore == 0 && f.Transport == ""
}

// Check reports what is wrong with f, for the operator.
func (f Filter) Check() error {
	for _, a := range []struct{ name, v string }{{"from", f.From}, {"to", f.To}} {
		if a.v == "" {
			continue
		}
		if d, ok := strings.CutPrefix(a.v, "@"); ok {
			if _, err := mailaddr.ParseDomain(d); err != nil {
				return fmt.Errorf("-%s %q: %v", a.name, a.v, err)
			}
		} else if _, err := mailaddr.ParseAddress(a.v); err != nil {
			return fmt.Errorf("-%s %q: want an address or @domain: %v", a.name, a.v, err)
		}
	}
	if f.State != "" && !slices.Contains(States, f.State) {
		return fmt.Errorf("-state %q: want one of %s", f.State, strings.Join(States, ", "))
	}
	if f.Older < 0 || f.Newer < 0 || f.NextBefore < 0 {
		return fmt.Errorf("durations must not be negative")
	}
	return nil
}

// Match reports whether m matches f at now; route gives a recipient's
// transport, for Transport.
func (f Filter) Match(m MsgInfo, now time.Time, route func(MsgInfo, Rcpt) string) bool {
	if len(f.IDs) > 0 && !slices.Contains(f.IDs, m.ID) {
		return false
	}
	if f.Account != "" && m.Account != f.Account {
		return false
	}
	if f.From != "" && !addressMatches(f.From, m.From) {
		return false
	}
	if f.Older > 0 && now.Sub(m.Queued) < f.Older || f.Newer > 0 && now.Sub(m.Queued) > f.Newer {
		return false
	}
	if f.To == "" && f.State == "" && f.NextBefore == 0 && f.Transport == "" {
		return true
	}
	for _, r := range m.Recipients {
		switch {
		case f.To != "" && !addressMatches(f.To, r.Address):
		case f.State != "" && !stateMatches(f.State, m, r):
		case f.NextBefore > 0 && (r.State != Pending || r.NextAttempt.Sub(now) > f.NextBefore):
		case f.Transport != "" && (r.State != Pending || route(m, r) != f.Transport):
		default:
			return true
		}
	}
	return false
}

// States are the values of Filter.State.
var States = []string{"pending", "delivering", "held", "delivered", "failed"}

// stateMatches reports whether r, a recipient of m, is in state.
func stateMatches(state string, m MsgInfo, r Rcpt) bool {
	switch state {
	case "pending":
		return r.State == Pending
	case "delivering":
		return m.DeliveringTo(r)
	case "held":
		return r.State == Held
	case "delivered":
		return r.State == Delivered
	default:
		return r.State == Failed || r.State == Failing
	}
}

// addressMatches reports whether addr is pattern, an address compared
// with its domain in any form and case, or "@domain".
// toDomain returns the domain of f.To in A-labels, the key of
// Msg.Domains of the messages it can match; empty if there is none.
func (f Filter) toDomain() string {
	d, ok := strings.CutPrefix(f.To, "@")
	if !ok {
		a, err := mailaddr.ParseAddress(f.To)
		if err != nil {
			return ""
		}
		return a.Domain.ASCII
	}
	pd, err := mailaddr.ParseDomain(d)
	if err != nil {
		return ""
	}
	return pd.ASCII
}

func addressMatches(pattern, addr string) bool {
	a, err := mailaddr.ParseAddress(addr)
	if err != nil {
		return false
	}
	if d, ok := strings.CutPrefix(pattern, "@"); ok {
		pd, err := mailaddr.ParseDomain(d)
		return err == nil && pd.Unicode == a.Domain.Unicode
	}
	p, err := mailaddr.ParseAddress(pattern)
	return err == nil && p.Localpart == a.Localpart && p.Domain.Unicode == a.Domain.Unicode
}
