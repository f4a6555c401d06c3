package direct

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/dnsresolve"
	"github.com/switchyard-mta/switchyard/sdk/mtasts"
	"github.com/switchyard-mta/switchyard/sdk/smtpclient"
)

// Options are the configuration keys of a direct-delivery transport
// instance ([transports.NAME.config]), for sdk.Configuration.Decode. A
// plugin with more keys embeds Options in its own struct.
type Options struct {
	// Resolver is the recursive resolver, host:port. Default: the first
	// nameserver of /etc/resolv.conf.
	Resolver string `toml:"resolver"`
	// TrustAD makes answers with the AD bit DNSSEC-authentic, which DANE
	// needs. Default: true only for a loopback resolver.
	TrustAD *bool `toml:"trust_ad"`
	// Port is the SMTP port of destination hosts. Default 25.
	Port int `toml:"port"`
	// CAFile holds extra PEM roots, besides the system ones, for MTA-STS
	// policy fetches and verification; relative to the configuration
	// directory.
	CAFile string `toml:"ca_file"`
	// MTASTSPort is the HTTPS port of MTA-STS policy fetches. Default 443.
	MTASTSPort int `toml:"mta_sts_port"`
	// EHLO is the name announced in EHLO. Default: the server's hostname.
	EHLO string `toml:"ehlo"`
	// IdleTimeout is how long a session is kept for the next delivery to
	// the same host, as a Go duration. Default "5s"; "0s": no reuse.
	IdleTimeout string `toml:"idle_timeout"`
	// MaxIdle bounds the sessions kept for reuse. Default 100.
	MaxIdle int `toml:"max_idle"`
	// DNSCache is how many DNS answers are kept for their TTL (negative
	// ones for at most 5 minutes), so that a destination's records are
	// asked once, not for every message. 0: none. Default 10000.
	DNSCache *int `toml:"dns_cache"`
}

// DefaultIdleTimeout is the default of Options.IdleTimeout: long enough
// for the next message of a burst, short enough to hold few connections
// a server would rather give to others (Postfix keeps them 2s).
const DefaultIdleTimeout = 5 * time.Second

// Config validates o for the instance c and returns the engine
// configuration: SMTP connections and MTA-STS policy fetches go through
// dialer (nil: direct), MTA-STS policies are cached in c.DataDir. Problems
// are returned as sdk.ConfigErrors naming the keys.
func (o *Options) Config(c *sdk.Configuration, dialer smtpclient.Dialer, log *slog.Logger) (*Config, sdk.ConfigErrors) {
	var errs sdk.ConfigErrors
	bad := func(key, format string, args ...any) {
		errs = append(errs, sdk.ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	r, err := dnsresolve.New(o.Resolver, o.TrustAD)
	if err != nil {
		bad("resolver", "%v", err)
	}
	if o.Port < 0 || o.Port > 65535 {
		bad("port", "%d is out of range 1-65535", o.Port)
	}
	if o.MTASTSPort < 0 || o.MTASTSPort > 65535 {
		bad("mta_sts_port", "%d is out of range 1-65535", o.MTASTSPort)
	}
	var roots *x509.CertPool
	if o.CAFile != "" {
		if roots, err = loadRoots(ConfigPath(c, o.CAFile)); err != nil {
			bad("ca_file", "%v", err)
		}
	}
	ehlo := o.EHLO
	if ehlo == "" {
		ehlo = c.Hostname
	}
	switch {
	case ehlo == "":
		bad("ehlo", "required: the server has no hostname to announce")
	case strings.ContainsAny(ehlo, " \t\r\n"):
		bad("ehlo", "%q contains white space", ehlo)
	}
	idle := DefaultIdleTimeout
	if o.IdleTimeout != "" {
		d, err := time.ParseDuration(o.IdleTimeout)
		switch {
		case err != nil:
			bad("idle_timeout", "%v", err)
		case d < 0 || d > time.Hour:
			bad("idle_timeout", "%v is out of range 0s-1h", d)
		}
		idle = d
	}
	if o.MaxIdle < 0 || o.MaxIdle > 10_000 {
		bad("max_idle", "%d is out of range 0-10000", o.MaxIdle)
	}
	cache := dnsresolve.DefaultCacheSize
	if o.DNSCache != nil {
		if cache = *o.DNSCache; cache < 0 || cache > dnsresolve.MaxCacheSize {
			bad("dns_cache", "%d is out of range 0-%d", cache, dnsresolve.MaxCacheSize)
		}
	}
	if c.DataDir == "" {
		bad("", "the plugin has no data directory for the MTA-STS policy cache")
	}
	if errs != nil {
		return nil, errs
	}
	if cache > 0 {
		r.Cache = dnsresolve.NewCache(cache)
	}
	return &Config{
		Resolver:    r,
		Port:        o.Port,
		EHLO:        ehlo,
		Dialer:      dialer,
		RootCAs:     roots,
		MTASTS:      &mtasts.Cache{Dir: filepath.Join(c.DataDir, "mta-sts"), Log: log},
		FetchPolicy: PolicyFetcher(r, dialer, roots, o.MTASTSPort),
		Log:         log,
		IdleTimeout: idle,
		MaxIdle:     o.MaxIdle,
	}, nil
}

// ConfigPath returns path, made absolute relative to c.ConfigDir.
func ConfigPath(c *sdk.Configuration, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(c.ConfigDir, path)
}

// loadRoots returns the system roots plus the PEM certificates at path.
func loadRoots(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate found", path)
	}
	return roots, nil
}
