package transportsubmission

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/clientcert"
	"github.com/switchyard-mta/switchyard/sdk/smtpclient"
)

// config is an instance table, [transports.NAME.config].
type config struct {
	// Host is the smarthost to connect to; also the name its certificate must
	// match. Required.
	Host string `toml:"host"`
	// Port to connect to. 0: 25 for tls = "none", 587 for "starttls" (RFC
	// 6409), 465 for "tls" (RFC 8314).
	Port int `toml:"port"`
	// TLS is how the connection is protected: "none" (plain SMTP),
	// "starttls" (RFC 3207; required, never a plaintext fallback) or "tls"
	// (implicit TLS, RFC 8314 §3). Default "starttls".
	TLS string `toml:"tls"`
	// Username for SMTP AUTH (RFC 4954). AUTH is done only if set.
	Username string `toml:"username"`
	// PasswordFile holds the password on its first line; relative to the
	// directory of mta.toml. Read at Configure; required with Username.
	PasswordFile string `toml:"password_file"`
	// Mechanisms are the SASL mechanisms to use, in order of preference:
	// the first one the smarthost offers is used. Supported:
	// SCRAM-SHA-256-PLUS, SCRAM-SHA-256, SCRAM-SHA-1-PLUS, SCRAM-SHA-1,
	// CRAM-MD5, PLAIN, LOGIN. Default: the first of these, in this order,
	// that the smarthost offers (see smtpclient.SelectMechanism).
	Mechanisms []string `toml:"mechanisms"`
	// ClientKey is a PEM private key that logs in by TLS client
	// certificate: AUTH EXTERNAL (RFC 4422 appendix A) when the smarthost
	// offers it, before any password login. ClientCert is its PEM
	// certificate; without it, one next to the key in ClientKey is used,
	// else a minimal self-signed one is made (a smarthost that knows keys,
	// not certificates, as Switchyard's mta tlspubkey, needs no more).
	// Relative to the directory of mta.toml; read at Configure.
	ClientCert string `toml:"client_cert"`
	ClientKey  string `toml:"client_key"`
	// InsecureSkipVerify accepts any smarthost certificate. For testing only:
	// a warning is logged at Configure.
	InsecureSkipVerify bool `toml:"insecure_skip_verify"`
	// CAFile holds extra PEM root certificates trusted besides the system
	// roots; relative to the directory of mta.toml.
	CAFile string `toml:"ca_file"`
	// EHLO is the name announced in EHLO. Default: the server's hostname.
	EHLO string `toml:"ehlo"`
	// MaxConnections bounds the connections to the smarthost, busy or idle.
	// Default 20.
	MaxConnections int `toml:"max_connections"`
	// IdleTimeout is how long an unused connection is kept for reuse before
	// QUIT. Default "30s".
	IdleTimeout string `toml:"idle_timeout"`
	// ConnectTimeout bounds the TCP connection. Default "30s".
	ConnectTimeout string `toml:"connect_timeout"`
	// CommandTimeout bounds each command and its reply, and the TLS
	// handshake; the reply to the end of message data gets twice as long.
	// Default "5m" (RFC 5321 §4.5.3.2).
	CommandTimeout string `toml:"command_timeout"`
}

// tlsMode is the value of config.TLS.
type tlsMode string

const (
	tlsNone     tlsMode = "none"
	tlsStartTLS tlsMode = "starttls"
	tlsImplicit tlsMode = "tls"
)

// defaultPorts by TLS mode: SMTP (RFC 5321), submission (RFC 6409) and
// submissions (RFC 8314 §7.3).
var defaultPorts = map[tlsMode]int{tlsNone: 25, tlsStartTLS: 587, tlsImplicit: 465}

// settings is a validated config with its defaults applied and its files read.
type settings struct {
	host         string
	addr         string // host:port
	mode         tlsMode
	client       smtpclient.Config
	verification sdk.Verification
	username     string
	password     string
	clientCert   bool     // A TLS client certificate logs in by EXTERNAL.
	mechanisms   []string // Upper case; empty: the default choice.
	maxConns     int
	idleTimeout  time.Duration
}

// Timeouts besides the configured ones.
const (
	quitTimeout = 10 * time.Second
	rsetTimeout = 20 * time.Second // As Postfix's smtp_rset_timeout.
)

// tlsModes maps config.TLS to the client's modes.
var tlsModes = map[tlsMode]smtpclient.TLSMode{tlsNone: smtpclient.TLSNone, tlsStartTLS: smtpclient.TLSStartTLS, tlsImplicit: smtpclient.TLSImplicit}

