// Package pluginhost starts the plugin processes of mta.toml with
// hashicorp/go-plugin (gRPC, automatic mTLS, an optional SHA-256 pin of the
// binary), configures every instance they serve, supervises them and
// restarts a plugin that exits, with backoff. The rest of the core reaches
// plugins through the sdk interfaces it adapts them to; while a plugin is
// down, its calls fail at once with ErrUnavailable. SASL mechanisms are
// found by name among what the plugins described at Start (Mechanism), and
// a new password's secrets are derived by all mechanism plugins (Derive).
package pluginhost

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/sdk"
)

// ErrUnavailable means a plugin could not serve a call: its instance is not
// configured, its process is down or restarting, or it failed the call as a
// whole. Temporary; the queue retries later.
var ErrUnavailable = errors.New("pluginhost: plugin unavailable")

// ErrNoTransport is returned by Deliver for a transport that is not configured.
var ErrNoTransport = errors.New("pluginhost: no such transport")

// Default limits.
const (
	DefaultDeliverTimeout = 10 * time.Minute // Options.DeliverTimeout.

	rpcTimeout   = 30 * time.Second // Describe and Configure.
	startTimeout = 10 * time.Second // From exec to the plugin's handshake line.
	pollInterval = 100 * time.Millisecond
	minBackoff   = time.Second
	maxBackoff   = time.Minute
	healthyAfter = time.Minute // A process that ran this long resets the backoff.
)

// Options configure Start.
type Options struct {
	Config *config.Config
	// Host is served to every plugin over the go-plugin broker before
	// Configure. Nil: plugins get no Host.
	Host sdk.Host
	Log  *slog.Logger // Nil: slog.Default().
	// CheckOnly configures every instance with CheckOnly, for `mta config
	// check`: no data directories are created, no Host is served, and the
	// processes are stopped when Start returns.
	CheckOnly bool
	// DeliverTimeout caps one Deliver call on top of the caller's context.
	// Zero: DefaultDeliverTimeout.
	DeliverTimeout time.Duration
}

// ConfigError is a problem with the configuration of a plugin or of an
// instance it serves, at a full TOML key path. config.Config.KeyError adds
// the file and line.
type ConfigError struct {
	Plugin string // Key in [plugins].
	Key    string // e.g. "transports.smarthost.config.port".
	Msg    string
}

func (e *ConfigError) Error() string { return e.Key + ": " + e.Msg }

// State is what a plugin process is doing.
type State string

const (
	StateRunning    State = "running"
	StateRestarting State = "restarting" // Exited; waiting for or doing a restart.
	StateFailed     State = "failed"     // The last restart failed; retrying with backoff.
	StateStopped    State = "stopped"    // After Close, or a CheckOnly Start.
)

// Status is a snapshot of one plugin.
type Status struct {
	Name        string // Key in [plugins].
	Path        string
	Description *sdk.Description // From the last successful start.
	State       State
	PID         int       // Of the current process; 0 if none.
	Restarts    int       // Start attempts after the first, failed ones included.
	LastError   string    // Of the last exit or failed restart; empty if none.
	Started     time.Time // Of the current process.
}

