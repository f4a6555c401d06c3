// Package transportsocks is transport-socks, a Switchyard transport plugin
// that delivers messages straight to the MX hosts of each recipient domain,
// like transport-direct, but with every TCP connection made through a SOCKS5
// proxy (RFC 1928), optionally with username/password authentication (RFC
// 1929).
//
// The engine is that of sdk/direct, so DANE (RFC 7672), MTA-STS (RFC 8461)
// and REQUIRETLS (RFC 8689) apply end to end: TLS runs from this plugin to
// the destination host, through the proxy. SMTP connections and MTA-STS
// policy fetches go through the proxy to IP addresses resolved here; DNS
// queries go to the configured resolver directly, never through the proxy,
// since DANE needs the AD bit of a trusted resolver (RFC 7672 §2.1).
package transportsocks

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/net/proxy"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/direct"
)

// Main serves the plugin to the core that started it; it does not return.
func Main() {
	t := newTransport(sdk.NewLogger(slog.LevelInfo))
	sdk.Serve(&sdk.Plugin{Name: "transport-socks", Version: "0.1.0", Transport: t})
}

// config is an instance table, [transports.NAME.config]: the keys of
// transport-direct plus the proxy's.
type config struct {
	direct.Options
	// Address is the SOCKS5 proxy, host:port. Required.
	Address string `toml:"address"`
	// Username, with the password in PasswordFile, authenticates to the
	// proxy (RFC 1929). Empty: no authentication.
	Username string `toml:"username"`
	// PasswordFile holds the password, relative to the directory of
	// mta.toml; a final line ending is ignored.
	PasswordFile string `toml:"password_file"`
	// RemoteIPs are the proxy's public addresses, as destination hosts see
	// them; informational, for the SPF record of `mta dns records`.
	RemoteIPs []string `toml:"remote_ips"`
	// RemoteHostname is the name announced in EHLO, which should match the
	// reverse DNS of RemoteIPs. Default: ehlo, else the server's hostname.
	RemoteHostname string `toml:"remote_hostname"`
}

// newTransport is the plugin's transport: an engine per instance.
func newTransport(log *slog.Logger) *direct.Transport {
	return &direct.Transport{Name: "transport-socks", Log: log, Parse: parseConfig}
}

// parseConfig decodes and validates the instance table of c into an engine
// configuration dialing through the proxy. Problems are sdk.ConfigErrors
// naming the keys.
func parseConfig(c *sdk.Configuration, log *slog.Logger) (*direct.Config, error) {
	var cfg config
	if err := c.Decode(&cfg); err != nil {
		return nil, err
	}
	var errs sdk.ConfigErrors
	bad := func(key, format string, args ...any) {
		errs = append(errs, sdk.ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if err := checkAddress(cfg.Address); err != nil {
		bad("address", "%v", err)
	}
	for i, s := range cfg.RemoteIPs {
		if _, err := netip.ParseAddr(s); err != nil {
			bad(fmt.Sprintf("remote_ips[%d]", i), "%q is not an IP address", s)
		}
	}
	var auth *proxy.Auth
	switch {
	case cfg.Username == "" && cfg.PasswordFile != "":
		bad("username", "required with password_file")
	case cfg.Username != "" && cfg.PasswordFile == "":
		bad("password_file", "required with username")
	case cfg.Username != "":
		pw, err := os.ReadFile(direct.ConfigPath(c, cfg.PasswordFile))
		if err != nil {
			bad("password_file", "%v", err)
			break
		}
		// RFC 1929 §2: both fields are 1 to 255 octets.
		p := strings.TrimSuffix(strings.TrimSuffix(string(pw), "\n"), "\r")
		if len(cfg.Username) > 255 {
			bad("username", "longer than 255 bytes (RFC 1929)")
		}
		if p == "" || len(p) > 255 {
			bad("password_file", "the password must be 1 to 255 bytes (RFC 1929)")
		}
		auth = &proxy.Auth{User: cfg.Username, Password: p}
	}
	switch {
	case cfg.RemoteHostname == "":
	case cfg.EHLO != "" && !strings.EqualFold(cfg.EHLO, cfg.RemoteHostname):
		bad("remote_hostname", "%q differs from ehlo %q; set only one", cfg.RemoteHostname, cfg.EHLO)
	default:
		cfg.EHLO = cfg.RemoteHostname
	}
	var dialer proxy.ContextDialer
	if errs == nil {
		d, err := proxy.SOCKS5("tcp", cfg.Address, auth, proxy.Direct)
		if err != nil {
			bad("address", "%v", err)
		} else if dialer, _ = d.(proxy.ContextDialer); dialer == nil {
			bad("address", "the SOCKS5 dialer cannot take a context")
		}
	}
	dcfg, derrs := cfg.Options.Config(c, dialer, log)
	errs = append(errs, derrs...)
	if errs != nil {
		return nil, errs
	}
	return dcfg, nil
}

// checkAddress reports whether s is a usable proxy address, host:port.
func checkAddress(s string) error {
	if s == "" {
		return errors.New("required: the SOCKS5 proxy, host:port")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q: port %q is not in 1-65535", s, port)
	}
	return nil
}
