package pluginhost

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/hostrpc"
)

// proc is one [plugins.NAME]: what it runs and serves, and its current process.
type proc struct {
	name      string
	path      string
	args      []string
	sum       []byte // SHA-256 pin; nil if none.
	dataDir   string
	instances []instance        // The plugin's own table first.
	conf      sdk.Configuration // What every instance's Configuration shares.
	log       *slog.Logger      // With plugin=NAME.

	mu       sync.Mutex
	cur      *running // Nil while down; replaced only once configured.
	desc     *sdk.Description
	state    State
	restarts int
	lastErr  string
	exit     string // Status of the last process exit, from go-plugin's log.
}

// running is a started and configured plugin process.
type running struct {
	proc      *process
	transport sdk.Transport
	mechanism sdk.Mechanism // Nil unless the plugin described mechanisms.
	checker   sdk.Checker   // Nil unless the plugin described a policy.
	desc      *sdk.Description
	pid       int
	started   time.Time
}

// launch starts a process of p, serves it the Host, and has it describe
// itself and configure every instance. It returns every problem found; on
// error the process is killed.
func (m *Manager) launch(ctx context.Context, p *proc) (*running, []error) {
	cc := &plugin.ClientConfig{
		HandshakeConfig:  hostrpc.Handshake,
		VersionedPlugins: hostrpc.PluginSets(nil),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     startTimeout,
		Logger:           &hclogAdapter{log: p.log, path: p.path, exited: p.setExit},
		GRPCDialOptions: []grpc.DialOption{
			grpc.WithInitialWindowSize(sdk.StreamWindow), grpc.WithInitialConnWindowSize(sdk.ConnWindow),
		},
	}
	if p.sum != nil {
		// go-plugin hashes the binary before every start.
		cc.SecureConfig = &plugin.SecureConfig{Checksum: p.sum, Hash: sha256.New()}
	}
	pr := newProcess(cc, p.path, p.args, m.logLevel)
	fail := func(errs ...error) (*running, []error) {
		pr.stop()
		return nil, errs
	}

	rpc, err := pr.start(ctx)
	if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
		return fail(fmt.Errorf("plugin %s: %s does not match its sha256 pin: %w", p.name, p.path, err))
	} else if err != nil {
		return fail(fmt.Errorf("plugin %s: starting %s: %w", p.name, p.path, err))
	}
	c, err := hostrpc.Dispense(rpc)
	if err != nil {
		return fail(fmt.Errorf("plugin %s: %w", p.name, err))
	}
	if m.host != nil && !m.checkOnly {
		c.ServeHost(m.host)
	}
	dctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	desc, err := c.Describe(dctx)
	cancel()
	if err != nil {
		return fail(fmt.Errorf("plugin %s: %w", p.name, err))
	}
	var errs []error
	for _, in := range p.instances {
		errs = append(errs, p.configure(ctx, c, desc, in)...)
	}
	if len(errs) > 0 {
		return fail(errs...)
	}
	r := &running{proc: pr, transport: c.Transport(), desc: desc, pid: pr.pid, started: time.Now()}
	if len(desc.Mechanisms) > 0 {
		r.mechanism = c.Mechanism()
	}
	if desc.Policy != nil {
		r.checker = c.Checker()
	}
	return r, nil
}

