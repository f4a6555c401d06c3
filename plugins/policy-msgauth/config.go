package policymsgauth

import (
	"fmt"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/dnsresolve"
)

const (
	defaultTimeout       = 5 * time.Second
	maxTimeout           = time.Minute
	defaultMaxSignatures = 10
	maxMaxSignatures     = 50
)

// options are the keys of [policies.NAME.config].
type options struct {
	// Resolver is the recursive resolver, host:port (a host alone: port
	// 53). Default: the first nameserver of /etc/resolv.conf.
	Resolver string `toml:"resolver"`
	// TrustAD makes answers with the AD bit DNSSEC-authentic (logged per
	// method). Default: true only for a loopback resolver, as for
	// transport-direct.
	TrustAD *bool `toml:"trust_ad"`
	// DMARCFail is what a DMARC failure under p=reject does: "reject"
	// (550 5.7.1, the default) or "quarantine" (deliver to Junk).
	DMARCFail string `toml:"dmarc_fail"`
	// Timeout bounds the DNS work of one message, every exchange within
	// it; what is not answered in time is a temperror. Default "5s".
	Timeout string `toml:"timeout"`
	// MaxSignatures is how many DKIM-Signature fields are verified, from
	// the top; the rest are ignored. Default 10, at most 50.
	MaxSignatures *int `toml:"max_signatures"`
	// DNSCache is how many DNS answers are kept for their TTL, so that a
	// sender's records are asked once, not for every message (negative
	// answers for at most 5 minutes). 0: none. Default 10000.
	DNSCache *int `toml:"dns_cache"`
	// LogChecks logs a line per message checked with every result.
	// Default false: the Authentication-Results field has them.
	LogChecks bool `toml:"log_checks"`
}

// settings are one instance's validated options.
type settings struct {
	hostname      string // authserv-id (RFC 8601 §2.5), in A-labels.
	resolver      *dnsresolve.Resolver
	dmarcReject   sdk.Action // ActionReject or ActionQuarantine.
	timeout       time.Duration
	maxSignatures int
	logChecks     bool
}

// parseSettings decodes and validates the instance table of c.
func parseSettings(c *sdk.Configuration, hostname string) (*settings, error) {
	var o options
	if err := c.Decode(&o); err != nil {
		return nil, err
	}
	var errs sdk.ConfigErrors
	bad := func(key, format string, args ...any) {
		errs = append(errs, sdk.ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	s := &settings{dmarcReject: sdk.ActionReject, timeout: defaultTimeout, maxSignatures: defaultMaxSignatures}
	if h, ok := asciiDomain(hostname); !ok {
		// The authserv-id must name this server unambiguously (RFC 8601 §2.5).
		bad("", "the server's hostname %q is not a domain name to name results with", hostname)
	} else {
		s.hostname = h
	}
	r, err := dnsresolve.New(o.Resolver, o.TrustAD)
	if err != nil {
		bad("resolver", "%v", err)
	}
	s.resolver = r
	switch o.DMARCFail {
	case "", "reject":
	case "quarantine":
		s.dmarcReject = sdk.ActionQuarantine
	default:
		bad("dmarc_fail", "%q is not reject or quarantine", o.DMARCFail)
	}
	if o.Timeout != "" {
		d, err := time.ParseDuration(o.Timeout)
		switch {
		case err != nil:
			bad("timeout", "%q is not a duration such as \"5s\"", o.Timeout)
		case d <= 0 || d > maxTimeout:
			bad("timeout", "%v is out of range: more than 0, at most %v", d, maxTimeout)
		default:
			s.timeout = d
		}
	}
	if o.MaxSignatures != nil {
		if n := *o.MaxSignatures; n < 1 || n > maxMaxSignatures {
			bad("max_signatures", "%d is out of range 1-%d", n, maxMaxSignatures)
		} else {
			s.maxSignatures = n
		}
	}
	cache := dnsresolve.DefaultCacheSize
	if o.DNSCache != nil {
		if cache = *o.DNSCache; cache < 0 || cache > dnsresolve.MaxCacheSize {
			bad("dns_cache", "%d is out of range 0-%d", cache, dnsresolve.MaxCacheSize)
		}
	}
	if errs != nil {
		return nil, errs
	}
	r.Timeout = s.timeout
	s.logChecks = o.LogChecks
	if cache > 0 {
		r.Cache = dnsresolve.NewCache(cache)
	}
	return s, nil
}
