// Package dnsrecords computes the DNS records an operator publishes for a
// local domain of a Switchyard server, from its configuration and TLS
// certificate: MX (RFC 5321 §5.1), SPF (RFC 7208), DMARC (RFC 7489),
// MTA-STS (RFC 8461) with its policy file, SMTP TLS reporting (RFC 8460) and
// a DANE-EE TLSA record (RFC 7672). It only computes; nothing is looked up
// or written.
package dnsrecords

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/sdk/dane"
	"github.com/switchyard-mta/switchyard/sdk/dkimkey"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// SOCKSPlugin names the plugin whose transports send through a SOCKS5 proxy:
// their mail leaves from the proxy's remote_ips.
const SOCKSPlugin = "transport-socks"

// DirectPlugin names the plugin whose transports connect from this host
// itself, covered by the "mx" and "a" SPF terms.
const DirectPlugin = "transport-direct"

// MTASTSMaxAge is the max_age of the MTA-STS policy, in seconds: one week
// (RFC 8461 §3.2 suggests weeks or more).
const MTASTSMaxAge = 604800

// ErrDomain: the domain is not a local domain of the configuration.
var ErrDomain = errors.New("dnsrecords: domain not in [domains]")

// Record is one resource record to publish.
type Record struct {
	Name    string // Owner name, absolute: "example.org.".
	Type    string // "MX", "TXT", "A", "AAAA" or "TLSA".
	Data    string // RDATA as in a zone file; TXT strings quoted and split at 255 octets.
	Comment string // Why to publish it and what to watch; lines without the "; ".
}

// String formats r as a zone-file line, without TTL: "example.org. IN MX 10 mail.example.org.".
func (r Record) String() string {
	return fmt.Sprintf("%s IN %s %s", r.Name, r.Type, r.Data)
}

// Set is what to publish for one domain.
type Set struct {
	Domain   string   // The domain in A-labels, without trailing dot.
	Hostname string   // The server's hostname (the MX target) in A-labels, without trailing dot.
	Records  []Record // In order: MX, SPF, HELO SPF, DKIM, DMARC, MTA-STS, TLS-RPT, TLSA.
	// Policy is the MTA-STS policy file, served at PolicyURL (RFC 8461 §3.3).
	Policy    string
	PolicyURL string
	// Notes are remarks that belong to no record, e.g. why TLSA is missing.
	Notes []string // Lines separated by "\n".
}

