package sdk

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
)

// Kind is what a configured instance is.
type Kind int

// The zero Kind is none of them: a Configuration must say what it is for.
const (
	KindTransport Kind = iota + 1 // [transports.NAME]
	KindMechanism                 // A SASL mechanism the plugin serves.
	KindPolicy                    // A policy check the plugin serves.
	KindPlugin                    // The plugin as a whole: [plugins.NAME.config].
)

// Configuration is one instance's configuration and the environment it runs in.
type Configuration struct {
	Kind      Kind
	Instance  string         // e.g. "smarthost" for [transports.smarthost].
	KeyPath   string         // TOML path of the table, e.g. "transports.smarthost.config".
	Table     map[string]any // The instance's table: string, int64, float64, bool, []any, map[string]any.
	CheckOnly bool           // Validate only (mta config check); apply nothing, start nothing.
	Hostname  string         // The server's hostname.
	ConfigDir string         // Directory of mta.toml; relative paths resolve against it.
	DataDir   string         // Private writable directory of the plugin.
	Host      Host           // Callbacks into the core; nil in CheckOnly.
}

// Configurer is implemented by a Transport, Mechanism or Checker that takes
// configuration. Configure is called for every instance before first use and
// again after every restart of the plugin; returning ConfigErrors names the
// offending keys.
type Configurer interface {
	Configure(ctx context.Context, c *Configuration) error
}

// ConfigError is a problem with one key of an instance table.
type ConfigError struct {
	Key string // Dotted, relative to the instance table; empty for the table itself.
	Msg string
}

func (e ConfigError) Error() string {
	if e.Key == "" {
		return e.Msg
	}
	return e.Key + ": " + e.Msg
}

// ConfigErrors is every problem found in an instance table.
type ConfigErrors []ConfigError

func (es ConfigErrors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

// Decode decodes the instance table into v, a pointer to a struct with toml
// tags, strictly: unknown keys and wrong types are ConfigErrors.
func (c *Configuration) Decode(v any) error {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(c.Table); err != nil {
		return ConfigErrors{{Msg: fmt.Sprintf("encoding table: %v", err)}}
	}
	md, err := toml.Decode(buf.String(), v)
	if err != nil {
		// Type errors read `toml: line 1 (last key "port"): incompatible types: ...`.
		if m := lastKeyRe.FindStringSubmatch(err.Error()); m != nil {
			return ConfigErrors{{Key: m[1], Msg: m[2]}}
		}
		return ConfigErrors{{Msg: err.Error()}}
	}
	var errs ConfigErrors
	for _, k := range md.Undecoded() {
		errs = append(errs, ConfigError{Key: k.String(), Msg: "unknown key"})
	}
	if errs != nil {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Key < errs[j].Key })
		return errs
	}
	return nil
}

var lastKeyRe = regexp.MustCompile(`\(last key "([^"]*)"\): (.*)$`)