// configure sends one instance its configuration.
func (p *proc) configure(ctx context.Context, c hostrpc.Client, desc *sdk.Description, in instance) []error {
	if in.kind == sdk.KindTransport && !desc.Transport {
		return []error{&ConfigError{Plugin: p.name, Key: in.refKey, Msg: fmt.Sprintf("plugin %s (%s) is not a transport", p.name, desc.Name)}}
	}
	if in.kind == sdk.KindPolicy && desc.Policy == nil {
		return []error{&ConfigError{Plugin: p.name, Key: in.refKey, Msg: fmt.Sprintf("plugin %s (%s) is not a policy check", p.name, desc.Name)}}
	}
	conf := p.conf
	conf.Kind, conf.Instance, conf.KeyPath, conf.Table = in.kind, in.name, in.keyPath, in.table
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	err := c.Configure(ctx, &conf)
	var ces sdk.ConfigErrors
	if errors.As(err, &ces) {
		errs := make([]error, len(ces))
		for i, ce := range ces {
			key := in.keyPath
			if ce.Key != "" {
				key += "." + ce.Key
			}
			errs[i] = &ConfigError{Plugin: p.name, Key: key, Msg: ce.Msg}
		}
		return errs
	} else if err != nil {
		return []error{fmt.Errorf("plugin %s: configuring %s: %w", p.name, in.keyPath, err)}
	}
	return nil
}

// supervise restarts p whenever its process exits, until Close. Delays
// start at minBackoff and double up to maxBackoff; a process that ran
// healthyAfter resets them.
func (m *Manager) supervise(p *proc) {
	backoff := minBackoff
	for {
		r := p.current()
		if !waitExit(m.ctx, r.proc.gp) {
			return
		}
		ran := time.Since(r.started)
		if ran >= healthyAfter {
			backoff = minBackoff
		}
		exit, restarts := p.exited()
		p.log.Warn("plugin exited", slog.Int("pid", r.pid), slog.String("exit", exit),
			slog.Int("restarts", restarts), slog.Duration("ran", ran), slog.Duration("restart_in", backoff))
		r.proc.stop() // Frees go-plugin's connections and the process's children.

		for {
			select {
			case <-m.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
			restarts := p.restarting()
			nr, errs := m.launch(m.ctx, p)
			if m.ctx.Err() != nil {
				if nr != nil {
					nr.proc.stop()
				}
				return
			}
			if nr != nil {
				p.up(nr)
				p.log.Info("plugin restarted", slog.Int("pid", nr.pid), slog.Int("restarts", restarts))
				break
			}
			err := errors.Join(errs...)
			p.failed(err)
			p.log.Error("plugin restart failed", slog.Any("err", err), slog.Int("restarts", restarts), slog.Duration("retry_in", backoff))
		}
	}
}

// waitExit returns true when the process of gp has exited, false if ctx
// ends first. go-plugin has no exit signal; it is polled.
func waitExit(ctx context.Context, gp *plugin.Client) bool {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for !gp.Exited() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

func (p *proc) current() *running {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

func (p *proc) currentState() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// up makes r the process that serves calls.
func (p *proc) up(r *running) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur, p.desc, p.state = r, r.desc, StateRunning
}

// exited takes the current process out of service and returns how it ended.
func (p *proc) exited() (exit string, restarts int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur, p.state = nil, StateRestarting
	exit = p.exit
	if exit == "" {
		exit = "exit status 0"
	}
	p.exit = ""
	p.lastErr = "exited: " + exit
	return exit, p.restarts
}

// restarting counts a restart attempt.
func (p *proc) restarting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = StateRestarting
	p.restarts++
	return p.restarts
}

func (p *proc) failed(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state, p.lastErr = StateFailed, err.Error()
}

// setExit records the exit status go-plugin logs.
func (p *proc) setExit(status string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.exit = status
}

// stop kills the current process, if any.
func (p *proc) stop() {
	p.mu.Lock()
	r := p.cur
	p.cur, p.state = nil, StateStopped
	p.mu.Unlock()
	if r != nil && r.proc.stop() {
		p.log.Warn("plugin did not exit in time; its process group was killed", slog.Int("pid", r.pid), slog.Duration("waited", stopTimeout))
	}
}

func (p *proc) status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Status{
		Name:        p.name,
		Path:        p.path,
		Description: p.desc,
		State:       p.state,
		Restarts:    p.restarts,
		LastError:   p.lastErr,
	}
	if p.cur != nil {
		s.PID, s.Started = p.cur.pid, p.cur.started
	}
	return s
}
