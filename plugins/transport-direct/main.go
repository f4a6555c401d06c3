// Command transport-direct is a Switchyard transport plugin that delivers
// messages straight to the MX hosts of each recipient domain (RFC 5321 §5.1)
// with the engine of sdk/direct: DNSSEC-aware lookups, DANE (RFC 7672),
// MTA-STS (RFC 8461) with policies cached in the plugin's data directory,
// opportunistic STARTTLS otherwise (RFC 3207, RFC 7435), and REQUIRETLS
// (RFC 8689).
package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/direct"
	"github.com/switchyard-mta/switchyard/sdk/dnsresolve"
	"github.com/switchyard-mta/switchyard/sdk/mtasts"
)

func main() {
	t := newTransport(sdk.NewLogger(slog.LevelInfo))
	sdk.Serve(&sdk.Plugin{Name: "transport-direct", Version: "0.1.0", Transport: t})
}

// config is an instance table, [transports.NAME.config].
type config struct {
	// Resolver is the recursive resolver, host:port. Default: the first
	// nameserver of /etc/resolv.conf.
	Resolver string `toml:"resolver"`
	// TrustAD makes answers with the AD bit DNSSEC-authentic, which DANE
	// needs. Default: true only for a loopback resolver.
	TrustAD *bool `toml:"trust_ad"`
	// Port is the SMTP port of destination hosts. Default 25.
	Port int `toml:"port"`
	// CAFile holds extra PEM roots, besides the system ones, for MTA-STS
	// policy fetches and verification; relative to the directory of mta.toml.
	CAFile string `toml:"ca_file"`
	// MTASTSPort is the HTTPS port of MTA-STS policy fetches. Default 443.
	MTASTSPort int `toml:"mta_sts_port"`
	// EHLO is the name announced in EHLO. Default: the server's hostname.
	EHLO string `toml:"ehlo"`
}

// transport delivers for each configured instance with its engine.
type transport struct {
	log *slog.Logger

	mu      sync.Mutex
	engines map[string]*direct.Engine // By instance name.
}

var (
	_ sdk.Transport  = (*transport)(nil)
	_ sdk.Configurer = (*transport)(nil)
)

func newTransport(log *slog.Logger) *transport {
	return &transport{log: log, engines: map[string]*direct.Engine{}}
}

// Configure validates an instance table and, unless c.CheckOnly, puts it in
// force.
func (t *transport) Configure(ctx context.Context, c *sdk.Configuration) error {
	if c.Kind != sdk.KindTransport {
		return sdk.ConfigErrors{{Msg: "transport-direct takes configuration only as a transport"}}
	}
	cfg, err := parseConfig(c, t.log.With(slog.String("instance", c.Instance)))
	if err != nil {
		return err
	}
	if c.CheckOnly {
		return nil
	}
	e := direct.New(*cfg)
	t.mu.Lock()
	t.engines[c.Instance] = e
	t.mu.Unlock()
	return nil
}

// parseConfig decodes and validates the instance table of c into an engine
// configuration. Problems are sdk.ConfigErrors naming the keys.
func parseConfig(c *sdk.Configuration, log *slog.Logger) (*direct.Config, error) {
	var cfg config
	if err := c.Decode(&cfg); err != nil {
		return nil, err
	}
	var errs sdk.ConfigErrors
	bad := func(key, format string, args ...any) {
		errs = append(errs, sdk.ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	r, err := dnsresolve.New(cfg.Resolver, cfg.TrustAD)
	if err != nil {
		bad("resolver", "%v", err)
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		bad("port", "%d is out of range 1-65535", cfg.Port)
	}
	if cfg.MTASTSPort < 0 || cfg.MTASTSPort > 65535 {
		bad("mta_sts_port", "%d is out of range 1-65535", cfg.MTASTSPort)
	}
	var roots *x509.CertPool
	if cfg.CAFile != "" {
		path := cfg.CAFile
		if !filepath.IsAbs(path) {
			path = filepath.Join(c.ConfigDir, path)
		}
		if roots, err = loadRoots(path); err != nil {
			bad("ca_file", "%v", err)
		}
	}
	ehlo := cfg.EHLO
	if ehlo == "" {
		ehlo = c.Hostname
	}
	switch {
	case ehlo == "":
		bad("ehlo", "required: the server has no hostname to announce")
	case strings.ContainsAny(ehlo, " \t\r\n"):
		bad("ehlo", "%q contains white space", ehlo)
	}
	if c.DataDir == "" {
		bad("", "the plugin has no data directory for the MTA-STS policy cache")
	}
	if errs != nil {
		return nil, errs
	}
	return &direct.Config{
		Resolver:    r,
		Port:        cfg.Port,
		EHLO:        ehlo,
		RootCAs:     roots,
		MTASTS:      &mtasts.Cache{Dir: filepath.Join(c.DataDir, "mta-sts"), Log: log},
		FetchPolicy: direct.PolicyFetcher(r, nil, roots, cfg.MTASTSPort),
		Log:         log,
	}, nil
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

// Deliver delivers req with the engine of req.Instance.
func (t *transport) Deliver(ctx context.Context, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	t.mu.Lock()
	e := t.engines[req.Instance]
	t.mu.Unlock()
	if e == nil {
		return nil, fmt.Errorf("transport-direct: instance %q is not configured", req.Instance)
	}
	return e.Deliver(ctx, req)
}
