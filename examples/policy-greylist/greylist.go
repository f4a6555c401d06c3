package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
)

// config is an instance table, [policies.NAME.config]. Durations are Go
// durations ("90s", "5m", "48h") or whole days ("35d").
type config struct {
	// Delay is how long after its first attempt a triplet must wait before
	// a retry passes. Default "5m", as postgrey.
	Delay string `toml:"delay"`
	// RetryWindow is how long after its first attempt a retry may come;
	// later, the triplet starts over. RFC 5321 §4.5.4.1 has clients retry
	// after at least 30 minutes and give up after 4-5 days. Default "48h".
	RetryWindow string `toml:"retry_window"`
	// Lifetime is how long a triplet that passed keeps passing without
	// delay; every pass starts it anew. Default "35d", as postgrey.
	Lifetime string `toml:"lifetime"`
	// WhitelistNetworks are clients never greylisted, as CIDR prefixes or
	// single addresses: "192.0.2.0/24", "2001:db8::/32", "198.51.100.7".
	WhitelistNetworks []string `toml:"whitelist_networks"`
	// IPv4Prefix and IPv6Prefix are the prefix lengths that group client
	// addresses into one network, so that a sender's pool of outgoing
	// servers retries as one client. Default 24 and 64.
	IPv4Prefix int `toml:"ipv4_prefix"`
	IPv6Prefix int `toml:"ipv6_prefix"`
	// MaxEntries bounds the triplets remembered, greylisted or passed.
	// Beyond it, greylisted triplets are dropped first, oldest first, then
	// passed ones. Each takes about 200 bytes of memory and 100 of disk.
	// Default 100000.
	MaxEntries int `toml:"max_entries"`
}

// Defaults of config.
const (
	defaultDelay       = 5 * time.Minute
	defaultRetryWindow = 48 * time.Hour
	defaultLifetime    = 35 * 24 * time.Hour
	defaultIPv4Prefix  = 24
	defaultIPv6Prefix  = 64
	defaultMaxEntries  = 100000
	maxMaxEntries      = 10000000
)

// settings is a validated config with its defaults applied.
type settings struct {
	timing
	whitelist  []netip.Prefix
	ipv4Prefix int
	ipv6Prefix int
}

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
	duration := func(key, v string, def time.Duration) int64 {
		if v == "" {
			return int64(def / time.Second)
		}
		d, err := parseDuration(v)
		switch {
		case err != nil:
			bad(key, "%q is not a duration such as \"90s\", \"5m\", \"48h\" or \"35d\"", v)
		case d < time.Second:
			bad(key, "%q is less than a second", v)
		}
		return int64(d / time.Second)
	}
	s := &settings{
		timing: timing{
			delay:      duration("delay", cfg.Delay, defaultDelay),
			window:     duration("retry_window", cfg.RetryWindow, defaultRetryWindow),
			lifetime:   duration("lifetime", cfg.Lifetime, defaultLifetime),
			maxEntries: cfg.MaxEntries,
		},
		ipv4Prefix: cfg.IPv4Prefix,
		ipv6Prefix: cfg.IPv6Prefix,
	}
	if len(errs) == 0 && s.window <= s.delay {
		bad("retry_window", "must be longer than delay (%s)", time.Duration(s.delay)*time.Second)
	}
	switch {
	case cfg.MaxEntries == 0:
		s.maxEntries = defaultMaxEntries
	case cfg.MaxEntries < 0 || cfg.MaxEntries > maxMaxEntries:
		bad("max_entries", "%d is out of range 1-%d", cfg.MaxEntries, maxMaxEntries)
	}
	prefix := func(key string, v *int, def, bits int) {
		switch {
		case *v == 0:
			*v = def
		case *v < 1 || *v > bits:
			bad(key, "%d is out of range 1-%d", *v, bits)
		}
	}
	prefix("ipv4_prefix", &s.ipv4Prefix, defaultIPv4Prefix, 32)
	prefix("ipv6_prefix", &s.ipv6Prefix, defaultIPv6Prefix, 128)
	for i, n := range cfg.WhitelistNetworks {
		p, err := parsePrefix(n)
		if err != nil {
			bad("whitelist_networks", "entry %d, %q: not an address or CIDR prefix", i+1, n)
			continue
		}
		s.whitelist = append(s.whitelist, p)
	}
	if errs != nil {
		return nil, errs
	}
	return s, nil
}

var daysRe = regexp.MustCompile(`^([0-9]{1,5})d$`)

