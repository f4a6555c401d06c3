package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/BurntSushi/toml"
)

// Defaults of fields left out of the file.
const (
	DefaultDataDir           = "data"
	DefaultMaxMessageSize    = 50 << 20 // Bytes.
	DefaultMaxRecipients     = 1000
	DefaultReadTimeout       = Duration(5 * time.Minute)
	DefaultWriteTimeout      = Duration(time.Minute)
	DefaultBackoffScale      = 1.0
	DefaultMaxAttempts       = 9
	DefaultMaxParallel       = 64
	DefaultMaxPerDestination = 16
	DefaultGreetingTimeout   = Duration(30 * time.Second)
	DefaultMaxConnections    = 2000
	DefaultMaxConnsPerIP     = 20
	DefaultConnRatePerIP     = 600 // A minute.
)

// Load reads, checks and completes the configuration file at path: defaults
// are applied, relative paths (data_dir, tls.cert, tls.key, plugins' path)
// resolved against the file's directory, domains lower-cased. Plugin and
// transport config tables are left as written. Files named in the
// configuration need not exist yet.
//
// Problems in the file are returned as Errors, all of them (but a syntax or
// type error stops decoding, and is returned alone); a file that cannot be
// read gives the os error, wrapped.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, src)
}

// Parse is Load for a file's content src: path names the file in errors
// and gives the directory relative paths resolve against; it is not read.
func Parse(path string, src []byte) (*Config, error) {
	c, err := parse(path, src)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// LoadChecked is Load for `mta config check`, which goes on checking what
// it can (the plugins' tables) after errors in the file: unless the file
// cannot be read or decoded, the Config is returned with the Errors found,
// complete as far as they allow.
func LoadChecked(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(path, src)
}

func parse(path string, src []byte) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c := &Config{File: abs, Dir: filepath.Dir(abs), name: path, keys: indexKeys(string(src))}
	md, err := toml.Decode(string(src), c)
	if err != nil {
		return nil, Errors{decodeError(path, err)}
	}
	errs := c.unknownKeys(md.Undecoded())
	errs = append(errs, c.complete(md.IsDefined)...)
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
		return c, errs
	}
	return c, nil
}

// typeError matches the errors BurntSushi/toml returns for a value of the
// wrong type, which are not ParseErrors.
var typeError = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key ("(?:[^"\\]|\\.)*")\): (?:incompatible types: TOML value has type (\S+); destination has type (.+)|(.*))$`)

func decodeError(file string, err error) Error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return Error{File: file, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message}
	}
	m := typeError.FindStringSubmatch(err.Error())
	if m == nil {
		return Error{File: file, Msg: err.Error()}
	}
	e := Error{File: file, Msg: m[5]}
	e.Line, _ = strconv.Atoi(m[1])
	e.Key, _ = strconv.Unquote(m[2])
	if m[3] != "" {
		e.Msg = fmt.Sprintf("wrong type: %s, want %s", tomlType(m[3]), tomlType(m[4]))
	}
	return e
}

// tomlType names a Go type of decoded TOML by its TOML type.
func tomlType(goType string) string {
	switch goType {
	case "int64":
		return "integer"
	case "float64":
		return "float"
	case "bool":
		return "boolean"
	case "[]any", "slice":
		return "array"
	case "map[string]any":
		return "table"
	case "[]map[string]any":
		return "array of tables"
	}
	return goType
}

// unknownKeys reports each undecoded key that is not inside another one or
// a plugin's config table.
func (c *Config) unknownKeys(keys []toml.Key) Errors {
	var errs Errors
	var reported []toml.Key
	seen := map[string]int{}
	for _, k := range keys {
		if len(k) >= 3 && (k[0] == "plugins" || k[0] == "transports" || k[0] == "policies") && k[2] == "config" {
			continue // Passed to the plugin as is.
		}
		if slices.ContainsFunc(reported, func(r toml.Key) bool { return len(r) < len(k) && slices.Equal(r, k[:len(r)]) }) {
			continue
		}
		reported = append(reported, k)
		p := join(nil, k)
		ks := k.String()
		n := seen[ks]
		seen[ks]++
		e := Error{File: c.name, Key: ks, Msg: "unknown key"}
		if d, ok := c.keys.nth(p, n); ok {
			e.Key, e.Line = keyString(d.path), d.line
		}
		errs = append(errs, e)
	}
	return errs
}

