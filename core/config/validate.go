package config

import (
	"cmp"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// checker collects the problems of a Config.
type checker struct {
	c    *Config
	errs Errors
}

func (v *checker) add(key, format string, args ...any) {
	v.errs = append(v.errs, v.c.KeyError(key, fmt.Sprintf(format, args...)))
}

// check validates and normalizes c: domains lower case, relay networks
// parsed, the address index built.
func (v *checker) check() {
	c := v.c
	if c.Hostname == "" {
		v.add("hostname", "required")
	} else if d, err := mailaddr.ParseDomain(c.Hostname); err != nil {
		v.add("hostname", "%v", err)
	} else {
		c.Hostname = d.ASCII // As EHLO and DNS have it.
	}
	v.log()
	v.limits()
	v.listeners()
	v.tls()
	v.plugins()
	v.auth()
	v.sendmail()
	v.transports()
	v.policies()
	v.routes("routes", c.Routes)
	v.domains()
	v.accounts()
	v.postmaster()
}

// postmaster resolves the postmaster account and gives it postmaster@ of
// every local domain that no account lists.
func (v *checker) postmaster() {
	c := v.c
	if c.Postmaster == "" {
		first := 0
		for name := range c.Accounts {
			if line := c.Line("accounts." + quoteKey(name)); c.Postmaster == "" || line < first || line == first && name < c.Postmaster {
				c.Postmaster, first = name, line
			}
		}
	} else if _, ok := c.Accounts[c.Postmaster]; !ok {
		v.add("postmaster", "no account %q in [accounts]", c.Postmaster)
		return
	}
	if c.Postmaster == "" {
		return
	}
	for d := range c.Domains {
		addr := "postmaster@" + d
		if _, ok := c.addrsFold[addr]; !ok {
			c.addrs[addr], c.addrsFold[addr] = c.Postmaster, c.Postmaster
		}
	}
}

func (v *checker) sendmail() {
	sm := v.c.Sendmail
	if sm.Server != "" {
		if err := checkHostPort(sm.Server); err != nil {
			v.add("sendmail.server", "%v", err)
		}
	}
	switch sm.TLS {
	case "", "starttls", "tls", "none":
	default:
		v.add("sendmail.tls", "must be \"starttls\", \"tls\" or \"none\", not %q", sm.TLS)
	}
	if (sm.Username == "") != (sm.PasswordFile == "") {
		v.add("sendmail.username", "username and password_file go together")
	}
	if sm.Username != "" && sm.TLS == "none" {
		v.add("sendmail.tls", "a password must not travel without TLS")
	}
	if sm.ClientCert != "" && sm.ClientKey == "" {
		v.add("sendmail.client_key", "required with client_cert")
	}
	if sm.ClientKey != "" && sm.TLS == "none" {
		v.add("sendmail.tls", "a client certificate needs TLS")
	}
}

// needsTLS are the listener kinds that cannot work without a certificate:
// submission requires STARTTLS before AUTH (RFC 8314 §3.3), the others are
// implicit TLS or must offer STARTTLS (RFC 3501 §6.2.3).
var needsTLS = []string{KindSubmission, KindSubmissions, KindIMAP, KindIMAPS}

func (v *checker) listeners() {
	names := map[string]int{}
	addrs := map[string]int{}
	for i := range v.c.Listeners {
		l := &v.c.Listeners[i]
		key := fmt.Sprintf("listeners[%d]", i)
		if l.Name == "" {
			v.add(key+".name", "required")
		} else if j, dup := names[l.Name]; dup {
			v.add(key+".name", "%q is also the name of listeners[%d]", l.Name, j)
		} else {
			names[l.Name] = i
		}
		switch l.Kind {
		case KindSMTP, KindSubmission, KindSubmissions, KindIMAP, KindIMAPS:
		case "":
			v.add(key+".kind", "required")
		default:
			v.add(key+".kind", "unknown kind %q (want %s, %s, %s, %s or %s)", l.Kind, KindSMTP, KindSubmission, KindSubmissions, KindIMAP, KindIMAPS)
		}
		if err := checkHostPort(l.Address); err != nil {
			v.add(key+".address", "%v", err)
		} else if j, dup := addrs[l.Address]; dup {
			v.add(key+".address", "%q is also the address of listeners[%d]", l.Address, j)
		} else {
			addrs[l.Address] = i
		}
		if len(l.RelayNetworks) > 0 && l.Kind != KindSMTP {
			v.add(key+".relay_networks", "only for kind %q", KindSMTP)
		}
		l.RelayPrefixes = v.prefixes(key+".relay_networks", l.RelayNetworks)
		v.connLimits(key, l)
	}
}

func (v *checker) log() {
	l := &v.c.Log
	switch l.Level {
	case "":
		l.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", "must be \"debug\", \"info\", \"warn\" or \"error\", not %q", l.Level)
	}
	switch l.Format {
	case "":
		l.Format = "text"
	case "text", "json":
	default:
		v.add("log.format", "must be \"text\" or \"json\", not %q", l.Format)
	}
}

