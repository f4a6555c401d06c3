package pluginhost

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/plugintest"
)

// echoPath is the test plugin binary, scramPath the auth-scram plugin,
// built by TestMain.
var echoPath, scramPath string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "pluginhost-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	echoPath = filepath.Join(dir, "echoplugin")
	scramPath = filepath.Join(dir, "auth-scram")
	firstParty := filepath.Join(dir, "switchyard-plugins")
	for path, pkg := range map[string]string{echoPath: "./testdata/echoplugin", firstParty: "../../cmd/switchyard-plugins"} {
		cmd := exec.Command("go", "build", "-o", path, pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building test plugin %s: %v\n%s", pkg, err, out)
			return 1
		}
	}
	if err := os.Symlink("switchyard-plugins", scramPath); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// logs collects JSON log lines.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// find returns the records with message msg and attributes attrs.
func (l *logs) find(msg string, attrs map[string]any) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var found []map[string]any
	for line := range bytes.Lines(l.buf.Bytes()) {
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil || rec["msg"] != msg {
			continue
		}
		ok := true
		for k, v := range attrs {
			ok = ok && rec[k] == v
		}
		if ok {
			found = append(found, rec)
		}
	}
	return found
}

func (l *logs) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug - 4}))
}

// testConfig has plugin "echo" serving transport "relay" with table relay.
func testConfig(t *testing.T, relay map[string]any) *config.Config {
	dir := t.TempDir()
	return &config.Config{
		Hostname:  "mx.example.org",
		DataDir:   "data",
		Dir:       dir,
		Plugins:   map[string]*config.Plugin{"echo": {Path: echoPath, Config: map[string]any{"lookup": "alice"}}},
		Transport: map[string]*config.Transport{"relay": {Plugin: "echo", Config: relay}},
	}
}

func testHost() *plugintest.Host {
	h := &plugintest.Host{}
	h.SetSecret("alice", "PLAIN", sdk.Credential{Account: "alice-account"})
	return h
}

func start(t *testing.T, opts Options) *Manager {
	t.Helper()
	m, err := Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(m.Close)
	return m
}

func request(rcpts ...string) *sdk.DeliverRequest {
	req := &sdk.DeliverRequest{QueueID: "Q1", Attempt: 1, From: "a@example.org", Size: 18,
		Message: strings.NewReader("Subject: x\r\n\r\nhi\r\n")}
	for _, r := range rcpts {
		req.Recipients = append(req.Recipients, sdk.Recipient{Address: r})
	}
	return req
}

func TestDeliver(t *testing.T) {
	var l logs
	cfg := testConfig(t, map[string]any{"fail_domain": "bad.example"})
	m := start(t, Options{Config: cfg, Host: testHost(), Log: l.logger()})

	req := request("ok@good.example", "x@bad.example")
	res, err := m.Deliver(t.Context(), "relay", req)
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if req.Instance != "relay" {
		t.Errorf("req.Instance = %q, want relay", req.Instance)
	}
	want := []sdk.RecipientResult{
		{Address: "ok@good.example", Status: sdk.StatusDelivered, Code: 250, EnhancedCode: "2.0.0", Text: "relay: Q1 18 bytes"},
		{Address: "x@bad.example", Status: sdk.StatusPermanent, Code: 550, EnhancedCode: "5.1.1", Text: "no such domain"},
	}
	if fmt.Sprint(res.Recipients) != fmt.Sprint(want) {
		t.Errorf("results\n got %v\nwant %v", res.Recipients, want)
	}

	dataDir := filepath.Join(cfg.Dir, "data", "plugins", "echo")
	if fi, err := os.Stat(dataDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir: %v, %v; want mode 0700", fi, err)
	}
	if b, err := os.ReadFile(filepath.Join(dataDir, "delivered.txt")); err != nil || string(b) != "ok@good.example\n" {
		t.Errorf("delivered.txt: %q, %v", b, err)
	}

	if _, err := m.Deliver(t.Context(), "relay", request("b@good.example")); err != nil {
		t.Errorf("deliver through relay again: %v", err)
	}
	if _, err := m.Deliver(t.Context(), "nope", request("b@good.example")); !errors.Is(err, ErrNoTransport) {
		t.Errorf("unknown transport: %v, want ErrNoTransport", err)
	}

	st := m.Status()
	if len(st) != 1 {
		t.Fatalf("status: %+v", st)
	}
	s := st[0]
	if s.Name != "echo" || s.Path != echoPath || s.State != StateRunning || s.PID <= 0 || s.Restarts != 0 ||
		s.Started.IsZero() || s.Description == nil || s.Description.Name != "echo" || !s.Description.Transport {
		t.Errorf("status: %+v", s)
	}
	if err := syscall.Kill(s.PID, 0); err != nil {
		t.Errorf("pid %d from status: %v", s.PID, err)
	}

	// The plugin's sdk.NewLogger lines come through slog at their level,
	// with their attributes and the plugin's name; the Host was reachable.
	attrs := map[string]any{"plugin": "echo", "level": "INFO", "instance": "relay", "check_only": false}
	if len(l.find("configured", attrs)) != 1 {
		t.Errorf("no log line %v", attrs)
	}
	attrs = map[string]any{"plugin": "echo", "instance": "echo", "account": "alice-account", "data_dir": dataDir}
	if len(l.find("configured", attrs)) != 1 {
		t.Errorf("no log line %v", attrs)
	}
}

