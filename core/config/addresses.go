package config

import (
	"strings"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// foldDomain is the form domains are compared in: IDNA A-labels ("xn--")
// as their U-labels, Unicode NFC (as U-labels are, RFC 5891 §5.2), lower
// case, without a trailing dot. So bücher.example, BÜCHER.example. and
// xn--bcher-kva.example are one domain. A label that is not valid
// punycode stays as written.
func foldDomain(d string) string {
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	if strings.Contains(d, "xn--") {
		if u, err := idna.Lookup.ToUnicode(d); err == nil {
			d = u
		}
	}
	return norm.NFC.String(d)
}

// splitAddress splits an address at its last '@'; both parts are non-empty.
// The localpart is returned in Unicode NFC (RFC 6530 §10.1: SMTPUTF8
// addresses should be normalized), the domain folded (foldDomain).
func splitAddress(addr string) (local, domain string, ok bool) {
	i := strings.LastIndexByte(addr, '@')
	if i <= 0 || i == len(addr)-1 {
		return "", "", false
	}
	return norm.NFC.String(addr[:i]), foldDomain(addr[i+1:]), true
}

// IsLocalDomain reports whether domain (without trailing dot) is in
// [domains], ignoring case.
func (c *Config) IsLocalDomain(domain string) bool {
	_, ok := c.Domains[foldDomain(domain)]
	return ok
}

// AccountByAddress returns the account that receives mail for addr, an
// address at a local domain. The domain is compared ignoring case, the
// localpart exactly and then ignoring case (RFC 5321 §2.4 lets the
// localpart be case sensitive; an address listed exactly wins). With the
// domain's LocalpartSeparator "+", alice+tag@example.org is
// alice@example.org when not listed itself. It works on Configs from Load
// or Parse.
func (c *Config) AccountByAddress(addr string) (account string, ok bool) {
	local, domain, ok := splitAddress(addr)
	if !ok {
		return "", false
	}
	d, ok := c.Domains[domain]
	if !ok {
		return "", false
	}
	if account, ok := c.lookup(local, domain); ok {
		return account, true
	}
	if sep := d.LocalpartSeparator; sep != "" {
		if i := strings.Index(local, sep); i > 0 {
			return c.lookup(local[:i], domain)
		}
	}
	return "", false
}

// lookup finds the account of local@domain, domain lower case.
func (c *Config) lookup(local, domain string) (string, bool) {
	if account, ok := c.addrs[local+"@"+domain]; ok {
		return account, true
	}
	account := c.addrsFold[strings.ToLower(local)+"@"+domain]
	return account, account != ""
}

// AccountByLogin returns the account a login names: an account name, or one
// of the account's addresses (matched as AccountByAddress does, but without
// the localpart separator).
func (c *Config) AccountByLogin(login string) (account string, ok bool) {
	if _, ok := c.Accounts[login]; ok {
		return login, true
	}
	local, domain, ok := splitAddress(login)
	if !ok {
		return "", false
	}
	return c.lookup(local, domain)
}

// MayUseAddress reports whether account may send as addr (MAIL FROM and
// From): addr must resolve to account as AccountByAddress resolves it.
func (c *Config) MayUseAddress(account, addr string) bool {
	a, ok := c.AccountByAddress(addr)
	return ok && a == account
}

// PostmasterAddress is the address "RCPT TO:<Postmaster>" and the
// server's own mail stand for: postmaster@ the postmaster account's
// domain; empty without accounts.
func (c *Config) PostmasterAddress() string {
	a := c.Accounts[c.Postmaster]
	if a == nil {
		return ""
	}
	return "postmaster@" + a.Domain
}

// ListenerByName returns the listener named name, or nil.
func (c *Config) ListenerByName(name string) *Listener {
	for i := range c.Listeners {
		if c.Listeners[i].Name == name {
			return &c.Listeners[i]
		}
	}
	return nil
}