// limits parses [limits] exempt_networks.
func (v *checker) limits() {
	v.c.Limits.ExemptPrefixes = v.prefixes("limits.exempt_networks", v.c.Limits.ExemptNetworks)
}

// connLimits sets l.Conns from its overrides and [limits].
func (v *checker) connLimits(key string, l *Listener) {
	lim := v.c.Limits
	l.Conns = ConnLimits{MaxPerIP: lim.MaxConnectionsPerIP, RatePerIP: lim.ConnectionRatePerIP}
	for _, o := range []struct {
		p   *int
		f   *int
		key string
		min int
	}{
		{l.MaxConnections, &l.Conns.MaxConnections, "max_connections", 1},
		{l.MaxConnectionsPerIP, &l.Conns.MaxPerIP, "max_connections_per_ip", 0},
		{l.ConnectionRatePerIP, &l.Conns.RatePerIP, "connection_rate_per_ip", 0},
	} {
		if o.p == nil {
			continue
		}
		if *o.p < o.min {
			v.add(key+"."+o.key, "must be %d or more, is %d", o.min, *o.p)
		}
		*o.f = *o.p
	}
	l.Conns.Exempt = lim.ExemptPrefixes
	if lim.ExemptRelayNetworks && len(l.RelayPrefixes) > 0 {
		l.Conns.Exempt = append(slices.Clip(l.Conns.Exempt), l.RelayPrefixes...)
	}
}

// prefixes parses the networks at key.
func (v *checker) prefixes(key string, nets []string) []netip.Prefix {
	var ps []netip.Prefix
	for j, s := range nets {
		p, err := parsePrefix(s)
		if err != nil {
			v.add(fmt.Sprintf("%s[%d]", key, j), "%v", err)
			continue
		}
		ps = append(ps, p)
	}
	return ps
}

func checkHostPort(addr string) error {
	if addr == "" {
		return fmt.Errorf("required")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port: %w", err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("invalid port %q in %q", port, addr)
	}
	return nil
}

// parsePrefix parses a network, or a bare IP as a network of one address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if ip.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("zone not allowed in %q", s)
	}
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}

func (v *checker) tls() {
	t := v.c.TLS
	switch {
	case t.SelfSigned && (t.Cert != "" || t.Key != ""):
		v.add("tls.self_signed", "set either self_signed or cert and key, not both")
	case t.Cert != "" && t.Key == "":
		v.add("tls.key", "required with cert")
	case t.Key != "" && t.Cert == "":
		v.add("tls.cert", "required with key")
	case t.Cert == "" && !t.SelfSigned:
		for i, l := range v.c.Listeners {
			if slices.Contains(needsTLS, l.Kind) {
				v.add("tls", "cert and key, or self_signed, required by listeners[%d] (%q, kind %s)", i, l.Name, l.Kind)
				break
			}
		}
	}
}