// waitRestarted waits until the plugin runs with a pid other than old.
func waitRestarted(t *testing.T, m *Manager, old int, within time.Duration) Status {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		s := m.Status()[0]
		if s.State == StateRunning && s.PID != old {
			return s
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("not restarted within %v: %+v", within, m.Status()[0])
	return Status{}
}

func TestRestartAfterKill(t *testing.T) {
	t.Parallel()
	var l logs
	m := start(t, Options{Config: testConfig(t, nil), Host: testHost(), Log: l.logger()})
	old := m.Status()[0].PID
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()

	// While down, Deliver fails at once.
	var unavailable int
	for m.Status()[0].PID == old || m.Status()[0].State != StateRunning {
		if time.Since(killed) > 3*time.Second {
			t.Fatalf("not restarted: %+v", m.Status()[0])
		}
		t0 := time.Now()
		_, err := m.Deliver(t.Context(), "relay", request("a@good.example"))
		if d := time.Since(t0); d > 500*time.Millisecond {
			t.Fatalf("deliver while down took %v", d)
		}
		if err == nil {
			continue // Just restarted.
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("deliver while down: %v, want ErrUnavailable", err)
		}
		unavailable++
		time.Sleep(50 * time.Millisecond)
	}
	if unavailable == 0 {
		t.Error("no ErrUnavailable while down")
	}
	if d := time.Since(killed); d < minBackoff || d > 2*time.Second {
		t.Errorf("restarted after %v, want about %v", d, minBackoff)
	}

	s := waitRestarted(t, m, old, time.Second)
	if s.Restarts != 1 || !strings.Contains(s.LastError, "killed") {
		t.Errorf("status after restart: %+v", s)
	}
	if _, err := m.Deliver(t.Context(), "relay", request("a@good.example")); err != nil {
		t.Errorf("deliver after restart: %v", err)
	}
	if len(l.find("plugin exited", map[string]any{"plugin": "echo", "pid": float64(old), "exit": "signal: killed"})) != 1 {
		t.Error("exit not logged")
	}
	if len(l.find("plugin restarted", map[string]any{"plugin": "echo", "pid": float64(s.PID), "restarts": float64(1)})) != 1 {
		t.Error("restart not logged")
	}
	// The restarted plugin was configured again, with the Host.
	if n := len(l.find("configured", map[string]any{"instance": "echo", "account": "alice-account"})); n != 2 {
		t.Errorf("plugin configured %d times, want 2", n)
	}
}

func TestCrashMidDeliver(t *testing.T) {
	t.Parallel()
	var l logs
	m := start(t, Options{Config: testConfig(t, map[string]any{"crash_on": "boom@example.org"}), Log: l.logger()})
	old := m.Status()[0].PID

	t0 := time.Now()
	_, err := m.Deliver(t.Context(), "relay", request("a@good.example", "boom@example.org"))
	if err == nil || time.Since(t0) > time.Second {
		t.Fatalf("deliver to crashing plugin: %v after %v", err, time.Since(t0))
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("error %v does not wrap ErrUnavailable", err)
	}
	s := waitRestarted(t, m, old, 3*time.Second)
	// The plugin's error line is logged at error level. Its stderr is
	// relayed apart from the RPC: by the restart, it has been.
	if len(l.find("crashing on purpose", map[string]any{"plugin": "echo", "level": "ERROR", "rcpt": "boom@example.org"})) != 1 {
		t.Error("plugin's error line not logged")
	}
	if s.Restarts != 1 || s.LastError != "exited: exit status 3" {
		t.Errorf("status after restart: %+v", s)
	}
	if _, err := m.Deliver(t.Context(), "relay", request("a@good.example")); err != nil {
		t.Errorf("deliver after restart: %v", err)
	}
}

func TestCancelledDeliver(t *testing.T) {
	m := start(t, Options{Config: testConfig(t, nil), DeliverTimeout: time.Nanosecond})
	_, err := m.Deliver(t.Context(), "relay", request("a@good.example"))
	if err == nil || errors.Is(err, ErrUnavailable) {
		t.Errorf("deliver past DeliverTimeout: %v, want a deadline error", err)
	}
}

func TestPin(t *testing.T) {
	b, err := os.ReadFile(echoPath)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	wrong := sha256.Sum256([]byte("other"))
	tests := []struct {
		name    string
		pin     string
		wantErr string
	}{
		{"match", hex.EncodeToString(sum[:]), ""},
		{"mismatch", hex.EncodeToString(wrong[:]), "plugin echo: " + echoPath + " does not match its sha256 pin: checksums did not match"},
		{"invalid", "abc", "plugins.echo.sha256: not a hex SHA-256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, nil)
			cfg.Plugins["echo"].SHA256 = tc.pin
			m, err := Start(t.Context(), Options{Config: cfg, Host: testHost(), Log: slog.New(slog.DiscardHandler)})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("start: %v", err)
				}
				m.Close()
				return
			}
			if err == nil {
				m.Close()
				t.Fatal("started")
			}
			if err.Error() != tc.wantErr {
				t.Errorf("error %q, want %q", err, tc.wantErr)
			}
			if tc.name == "mismatch" && !errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
				t.Errorf("error %v is not ErrChecksumsDoNotMatch", err)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *config.Config)
		want []ConfigError // In order.
	}{
		{"transport rejects", func(c *config.Config) {
			c.Transport["relay"].Config = map[string]any{"reject_key": "x"}
		}, []ConfigError{{"echo", "transports.relay.config.reject_key", `rejected "x"`}}},
		{"unknown key", func(c *config.Config) {
			c.Transport["relay"].Config = map[string]any{"port": int64(25)}
		}, []ConfigError{{"echo", "transports.relay.config.port", "unknown key"}}},
		{"plugin and transports reject", func(c *config.Config) {
			c.Plugins["echo"].Config["reject_key"] = "p"
			c.Transport["relay"].Config = map[string]any{"reject_key": "r"}
			c.Transport["smarthost"] = &config.Transport{Plugin: "echo", Config: map[string]any{"reject_key": "s"}}
		}, []ConfigError{
			{"echo", "plugins.echo.config.reject_key", `rejected "p"`},
			{"echo", "transports.relay.config.reject_key", `rejected "r"`},
			{"echo", "transports.smarthost.config.reject_key", `rejected "s"`},
		}},
		{"not a transport", func(c *config.Config) {
			c.Plugins["echo"].Args = []string{"-no-transport"}
		}, []ConfigError{{"echo", "transports.relay.plugin", "plugin echo (echo) is not a transport"}}},
		{"no such plugin", func(c *config.Config) {
			c.Transport["relay"].Plugin = "missing"
		}, []ConfigError{{"missing", "transports.relay.plugin", `no plugin "missing" in [plugins]`}}},
		{"not a policy check", func(c *config.Config) {
			c.Policies = map[string]*config.Policy{"check": {Plugin: "echo"}}
		}, []ConfigError{{"echo", "policies.check.plugin", "plugin echo (echo) is not a policy check"}}},
		{"policy of no such plugin", func(c *config.Config) {
			c.Policies = map[string]*config.Policy{"check": {Plugin: "missing"}}
		}, []ConfigError{{"missing", "policies.check.plugin", `no plugin "missing" in [plugins]`}}},
		{"no path", func(c *config.Config) {
			c.Plugins["echo"].Path = ""
		}, []ConfigError{{"echo", "plugins.echo.path", "required"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, checkOnly := range []bool{false, true} {
				cfg := testConfig(t, nil)
				tc.edit(cfg)
				m, err := Start(t.Context(), Options{Config: cfg, Host: testHost(), CheckOnly: checkOnly, Log: slog.New(slog.DiscardHandler)})
				if err == nil {
					m.Close()
					t.Fatalf("checkOnly %v: started", checkOnly)
				}
				var got []ConfigError
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var ce *ConfigError
					if !errors.As(e, &ce) {
						t.Fatalf("checkOnly %v: error %v is not a *ConfigError", checkOnly, e)
					}
					got = append(got, *ce)
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("checkOnly %v: errors\n got %q\nwant %q", checkOnly, got, tc.want)
				}
			}
		})
	}
}