// Generate computes the records for domain, a key of cfg.Domains (any case,
// U-labels or A-labels, trailing dot allowed). cert is the server's
// certificate, the leaf that inbound SMTP presents; nil leaves out TLSA. An
// invalid remote_ips entry of a SOCKS transport is an error, as is a domain
// not in cfg.Domains (ErrDomain).
func Generate(cfg *config.Config, domain string, cert *x509.Certificate) (*Set, error) {
	d, err := aLabels(domain)
	if err != nil {
		return nil, fmt.Errorf("domain %q: %w", domain, err)
	}
	local := false
	for k := range cfg.Domains {
		if a, err := aLabels(k); err == nil && a == d {
			local = true
			break
		}
	}
	if !local {
		return nil, fmt.Errorf("%w: %q", ErrDomain, domain)
	}
	host, err := aLabels(cfg.Hostname)
	if err != nil {
		return nil, fmt.Errorf("hostname %q: %w", cfg.Hostname, err)
	}
	helos, others, err := senders(cfg, host)
	if err != nil {
		return nil, err
	}

	s := &Set{Domain: d, Hostname: host, PolicyURL: "https://mta-sts." + d + "/.well-known/mta-sts.txt"}
	add := func(name, typ, data string, comment ...string) {
		s.Records = append(s.Records, Record{Name: name + ".", Type: typ, Data: data, Comment: strings.Join(comment, "\n")})
	}

	add(d, "MX", "10 "+host+".",
		fmt.Sprintf("MX (RFC 5321 §5.1): mail for %s goes to %s.", d, host),
		host+" needs A and/or AAAA records with the server's public",
		"addresses, and their PTR records should name it (many receivers check).")

	// SPF for the domain: the MX host sends, and so do the SOCKS proxies.
	var all []netip.Addr
	for _, h := range helos {
		all = append(all, h.ips...)
	}
	spfComment := []string{
		"SPF (RFC 7208): who may send mail from @" + d + ": the MX host (\"mx\"),",
		"plus the public addresses of every SOCKS transport's proxy (remote_ips).",
		"\"~all\" (softfail, RFC 7208 §8.5), not \"-all\": with DMARC published, the",
		"receiver's decision comes from DMARC, while \"-all\" makes some receivers",
		"reject at SMTP time before DMARC runs, so forwarded mail that a DKIM",
		"signature would later save is lost (RFC 7489 §10.1). Pick \"-all\" only",
		"when every path mail leaves by is listed here and DKIM signs all of it.",
	}
	for _, o := range others {
		spfComment = append(spfComment, fmt.Sprintf("Transport %q: %s.", o.name, o.why))
	}
	add(d, "TXT", txt("v=spf1 mx"+ipTerms(all)+" ~all"), spfComment...)

	// SPF for each HELO name (RFC 7208 §2.3): receivers check it first.
	for _, h := range helos {
		if h.name == host {
			add(host, "TXT", txt("v=spf1 a"+ipTerms(h.ips)+" -all"),
				"SPF for the HELO name "+host+" (RFC 7208 §2.3): only this",
				"server says HELO so, and no forwarder reuses it, so \"-all\" is safe.",
				"Bounces (empty sender) are checked against this record alone.")
			continue
		}
		add(h.name, "TXT", txt("v=spf1"+ipTerms(h.ips)+" -all"),
			fmt.Sprintf("SPF for %s, the HELO name (remote_hostname) of a SOCKS transport", h.name),
			"(RFC 7208 §2.3): mail with it leaves from the proxy's remote_ips.")
		for i, ip := range h.ips {
			typ := "A"
			if ip.Is6() {
				typ = "AAAA"
			}
			comment := ""
			if i == 0 {
				comment = "Addresses of " + h.name + ", the proxy's public IPs; their PTR\n" +
					"records should name it (forward-confirmed reverse DNS, which many\n" +
					"receivers require)."
			}
			add(h.name, typ, ip.String(), comment)
		}
	}

	keys, err := dkimKeys(cfg, d)
	if err != nil {
		return nil, err
	}
	for i, k := range keys {
		comment := []string{}
		if i == 0 {
			comment = []string{
				"DKIM (RFC 6376 §3.6.2): the public keys policy-dkimsign signs mail from",
				"@" + d + " with, one record per selector. Publish a new key's record before",
				"the key signs, and keep an old one's until mail signed with it is delivered.",
			}
		}
		add(strings.TrimSuffix(dkimkey.Name(k.selector, d), "."), "TXT", dkimkey.TXTData(k.record), comment...)
	}

	dmarc := []string{
		"DMARC (RFC 7489 §6.3): receivers quarantine mail from @" + d + " that passes",
		"neither aligned SPF nor aligned DKIM, and send aggregate reports to",
		"postmaster@" + d + " (an address of this domain needs no external",
		"authorization, RFC 7489 §7.1).",
	}
	if len(keys) == 0 {
		dmarc = append(dmarc, "p=quarantine, not p=reject: without DKIM signing",
			"(policy-dkimsign), only SPF can align, and SPF fails for forwarded mail",
			"and mailing lists; quarantine lands those in spam instead of bouncing them.",
			"Move to p=reject once DKIM signs everything sent.")
	} else {
		dmarc = append(dmarc, "DKIM signs mail sent here: once reports show that all",
			"of it passes, move to p=reject.")
	}
	add("_dmarc."+d, "TXT", txt("v=DMARC1; p=quarantine; rua=mailto:postmaster@"+d), dmarc...)

	policy, mode := MTASTSPolicy(host, cert)
	s.Policy = policy
	stsComment := []string{
		"MTA-STS (RFC 8461 §3.1): senders fetch the policy below from",
		s.PolicyURL + " (RFC 8461 §3.3):",
		"mta-sts." + d + " needs A/AAAA records and an HTTPS server with a",
		"certificate valid for that name under the web PKI. id is a hash of the",
		"policy: it changes exactly when the policy does, so senders fetch it again.",
	}
	if mode != "enforce" {
		stsComment = append(stsComment,
			"Mode testing: the server's certificate is self-signed (or missing), and under",
			"enforce senders require one that validates under the web PKI (RFC 8461 §4.1).",
			"Configure a CA-issued tls.cert (not tls.self_signed) to get mode enforce.")
	}
	add("_mta-sts."+d, "TXT", txt("v=STSv1; id="+MTASTSID(policy)), stsComment...)

	add("_smtp._tls."+d, "TXT", txt("v=TLSRPTv1; rua=mailto:postmaster@"+d),
		"Optional: SMTP TLS reporting (RFC 8460 §3): senders report failures to",
		"establish TLS (MTA-STS, DANE) to postmaster@"+d+".")

	if cert == nil {
		s.Notes = append(s.Notes, "No TLSA record: no certificate yet. Configure tls.cert, or start\n`mta serve` once with tls.self_signed, and run this again.")
		return s, nil
	}
	r, err := dane.NewRecord(dane.UsageDANEEE, dane.SelectorSPKI, dane.MatchSHA256, cert)
	if err != nil {
		return nil, fmt.Errorf("tlsa record: %w", err)
	}
	add("_25._tcp."+host, "TLSA", r.String(),
		"DANE (RFC 7672): \"3 1 1\" is DANE-EE, the SHA-256 of the certificate's public",
		"key (RFC 7671 §5.1); names and dates are not checked, so a self-signed",
		"certificate works too (RFC 7672 §3.1.1). Senders use it only when the zone",
		"of "+host+" is DNSSEC-signed (RFC 7672 §2.2). Update it when the",
		"key changes: publish the new record beside the old one, wait the TTL, then",
		"deploy the key (RFC 7671 §8.1). A renewal that keeps the key keeps it valid.")
	return s, nil
}