func (v *checker) plugins() {
	for _, name := range slices.Sorted(maps.Keys(v.c.Plugins)) {
		p := v.c.Plugins[name]
		key := "plugins." + quoteKey(name)
		// The name is a directory: <data_dir>/plugins/<name>.
		if name == "." || name == ".." || strings.IndexFunc(name, func(r rune) bool {
			return r >= 0x80 || !isBare(byte(r)) && r != '.'
		}) >= 0 {
			v.add(key, "invalid plugin name %q: want letters, digits, '-', '_' and '.'", name)
		}
		if p.Path == "" {
			v.add(key+".path", "required")
		}
		if p.SHA256 != "" {
			p.SHA256 = strings.ToLower(p.SHA256)
			if _, err := hex.DecodeString(p.SHA256); err != nil || len(p.SHA256) != 64 {
				v.add(key+".sha256", "want 64 hex digits")
			}
		}
	}
}

// auth checks the syntax of the mechanism names; which ones exist is known
// once the plugins have described themselves.
func (v *checker) auth() {
	seen := map[string]int{}
	for i, m := range v.c.Auth.Mechanisms {
		key := fmt.Sprintf("auth.mechanisms[%d]", i)
		if !isMechanismName(m) {
			v.add(key, "invalid SASL mechanism name %q: want 1 to 20 upper-case letters, digits, '-' and '_' (RFC 4422 §3.1)", m)
		} else if j, dup := seen[m]; dup {
			v.add(key, "%s is also auth.mechanisms[%d]", m, j)
		} else {
			seen[m] = i
		}
	}
}

