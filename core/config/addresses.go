package config

import (
	"slices"
	"strings"

	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// Domains are keyed by their Unicode form (mailaddr.Domain.Unicode), and
// addresses by localpart@ that form: a Domain's two forms are one-to-one,
// so bücher.example, BÜCHER.example. and xn--bcher-kva.example are one key.

// IsLocalDomain reports whether d is in [domains].
func (c *Config) IsLocalDomain(d mailaddr.Domain) bool {
	_, ok := c.Domains[d.Unicode] // The zero Domain's "" is no key.
	return ok
}

// AccountByAddress returns the account that receives mail for addr, an
// address at a local domain, else the domain's catch-all account. The localpart is compared exactly and then
// ignoring case (RFC 5321 §2.4 lets the localpart be case sensitive; an
// address listed exactly wins). With the domain's LocalpartSeparator "+",
// alice+tag@example.org is alice@example.org when not listed itself. It
// works on Configs from Load or Parse.
func (c *Config) AccountByAddress(addr mailaddr.Address) (account string, ok bool) {
	if account, ok := c.OwnerOfAddress(addr); ok {
		return account, true
	}
	d := c.Domains[addr.Domain.Unicode]
	if d == nil || d.Catchall == "" || addr.Localpart == "" {
		return "", false
	}
	return d.Catchall, true
}

// AliasOf returns the alias addr is, or nil. The localpart compares
// without case; a localpart separator ("+tag") is ignored as for accounts.
func (c *Config) AliasOf(addr mailaddr.Address) *Alias {
	d := c.Domains[addr.Domain.Unicode]
	if d == nil || len(c.aliases) == 0 {
		return nil
	}
	local := strings.ToLower(addr.Localpart)
	if al := c.aliases[local+"@"+addr.Domain.Unicode]; al != nil {
		return al
	}
	if sep := d.LocalpartSeparator; sep != "" {
		if i := strings.Index(local, sep); i > 0 {
			return c.aliases[local[:i]+"@"+addr.Domain.Unicode]
		}
	}
	return nil
}

// OwnerOfAddress is AccountByAddress without the domain's catch-all: the
// account that has addr among its addresses.
func (c *Config) OwnerOfAddress(addr mailaddr.Address) (account string, ok bool) {
	d, ok := c.Domains[addr.Domain.Unicode]
	if !ok {
		return "", false
	}
	local, domain := addr.Localpart, addr.Domain.Unicode
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

// lookup finds the account of local@domain, domain a key of Domains.
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
	a, err := mailaddr.ParseAddress(login)
	if err != nil || a.Literal != "" {
		return "", false
	}
	return c.lookup(a.Localpart, a.Domain.Unicode)
}

// OwnsAddress reports whether addr is an address of account, as
// OwnerOfAddress resolves it (a catch-all owns nothing).
func (c *Config) OwnsAddress(account string, addr mailaddr.Address) bool {
	a, ok := c.OwnerOfAddress(addr)
	return ok && a == account
}

// MayUseAddress reports whether account may send as addr (MAIL FROM): an
// address it owns (OwnsAddress), an alias it is a member of that allows
// it (allow_msg_from), or one its send_as lists, by its domain
// or as the address itself (the localpart exactly, the domain in any form).
func (c *Config) MayUseAddress(account string, addr mailaddr.Address) bool {
	if c.OwnsAddress(account, addr) {
		return true
	}
	if al := c.AliasOf(addr); al != nil && al.AllowMsgFrom && slices.Contains(al.Accounts, account) {
		return true
	}
	a := c.Accounts[account]
	if a == nil || addr.Literal != "" || addr.Domain.Unicode == "" {
		return false
	}
	return a.sendAsDomains[addr.Domain.Unicode] || a.sendAsAddrs[addr.Localpart+"@"+addr.Domain.Unicode]
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