// Manager owns the plugin processes.
type Manager struct {
	log            *slog.Logger
	logLevel       string // The core's [log] level, passed to plugins (sdk.LogLevelEnv).
	host           sdk.Host
	checkOnly      bool
	deliverTimeout time.Duration

	procs      []*proc          // By name.
	transports map[string]*proc // By [transports] key.
	policies   map[string]*proc // By [policies] key.
	mechanisms map[string]*proc // By SASL name, from Describe at Start.
	mechOrder  []string         // Keys of mechanisms, in plugin name order.
	mechProcs  []*proc          // Plugins serving mechanisms, by name.

	ctx    context.Context // Canceled by Close; ends supervision.
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// instance is one configured use of a plugin: the plugin's own table or one
// of the instances it serves (a [transports.NAME]).
type instance struct {
	kind    sdk.Kind
	name    string
	keyPath string         // Of the table, e.g. "transports.smarthost.config".
	refKey  string         // Where the instance names the plugin, e.g. "transports.smarthost.plugin".
	table   map[string]any // Never nil.
}

// Start starts every [plugins.NAME] process, asks each to Describe itself
// and configures every instance: the plugin's own [plugins.NAME.config] with
// sdk.KindPlugin, every [transports.T] it serves with sdk.KindTransport
// and every [policies.P] with sdk.KindPolicy.
// Plugins get the server's hostname, the config directory, and their data
// directory <data_dir>/plugins/<NAME>, created with mode 0700 unless
// CheckOnly.
//
// Start returns every problem found, joined with errors.Join; rejections of
// configuration are *ConfigError values. On error, no process is left
// running.
func Start(ctx context.Context, opts Options) (*Manager, error) {
	cfg := opts.Config
	if cfg == nil {
		return nil, errors.New("pluginhost: no configuration")
	}
	m := &Manager{
		log:            opts.Log,
		logLevel:       cfg.Log.Level,
		host:           opts.Host,
		checkOnly:      opts.CheckOnly,
		deliverTimeout: opts.DeliverTimeout,
		transports:     map[string]*proc{},
		policies:       map[string]*proc{},
		mechanisms:     map[string]*proc{},
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.deliverTimeout <= 0 {
		m.deliverTimeout = DefaultDeliverTimeout
	}
	m.ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))

	var errs []error
	byName := map[string]*proc{}
	for _, name := range sortedKeys(cfg.Plugins) {
		p, err := m.newProc(cfg, name, cfg.Plugins[name])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		byName[name] = p
		m.procs = append(m.procs, p)
	}
	// Instances, by the table that configures them.
	type ref struct {
		plugin string
		table  map[string]any
	}
	for _, group := range []struct {
		kind   sdk.Kind
		key    string // Of the tables in mta.toml.
		refs   map[string]ref
		served map[string]*proc
	}{
		{sdk.KindTransport, "transports", mapRefs(cfg.Transport, func(t *config.Transport) ref { return ref{t.Plugin, t.Config} }), m.transports},
		{sdk.KindPolicy, "policies", mapRefs(cfg.Policies, func(pc *config.Policy) ref { return ref{pc.Plugin, pc.Config} }), m.policies},
	} {
		for _, name := range sortedKeys(group.refs) {
			r := group.refs[name]
			key := group.key + "." + name
			p := byName[r.plugin]
			if p == nil {
				if _, ok := cfg.Plugins[r.plugin]; !ok {
					errs = append(errs, &ConfigError{Plugin: r.plugin, Key: key + ".plugin", Msg: fmt.Sprintf("no plugin %q in [plugins]", r.plugin)})
				}
				continue
			}
			p.instances = append(p.instances, instance{kind: group.kind, name: name, keyPath: key + ".config", refKey: key + ".plugin", table: nonNil(r.table)})
			group.served[name] = p
		}
	}
	if len(errs) > 0 {
		m.cancel()
		return nil, errors.Join(errs...)
	}

	// Start all plugins at once; report problems in name order.
	perProc := make([][]error, len(m.procs))
	var wg sync.WaitGroup
	for i, p := range m.procs {
		wg.Go(func() {
			if !m.checkOnly {
				if err := os.MkdirAll(p.dataDir, 0o700); err != nil {
					perProc[i] = []error{fmt.Errorf("plugin %s: creating data directory: %w", p.name, err)}
					return
				}
			}
			if ctx.Err() != nil {
				perProc[i] = []error{fmt.Errorf("plugin %s: not started: %w", p.name, ctx.Err())}
				return
			}
			start := time.Now()
			r, errs := m.launch(ctx, p)
			if r != nil {
				p.up(r)
				p.log.Info("plugin started", slog.Int("pid", r.pid), slog.String("name", r.desc.Name), slog.String("version", r.desc.Version),
					slog.Duration("duration", time.Since(start)))
			}
			perProc[i] = errs
		})
	}
	wg.Wait()
	for _, pe := range perProc {
		errs = append(errs, pe...)
	}
	errs = append(errs, m.mapMechanisms()...)
	if len(errs) > 0 || m.checkOnly {
		m.Close()
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return m, nil
	}
	for _, p := range m.procs {
		m.wg.Go(func() { m.supervise(p) })
	}
	return m, nil
}

// mapRefs maps the non-nil values of m by f.
func mapRefs[T any, R any](m map[string]*T, f func(*T) R) map[string]R {
	out := make(map[string]R, len(m))
	for k, v := range m {
		if v != nil {
			out[k] = f(v)
		}
	}
	return out
}

// newProc checks a [plugins.NAME] entry.
func (m *Manager) newProc(cfg *config.Config, name string, pc *config.Plugin) (*proc, error) {
	key := "plugins." + name
	if pc == nil || pc.Path == "" {
		return nil, &ConfigError{Plugin: name, Key: key + ".path", Msg: "required"}
	}
	path := resolve(cfg.Dir, pc.Path)
	if fi, err := os.Stat(path); err != nil {
		return nil, &ConfigError{Plugin: name, Key: key + ".path", Msg: fmt.Sprintf("cannot run %s: %v", path, errors.Unwrap(err))}
	} else if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return nil, &ConfigError{Plugin: name, Key: key + ".path", Msg: fmt.Sprintf("%s is not an executable file", path)}
	}
	p := &proc{
		name:  name,
		path:  path,
		args:  pc.Args,
		log:   m.log.With(slog.String("plugin", name)),
		state: StateStopped,
	}
	if pc.SHA256 != "" {
		sum, err := hex.DecodeString(pc.SHA256)
		if err != nil || len(sum) != 32 {
			return nil, &ConfigError{Plugin: name, Key: key + ".sha256", Msg: "not a hex SHA-256"}
		}
		p.sum = sum
	}
	p.dataDir = filepath.Join(resolve(cfg.Dir, cfg.DataDir), "plugins", name)
	p.instances = []instance{{
		kind:    sdk.KindPlugin,
		name:    name,
		keyPath: key + ".config",
		table:   nonNil(pc.Config),
	}}
	p.conf = sdk.Configuration{
		CheckOnly: m.checkOnly,
		Hostname:  cfg.Hostname,
		ConfigDir: cfg.Dir,
		DataDir:   p.dataDir,
	}
	return p, nil
}

// Status returns a snapshot of every plugin, by name.
func (m *Manager) Status() []Status {
	l := make([]Status, len(m.procs))
	for i, p := range m.procs {
		l[i] = p.status()
	}
	return l
}

// Close stops supervision and kills every plugin process. Calls in flight
// fail.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
	var wg sync.WaitGroup
	for _, p := range m.procs {
		wg.Go(p.stop)
	}
	wg.Wait()
}

// resolve makes a relative path relative to dir, the config directory.
func resolve(dir, path string) string {
	if path == "" || filepath.IsAbs(path) || dir == "" {
		return path
	}
	return filepath.Join(dir, path)
}

func nonNil(t map[string]any) map[string]any {
	if t == nil {
		return map[string]any{}
	}
	return t
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