// isMechanismName reports whether s is a SASL mechanism name (RFC 4422 §3.1).
func isMechanismName(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for _, c := range []byte(s) {
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func (v *checker) transports() {
	for _, name := range slices.Sorted(maps.Keys(v.c.Transport)) {
		t := v.c.Transport[name]
		key := "transports." + quoteKey(name)
		if name == LocalTransport {
			v.add(key, "the name %q is reserved for the built-in delivery to local accounts", name)
			continue
		}
		if t.Plugin == "" {
			v.add(key+".plugin", "required")
		} else if _, ok := v.c.Plugins[t.Plugin]; !ok {
			v.add(key+".plugin", "unknown plugin %q (not in [plugins])", t.Plugin)
		}
	}
}

// policies checks [policies] and the listeners' lists of them.
func (v *checker) policies() {
	for _, name := range slices.Sorted(maps.Keys(v.c.Policies)) {
		p := v.c.Policies[name]
		key := "policies." + quoteKey(name)
		if p.Plugin == "" {
			v.add(key+".plugin", "required")
		} else if _, ok := v.c.Plugins[p.Plugin]; !ok {
			v.add(key+".plugin", "unknown plugin %q (not in [plugins])", p.Plugin)
		}
		if p.Timeout == 0 {
			p.Timeout = DefaultPolicyTimeout
		}
		switch p.OnError {
		case "":
			p.OnError = OnErrorTempfail
		case OnErrorTempfail, OnErrorAccept:
		default:
			v.add(key+".on_error", "must be %q or %q, not %q", OnErrorTempfail, OnErrorAccept, p.OnError)
		}
	}
	for i, l := range v.c.Listeners {
		key := fmt.Sprintf("listeners[%d].policies", i)
		if len(l.Policies) > 0 && l.Kind != KindSMTP && l.Kind != KindSubmission && l.Kind != KindSubmissions {
			v.add(key, "only for SMTP listeners (kinds %s, %s, %s)", KindSMTP, KindSubmission, KindSubmissions)
			continue
		}
		seen := map[string]bool{}
		for j, name := range l.Policies {
			switch {
			case v.c.Policies[name] == nil:
				v.add(fmt.Sprintf("%s[%d]", key, j), "unknown policy %q (not in [policies])", name)
			case seen[name]:
				v.add(fmt.Sprintf("%s[%d]", key, j), "%q is listed twice", name)
			}
			seen[name] = true
		}
	}
}

// routes checks and lower-cases routes. Each must name a transport that
// exists, "direct" included: only the fallback when no route matches may
// name a "direct" that is not configured.
func (v *checker) routes(key string, rs []Route) {
	for i := range rs {
		r := &rs[i]
		rkey := fmt.Sprintf("%s[%d]", key, i)
		if r.Transport == "" {
			v.add(rkey+".transport", "required")
		} else if _, ok := v.c.Transport[r.Transport]; !ok {
			v.add(rkey+".transport", "unknown transport %q (not in [transports])", r.Transport)
		}
		if r.MinimumAttempts < 0 {
			v.add(rkey+".minimum_attempts", "must not be negative")
		}
		v.routeDomains(rkey+".from_domains", r.FromDomains)
		v.routeDomains(rkey+".to_domains", r.ToDomains)
	}
}

// routeDomains parses route domain patterns into the form core/route
// compares: A-labels, with the leading dot of a subdomain pattern kept.
func (v *checker) routeDomains(key string, ds []string) {
	for i, p := range ds {
		name, sub := strings.CutPrefix(p, ".")
		d, err := mailaddr.ParseDomain(name)
		if err != nil {
			v.add(fmt.Sprintf("%s[%d]", key, i), "%v", err)
			continue
		}
		ds[i] = d.ASCII
		if sub {
			ds[i] = "." + d.ASCII
		}
	}
}

func (v *checker) domains() {
	domains := make(map[string]*Domain, len(v.c.Domains))
	// Names in lower case first: a duplicate is reported where the case differs.
	names := slices.SortedFunc(maps.Keys(v.c.Domains), func(a, b string) int {
		upper := func(s string) int {
			if s != strings.ToLower(s) {
				return 1
			}
			return 0
		}
		return cmp.Or(upper(a)-upper(b), cmp.Compare(a, b))
	})
	for _, name := range names {
		d := v.c.Domains[name]
		key := "domains." + quoteKey(name)
		if dn, err := mailaddr.ParseDomain(name); err != nil {
			v.add(key, "%v", err)
		} else if _, dup := domains[dn.Unicode]; dup {
			v.add(key, "domain %q is listed twice (ignoring case, U-labels equal to A-labels)", dn.Unicode)
		} else {
			domains[dn.Unicode] = d
		}
		// RFC 5322 §3.2.3 atext, less letters and digits.
		if sep := d.LocalpartSeparator; sep != "" && (len(sep) != 1 || !strings.Contains("!#$%&'*+-/=?^_`{|}~", sep)) {
			v.add(key+".localpart_separator", "invalid separator %q: want one of !#$%%&'*+-/=?^_`{|}~", sep)
		}
		v.routes(key+".routes", d.Routes)
		d.key = key
	}
	v.c.Domains = domains
}

// aliases checks the domains' aliases, once the accounts are known.
func (v *checker) aliases() {
	c := v.c
	c.aliases = map[string]*Alias{}
	for _, domain := range slices.Sorted(maps.Keys(c.Domains)) {
		d := c.Domains[domain]
		for _, name := range slices.Sorted(maps.Keys(d.Aliases)) {
			al := d.Aliases[name]
			key := d.key + ".aliases." + quoteKey(name)
			local, dom, err := parseAddress(name + "@" + domain)
			if err != nil {
				v.add(key, "%v", err)
				continue
			}
			al.Address = local + "@" + dom
			if owner, ok := c.OwnerOfAddress(mailaddr.Address{Localpart: local, Domain: mailaddr.Domain{Unicode: dom}}); ok {
				v.add(key, "%s is also an address of account %q", al.Address, owner)
				continue
			}
			if len(al.Members) == 0 {
				v.add(key+".members", "required")
			}
			al.Accounts = make([]string, len(al.Members))
			for i, m := range al.Members {
				mkey := fmt.Sprintf("%s.members[%d]", key, i)
				ml, md, err := parseAddress(m)
				if err != nil {
					v.add(mkey, "%v", err)
					continue
				}
				acc, ok := c.OwnerOfAddress(mailaddr.Address{Localpart: ml, Domain: mailaddr.Domain{Unicode: md}})
				if !ok {
					v.add(mkey, "%q is not an address of a local account", m)
					continue
				}
				al.Members[i], al.Accounts[i] = ml+"@"+md, acc
			}
			c.aliases[strings.ToLower(local)+"@"+dom] = al
		}
	}
}

func (v *checker) accounts() {
	c := v.c
	c.addrs = map[string]string{}
	c.addrsFold = map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(c.Accounts)) {
		a := c.Accounts[name]
		key := "accounts." + quoteKey(name)
		if name == "" || strings.ContainsAny(name, "@/\\") || strings.IndexFunc(name, isSpaceOrControl) >= 0 {
			v.add(key, "invalid account name %q: no '@', '/', '\\', spaces or control characters", name)
		}
		if a.Domain == "" {
			v.add(key+".domain", "required")
		} else if d, err := mailaddr.ParseDomain(a.Domain); err != nil {
			v.add(key+".domain", "%v", err)
		} else if _, ok := c.Domains[d.Unicode]; !ok {
			v.add(key+".domain", "domain %q is not in [domains]", a.Domain)
		} else {
			a.Domain = d.Unicode
		}
		for i, addr := range a.Addresses {
			akey := fmt.Sprintf("%s.addresses[%d]", key, i)
			local, domain, err := parseAddress(addr)
			if err != nil {
				v.add(akey, "%v", err)
				continue
			}
			if _, ok := c.Domains[domain]; !ok {
				v.add(akey, "domain %q is not in [domains]", domain)
				continue
			}
			addr = local + "@" + domain
			a.Addresses[i] = addr
			if other, dup := c.addrs[addr]; dup {
				v.add(akey, "%q is also an address of account %q", addr, other)
				continue
			}
			c.addrs[addr] = name
			fold := strings.ToLower(local) + "@" + domain
			if other, dup := c.addrsFold[fold]; dup && other != name {
				c.addrsFold[fold] = "" // Ambiguous: only exact matches.
			} else {
				c.addrsFold[fold] = name
			}
		}
		v.routes(key+".routes", a.Routes)
		v.sendAs(key+".send_as", a)
	}
	for _, name := range slices.Sorted(maps.Keys(c.Domains)) {
		if d := c.Domains[name]; d.Catchall != "" && c.Accounts[d.Catchall] == nil {
			v.add(d.key+".catchall", "unknown account %q (not in [accounts])", d.Catchall)
		}
	}
	v.aliases()
}

// sendAs parses an account's send_as into its sets.
func (v *checker) sendAs(key string, a *Account) {
	a.sendAsDomains, a.sendAsAddrs = map[string]bool{}, map[string]bool{}
	for i, e := range a.SendAs {
		ekey := fmt.Sprintf("%s[%d]", key, i)
		if strings.Contains(e, "@") {
			local, domain, err := parseAddress(e)
			if err != nil {
				v.add(ekey, "%v", err)
				continue
			}
			a.sendAsAddrs[local+"@"+domain] = true
			continue
		}
		d, err := mailaddr.ParseDomain(e)
		if err != nil {
			v.add(ekey, "want a domain or an address: %v", err)
			continue
		}
		a.sendAsDomains[d.Unicode] = true
	}
}

func isSpaceOrControl(r rune) bool {
	return r <= ' ' || r == 0x7f
}

// parseAddress parses an address as written in the file into its localpart
// and the key form of its domain (mailaddr.Domain.Unicode).
func parseAddress(addr string) (local, domain string, err error) {
	a, err := mailaddr.ParseAddress(addr)
	if err != nil {
		return "", "", err
	}
	if a.Literal != "" || strings.IndexFunc(a.Localpart, isSpaceOrControl) >= 0 {
		return "", "", fmt.Errorf("invalid address %q: want localpart@domain, without spaces or controls", addr)
	}
	return a.Localpart, a.Domain.Unicode, nil
}