func TestCheckOnly(t *testing.T) {
	var l logs
	cfg := testConfig(t, map[string]any{"fail_domain": "bad.example"})
	m := start(t, Options{Config: cfg, Host: testHost(), Log: l.logger(), CheckOnly: true})

	if _, err := os.Stat(filepath.Join(cfg.Dir, "data")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir created in check mode: %v", err)
	}
	for _, inst := range []string{"echo", "relay"} {
		attrs := map[string]any{"plugin": "echo", "instance": inst, "check_only": true}
		if len(l.find("configured", attrs)) != 1 {
			t.Errorf("no log line %v", attrs)
		}
	}
	// No Host in check mode: the plugin did not look alice up.
	if len(l.find("configured", map[string]any{"account": "alice-account"})) != 0 {
		t.Error("host served in check mode")
	}
	s := m.Status()[0]
	if s.State != StateStopped || s.PID != 0 || s.Description == nil || s.Description.Name != "echo" {
		t.Errorf("status: %+v", s)
	}
	if _, err := m.Deliver(context.Background(), "relay", request("a@good.example")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("deliver in check mode: %v, want ErrUnavailable", err)
	}
}

func TestRestartFailsConfigure(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, nil)
	flag := filepath.Join(cfg.Dir, "reject")
	cfg.Transport["relay"].Config = map[string]any{"reject_if": flag}
	m := start(t, Options{Config: cfg, Log: slog.New(slog.DiscardHandler)})
	old := m.Status()[0].PID
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	// The restart after 1 s fails Configure: failed, and retried after 2 s.
	deadline := time.Now().Add(3 * time.Second)
	for m.Status()[0].State != StateFailed {
		if time.Now().After(deadline) {
			t.Fatalf("not failed: %+v", m.Status()[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := m.Status()[0]
	if s.Restarts != 1 || s.PID != 0 || s.LastError != "transports.relay.config.reject_if: file exists" {
		t.Errorf("status after failed restart: %+v", s)
	}
	if _, err := m.Deliver(t.Context(), "relay", request("a@good.example")); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "plugin echo failed") {
		t.Errorf("deliver while failed: %v", err)
	}
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	s = waitRestarted(t, m, old, 3*time.Second)
	if s.Restarts != 2 {
		t.Errorf("status after second restart: %+v", s)
	}
	if _, err := m.Deliver(t.Context(), "relay", request("a@good.example")); err != nil {
		t.Errorf("deliver after restart: %v", err)
	}
}

func TestClose(t *testing.T) {
	m := start(t, Options{Config: testConfig(t, nil), Log: slog.New(slog.DiscardHandler)})
	pid := m.Status()[0].PID
	m.Close()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("plugin process %d after Close: %v", pid, err)
	}
	if s := m.Status()[0]; s.State != StateStopped || s.PID != 0 {
		t.Errorf("status after Close: %+v", s)
	}
	if _, err := m.Deliver(t.Context(), "relay", request("a@good.example")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("deliver after Close: %v", err)
	}
}