// MTASTSPolicy returns the MTA-STS policy file for the MX host hostname
// (A-labels) and the mode it has (RFC 8461 §3.2): "enforce", or "testing"
// when cert is nil or self-signed, which senders enforcing the policy would
// refuse (RFC 8461 §4.1). Lines end in LF, which RFC 8461 §3.2 allows.
func MTASTSPolicy(hostname string, cert *x509.Certificate) (policy, mode string) {
	mode = "enforce"
	if cert == nil || selfSigned(cert) {
		mode = "testing"
	}
	policy = fmt.Sprintf("version: STSv1\nmode: %s\nmx: %s\nmax_age: %d\n", mode, hostname, MTASTSMaxAge)
	return policy, mode
}

// MTASTSID returns the id of the _mta-sts TXT record for policy: the first
// 16 hex digits of its SHA-256, within the 1 to 32 alphanumerics of RFC 8461
// §3.1, so the id changes exactly when the policy does.
func MTASTSID(policy string) string {
	h := sha256.Sum256([]byte(policy))
	return hex.EncodeToString(h[:8])
}

// selfSigned reports whether cert signed itself, as the generated one does.
func selfSigned(cert *x509.Certificate) bool {
	// Not CheckSignatureFrom: it wants the parent to be a CA, which the
	// generated certificate is not.
	return bytes.Equal(cert.RawIssuer, cert.RawSubject) &&
		cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature) == nil
}

// helo is a HELO name mail leaves with, and the addresses it leaves from,
// beyond those of the name's own A/AAAA records.
type helo struct {
	name string
	ips  []netip.Addr
}

// other is a transport that may send from addresses this package cannot know.
type other struct{ name, why string }

// senders returns the HELO names of the server (hostname first) and its
// SOCKS transports with their remote_ips, and the transports relaying
// elsewhere (smarthosts), sorted by name.
func senders(cfg *config.Config, hostname string) ([]helo, []other, error) {
	helos := []helo{{name: hostname}}
	var others []other
	names := make([]string, 0, len(cfg.Transport))
	for n := range cfg.Transport {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		t := cfg.Transport[n]
		if t == nil {
			continue
		}
		switch pluginName(cfg, t.Plugin) {
		case SOCKSPlugin:
		case DirectPlugin:
			continue // Leaves from the host itself: "mx" and "a" cover it.
		default:
			others = append(others, other{n, fmt.Sprintf("plugin %q may relay through other servers: if so, add their addresses or include:", t.Plugin)})
			continue
		}
		ips, err := remoteIPs(t.Config["remote_ips"])
		if err != nil {
			return nil, nil, fmt.Errorf("transports.%s.config.remote_ips: %w", n, err)
		}
		if len(ips) == 0 {
			others = append(others, other{n, "SOCKS transport without remote_ips: set them to the proxy's public addresses"})
			continue
		}
		name := hostname
		rh, ok := t.Config["remote_hostname"].(string)
		if !ok && t.Config["remote_hostname"] != nil {
			return nil, nil, fmt.Errorf("transports.%s.config.remote_hostname: want a string", n)
		}
		if rh != "" {
			if name, err = aLabels(rh); err != nil {
				return nil, nil, fmt.Errorf("transports.%s.config.remote_hostname %q: %w", n, rh, err)
			}
		}
		i := slices.IndexFunc(helos, func(h helo) bool { return h.name == name })
		if i < 0 {
			helos = append(helos, helo{name: name})
			i = len(helos) - 1
		}
		for _, ip := range ips {
			if !slices.Contains(helos[i].ips, ip) {
				helos[i].ips = append(helos[i].ips, ip)
			}
		}
	}
	return helos, others, nil
}

// DKIMSignPlugin names the plugin whose [[policies.NAME.config.keys]]
// (domain, selector, key_file) sign mail: their records are published.
const DKIMSignPlugin = "policy-dkimsign"

// dkimKey is the record of one signing key of the domain.
type dkimKey struct {
	selector, record string
}