// complete applies defaults, resolves paths and checks c. defined reports
// whether the file sets a key.
func (c *Config) complete(defined func(key ...string) bool) Errors {
	v := &checker{c: c}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	c.DataDir = c.abs(c.DataDir)
	c.TLS.Cert = c.abs(c.TLS.Cert)
	c.TLS.Key = c.abs(c.TLS.Key)
	c.Sendmail.PasswordFile = c.abs(c.Sendmail.PasswordFile)
	c.Sendmail.CAFile = c.abs(c.Sendmail.CAFile)
	c.Sendmail.ClientCert = c.abs(c.Sendmail.ClientCert)
	c.Sendmail.ClientKey = c.abs(c.Sendmail.ClientKey)
	for _, p := range c.Plugins {
		p.Path = c.abs(p.Path)
	}

	setInt := func(f *int, def int, key ...string) {
		if !defined(key...) {
			*f = def
		} else if *f <= 0 {
			v.add(keyString(join(nil, key)), "must be positive, is %d", *f)
		}
	}
	if !defined("limits", "max_message_size") {
		c.Limits.MaxMessageSize = DefaultMaxMessageSize
	} else if c.Limits.MaxMessageSize <= 0 {
		v.add("limits.max_message_size", "must be positive")
	}
	setInt(&c.Limits.MaxRecipients, DefaultMaxRecipients, "limits", "max_recipients")
	for _, t := range []struct {
		f   *Duration
		def Duration
		key string
	}{
		{&c.Limits.ReadTimeout, DefaultReadTimeout, "read_timeout"},
		{&c.Limits.WriteTimeout, DefaultWriteTimeout, "write_timeout"},
		{&c.Limits.GreetingTimeout, DefaultGreetingTimeout, "greeting_timeout"},
	} {
		if !defined("limits", t.key) {
			*t.f = t.def
		} else if *t.f <= 0 {
			v.add("limits."+t.key, "must be positive")
		}
	}
	setInt(&c.Limits.MaxConnections, DefaultMaxConnections, "limits", "max_connections")
	setCap := func(f *int, def int, key ...string) {
		if !defined(key...) {
			*f = def
		} else if *f < 0 {
			v.add(keyString(join(nil, key)), "must be 0 (no cap) or more, is %d", *f)
		}
	}
	setCap(&c.Limits.MaxConnectionsPerIP, DefaultMaxConnsPerIP, "limits", "max_connections_per_ip")
	setCap(&c.Limits.ConnectionRatePerIP, DefaultConnRatePerIP, "limits", "connection_rate_per_ip")
	if !defined("queue", "backoff_scale") {
		c.Queue.BackoffScale = DefaultBackoffScale
	} else if !(c.Queue.BackoffScale > 0) {
		v.add("queue.backoff_scale", "must be positive, is %v", c.Queue.BackoffScale)
	}
	setInt(&c.Queue.MaxAttempts, DefaultMaxAttempts, "queue", "max_attempts")
	setInt(&c.Queue.MaxParallel, DefaultMaxParallel, "queue", "max_parallel")
	setInt(&c.Queue.MaxPerDestination, DefaultMaxPerDestination, "queue", "max_per_destination")

	if defined("auth", "mechanisms") && len(c.Auth.Mechanisms) == 0 {
		v.add("auth.mechanisms", "lists no mechanism; omit it for the default")
	}
	v.check()
	return v.errs
}

// abs resolves a relative path against c.Dir; empty stays empty.
func (c *Config) abs(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}