// parseConfig decodes and validates the instance table of c. Problems are
// sdk.ConfigErrors naming the keys.
func parseConfig(c *sdk.Configuration) (*settings, error) {
	var cfg config
	if err := c.Decode(&cfg); err != nil {
		return nil, err
	}
	var errs sdk.ConfigErrors
	bad := func(key, format string, args ...any) {
		errs = append(errs, sdk.ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	s := &settings{
		host:     cfg.Host,
		mode:     tlsMode(cfg.TLS),
		username: cfg.Username,
		maxConns: cfg.MaxConnections,
	}

	switch {
	case cfg.Host == "":
		bad("host", "required")
	case strings.ContainsAny(cfg.Host, " \t\r\n/:") && net.ParseIP(cfg.Host) == nil:
		bad("host", "%q is not a host name or IP address", cfg.Host)
	}
	if s.mode == "" {
		s.mode = tlsStartTLS
	}
	port, ok := defaultPorts[s.mode]
	if !ok {
		bad("tls", `%q is not one of "none", "starttls", "tls"`, cfg.TLS)
	}
	switch {
	case cfg.Port < 0 || cfg.Port > 65535:
		bad("port", "%d is out of range 1-65535", cfg.Port)
	case cfg.Port > 0:
		port = cfg.Port
	}
	s.addr = net.JoinHostPort(cfg.Host, strconv.Itoa(port))

	if cfg.Username != "" {
		if s.mode == tlsNone {
			// RFC 4954 §4: no password in the clear.
			bad("username", `AUTH needs TLS; with tls = "none" the credentials would travel in clear`)
		}
		if strings.ContainsAny(cfg.Username, "\x00\r\n") {
			bad("username", "contains a NUL or line break")
		}
		if cfg.PasswordFile == "" {
			bad("password_file", "required with username")
		} else if pw, err := readPassword(resolve(c.ConfigDir, cfg.PasswordFile)); err != nil {
			bad("password_file", "%v", err)
		} else {
			s.password = pw
		}
	} else {
		if cfg.PasswordFile != "" {
			bad("password_file", "set without username")
		}
		if len(cfg.Mechanisms) > 0 {
			bad("mechanisms", "set without username")
		}
	}
	for _, m := range cfg.Mechanisms {
		m = strings.ToUpper(m)
		if supported := smtpclient.Mechanisms(); !slices.Contains(supported, m) {
			bad("mechanisms", "%q is not supported; supported: %s", m, strings.Join(supported, ", "))
			continue
		}
		s.mechanisms = append(s.mechanisms, m)
	}

	if s.mode == tlsNone {
		if cfg.InsecureSkipVerify {
			bad("insecure_skip_verify", `no TLS with tls = "none"`)
		}
		if cfg.CAFile != "" {
			bad("ca_file", `no TLS with tls = "none"`)
		}
	} else {
		s.client.TLSConfig = &tls.Config{ServerName: cfg.Host, InsecureSkipVerify: cfg.InsecureSkipVerify}
		s.verification = sdk.VerifyPKIX
		if cfg.InsecureSkipVerify {
			s.verification = sdk.VerifyOpportunistic
		}
		if cfg.CAFile != "" {
			roots, err := loadRoots(resolve(c.ConfigDir, cfg.CAFile))
			if err != nil {
				bad("ca_file", "%v", err)
			}
			s.client.TLSConfig.RootCAs = roots
		}
	}
	switch {
	case cfg.ClientKey == "" && cfg.ClientCert != "":
		bad("client_key", "required with client_cert")
	case cfg.ClientKey == "":
	case s.mode == tlsNone:
		bad("client_key", `no TLS with tls = "none"`)
	default:
		certFile := cfg.ClientCert
		if certFile != "" {
			certFile = resolve(c.ConfigDir, certFile)
		}
		cert, err := clientcert.Load(certFile, resolve(c.ConfigDir, cfg.ClientKey))
		if err != nil {
			bad("client_key", "%v", err)
		} else {
			s.client.TLSConfig.Certificates = []tls.Certificate{cert}
			s.clientCert = true
		}
	}
	s.client.TLS = tlsModes[s.mode]

	s.client.EHLO = cfg.EHLO
	if s.client.EHLO == "" {
		s.client.EHLO = c.Hostname
	}
	switch {
	case s.client.EHLO == "":
		bad("ehlo", "required: the server has no hostname to announce")
	case strings.ContainsAny(s.client.EHLO, " \t\r\n"):
		bad("ehlo", "%q contains white space", s.client.EHLO)
	}

	switch {
	case s.maxConns < 0:
		bad("max_connections", "%d is negative", s.maxConns)
	case s.maxConns == 0:
		s.maxConns = 20
	}
	for _, d := range []struct {
		key   string
		value string
		def   time.Duration
		dst   *time.Duration
	}{
		{"idle_timeout", cfg.IdleTimeout, 30 * time.Second, &s.idleTimeout},
		{"connect_timeout", cfg.ConnectTimeout, 30 * time.Second, &s.client.Timeouts.Connect},
		{"command_timeout", cfg.CommandTimeout, 5 * time.Minute, &s.client.Timeouts.Command},
	} {
		*d.dst = d.def
		if d.value == "" {
			continue
		}
		v, err := time.ParseDuration(d.value)
		switch {
		case err != nil:
			bad(d.key, "%q is not a duration like \"30s\" or \"5m\"", d.value)
		case v <= 0:
			bad(d.key, "must be positive")
		default:
			*d.dst = v
		}
	}

	if errs != nil {
		return nil, errs
	}
	// RFC 5321 §4.5.3.2.6 gives the end of data 10 minutes against 5.
	t := &s.client.Timeouts
	t.DataEnd = 2 * t.Command
	t.Reset = min(t.Command, rsetTimeout)
	t.Quit = min(t.Command, quitTimeout)
	return s, nil
}

// resolve makes a relative path relative to dir.
func resolve(dir, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}

// readPassword returns the first line of the file at path.
func readPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%s: first line is empty", path)
	}
	return line, nil
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