// dkimKeys returns the DKIM keys of the policy-dkimsign instances that sign
// for domain d (A-labels), by selector.
func dkimKeys(cfg *config.Config, d string) ([]dkimKey, error) {
	var keys []dkimKey
	for _, name := range slices.Sorted(maps.Keys(cfg.Policies)) {
		p := cfg.Policies[name]
		if pluginName(cfg, p.Plugin) != DKIMSignPlugin {
			continue
		}
		var list []map[string]any // An array of tables, as TOML decodes it.
		switch v := p.Config["keys"].(type) {
		case []map[string]any:
			list = v
		case []any:
			for _, e := range v {
				t, _ := e.(map[string]any)
				list = append(list, t)
			}
		}
		for i, t := range list {
			domain, _ := t["domain"].(string)
			selector, _ := t["selector"].(string)
			file, _ := t["key_file"].(string)
			if a, err := aLabels(domain); err != nil || a != d {
				continue
			}
			if !filepath.IsAbs(file) {
				file = filepath.Join(cfg.Dir, file)
			}
			key, err := dkimkey.Load(file)
			if err == nil {
				var record string
				if record, err = dkimkey.Record(key.Public()); err == nil {
					keys = append(keys, dkimKey{selector, record})
					continue
				}
			}
			return nil, fmt.Errorf("policies.%s.config.keys[%d].key_file: %w", name, i, err)
		}
	}
	slices.SortFunc(keys, func(a, b dkimKey) int { return strings.Compare(a.selector, b.selector) })
	return keys, nil
}

// pluginName is the plugin a transport or policy names: its [plugins] key, or the
// file name of the plugin's path when that is a known plugin and the key is
// not (e.g. key "socks" with path "bin/plugins/transport-socks").
func pluginName(cfg *config.Config, key string) string {
	known := func(n string) bool { return n == SOCKSPlugin || n == DirectPlugin || n == DKIMSignPlugin }
	if p := cfg.Plugins[key]; p != nil && !known(key) && known(filepath.Base(p.Path)) {
		return filepath.Base(p.Path)
	}
	return key
}

// remoteIPs parses remote_ips as decoded from TOML: an array of IP strings.
func remoteIPs(v any) ([]netip.Addr, error) {
	var list []any
	switch v := v.(type) {
	case nil:
		return nil, nil
	case []any:
		list = v
	case []string:
		for _, s := range v {
			list = append(list, s)
		}
	default:
		return nil, fmt.Errorf("want an array of IP addresses, got %T", v)
	}
	var ips []netip.Addr
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("want an IP address string, got %T", e)
		}
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Zone() != "" {
			return nil, fmt.Errorf("invalid IP address %q", s)
		}
		ips = append(ips, ip.Unmap())
	}
	return ips, nil
}

// ipTerms returns " ip4:a ip6:b" for ips (RFC 7208 §5.6).
func ipTerms(ips []netip.Addr) string {
	var b strings.Builder
	for _, ip := range ips {
		if ip.Is4() {
			b.WriteString(" ip4:" + ip.String())
		} else {
			b.WriteString(" ip6:" + ip.String())
		}
	}
	return b.String()
}

// txt quotes s as TXT RDATA: character-strings of at most 255 octets, which
// receivers concatenate (RFC 7208 §3.3). s is ASCII without quotes or
// backslashes.
func txt(s string) string {
	var parts []string
	for len(s) > 255 {
		parts = append(parts, `"`+s[:255]+`"`)
		s = s[255:]
	}
	return strings.Join(append(parts, `"`+s+`"`), " ")
}

// aLabels returns d in lower-case A-labels without a trailing dot (RFC 5891 §5).
func aLabels(d string) (string, error) {
	n, err := mailaddr.ParseDomain(d)
	return n.ASCII, err
}

// Zone returns s as zone-file text: each record under its comment, then the
// MTA-STS policy file as a comment block. Names are absolute; TTLs are left
// to the zone's $TTL.
func (s *Set) Zone() string {
	var b strings.Builder
	fmt.Fprintf(&b, "; DNS records for %s, mail server %s.\n", s.Domain, s.Hostname)
	for _, r := range s.Records {
		if r.Comment != "" {
			b.WriteString("\n")
			for _, l := range strings.Split(r.Comment, "\n") {
				b.WriteString("; " + l + "\n")
			}
		}
		b.WriteString(r.String() + "\n")
	}
	b.WriteString("\n; MTA-STS policy file, to serve as text/plain at\n; " + s.PolicyURL + "\n")
	for _, l := range strings.SplitAfter(strings.TrimSuffix(s.Policy, "\n"), "\n") {
		b.WriteString(";   " + strings.TrimSuffix(l, "\n") + "\n")
	}
	for _, n := range s.Notes {
		b.WriteString("\n; " + strings.ReplaceAll(n, "\n", "\n; ") + "\n")
	}
	return b.String()
}