// parseDuration is time.ParseDuration, and whole days as "35d".
func parseDuration(v string) (time.Duration, error) {
	if m := daysRe.FindStringSubmatch(v); m != nil {
		n, _ := strconv.Atoi(m[1])
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(v)
	if err == nil && d < 0 {
		err = errors.New("negative")
	}
	return d, err
}

// parsePrefix parses a CIDR prefix or a single address, unmapping IPv4 in
// IPv6 so that it matches as unmapped client addresses do.
func parsePrefix(v string) (netip.Prefix, error) {
	if !strings.Contains(v, "/") {
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, errors.New("bad address")
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return p, err
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return p, errors.New("IPv4-mapped prefix shorter than 96 bits")
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// checker greylists at the rcpt stage, with one store per instance.
type checker struct {
	log *slog.Logger
	now func() time.Time // The clock; tests set their own.

	mu        sync.RWMutex
	instances map[string]*instance
}

// instance is a configured [policies.NAME].
type instance struct {
	settings *settings
	store    *store
}

func newChecker(log *slog.Logger, now func() time.Time) *checker {
	return &checker{log: log, now: now, instances: map[string]*instance{}}
}

// Configure takes the plugin's own table, which has no keys, and each
// instance's. An instance keeps its state in its own file in the plugin's
// data directory; configuring it again keeps what it remembers.
func (ch *checker) Configure(ctx context.Context, c *sdk.Configuration) error {
	if c.Kind == sdk.KindPlugin {
		var none struct{}
		return c.Decode(&none)
	}
	s, err := parseConfig(c)
	if err != nil {
		return err
	}
	if c.DataDir == "" {
		return sdk.ConfigErrors{{Msg: "the plugin has no data directory for its state"}}
	}
	if c.CheckOnly {
		return nil
	}
	path := filepath.Join(c.DataDir, stateFileName(c.Instance))

	ch.mu.Lock()
	defer ch.mu.Unlock()
	if old := ch.instances[c.Instance]; old != nil && old.store.path == path {
		old.store.setTiming(s.timing, ch.now())
		ch.instances[c.Instance] = &instance{settings: s, store: old.store}
		return nil
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	st, err := openStore(path, s.timing, ch.now(), ch.log.With(slog.String("instance", c.Instance)))
	if err != nil {
		return err
	}
	if old := ch.instances[c.Instance]; old != nil {
		old.store.close()
	}
	ch.instances[c.Instance] = &instance{settings: s, store: st}
	return nil
}

var plainNameRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// stateFileName is the state file of an instance: "greylist-NAME.log" for a
// plain name, else, as a TOML key may hold any character, one named by a
// hash of it (with a dot, which no plain name has).
func stateFileName(instance string) string {
	if plainNameRe.MatchString(instance) {
		return "greylist-" + instance + ".log"
	}
	sum := sha256.Sum256([]byte(instance))
	return "greylist." + hex.EncodeToString(sum[:16]) + ".log"
}

// Verdicts.
var (
	greylisted = sdk.Verdict{
		Action:       sdk.ActionTempfail,
		Code:         451,     // RFC 5321 §4.2.3: local error in processing; try again.
		EnhancedCode: "4.7.1", // RFC 3463 §3.8: delivery not authorized, message refused.
		Text:         "Greylisted, please try again later",
	}
	pass = sdk.Verdict{Action: sdk.ActionContinue}
)

// Check greylists the recipient of a rcpt stage: the last of
// req.Recipients, with the client's network and the reverse-path.
func (ch *checker) Check(ctx context.Context, req *sdk.CheckRequest) (sdk.Verdict, error) {
	if req.Stage != sdk.StageRcpt {
		return pass, nil
	}
	ch.mu.RLock()
	inst := ch.instances[req.Instance]
	ch.mu.RUnlock()
	if inst == nil {
		return sdk.Verdict{}, fmt.Errorf("instance %q is not configured", req.Instance)
	}
	// Authenticated submission is the server's own users: RFC 6647 has
	// greylisting for strangers.
	if req.Submission || req.Account != "" {
		return pass, nil
	}
	addr, err := clientAddr(req.Conn.RemoteAddr)
	if err != nil {
		return sdk.Verdict{}, err
	}
	for _, p := range inst.settings.whitelist {
		if p.Contains(addr) {
			return pass, nil
		}
	}
	if len(req.Recipients) == 0 {
		return sdk.Verdict{}, errors.New("rcpt stage without a recipient")
	}
	// Lower-casing may lengthen a string (invalid UTF-8 becomes U+FFFD):
	// the bound is on what is stored.
	lfrom, lrcpt := strings.ToLower(req.From), strings.ToLower(req.Recipients[len(req.Recipients)-1])
	if len(lfrom) > maxAddrLen || len(lrcpt) > maxAddrLen {
		return sdk.Verdict{}, fmt.Errorf("address longer than %d bytes", maxAddrLen)
	}
	bits := inst.settings.ipv6Prefix
	if addr.Is4() {
		bits = inst.settings.ipv4Prefix
	}
	network, _ := addr.Prefix(bits) // Cannot fail: bits is in range for addr.
	k := triplet{network: network, from: lfrom, rcpt: lrcpt}

	o, waited := inst.store.check(k, ch.now())
	attrs := []any{slog.String("instance", req.Instance), slog.String("result", o.String()), slog.String("client", addr.String()),
		slog.String("from", k.from), slog.String("rcpt", k.rcpt)}
	switch o {
	case outcomeNew:
		ch.log.Info("greylisted", attrs...)
		return greylisted, nil
	case outcomeEarly:
		ch.log.Info("greylisted", append(attrs, slog.String("waited", waited.String()))...)
		return greylisted, nil
	case outcomePassed:
		ch.log.Info("passed greylisting", append(attrs, slog.String("waited", waited.String()))...)
		return pass, nil
	default:
		ch.log.Debug("whitelisted", attrs...)
		return pass, nil
	}
}

// clientAddr is the client's IP address from ConnInfo.RemoteAddr, "ip:port"
// or a bare address, without zone and with IPv4 in IPv6 unmapped.
func clientAddr(remote string) (netip.Addr, error) {
	var a netip.Addr
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		a = ap.Addr()
	} else if a, err = netip.ParseAddr(remote); err != nil {
		return a, fmt.Errorf("client address %q is not an IP address", remote)
	}
	return a.Unmap().WithZone(""), nil
}
