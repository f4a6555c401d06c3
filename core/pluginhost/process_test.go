package pluginhost

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/core/config"
)

// script writes an executable shell script that records its pid and its
// children's in dir/pids.
func script(t *testing.T, dir, body string) string {
	t.Helper()
	path := filepath.Join(dir, "plugin.sh")
	src := "#!/bin/sh\necho $$ >> " + filepath.Join(dir, "pids") + "\n" + body
	if err := os.WriteFile(path, []byte(src), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// pids returns the pids the script recorded.
func pids(t *testing.T, dir string) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "pids"))
	if err != nil {
		t.Fatal(err)
	}
	var l []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		l = append(l, pid)
	}
	return l
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return syscall.Kill(pid, 0) == nil // Not Linux.
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z"
}

// wantGone fails unless every pid has ended within a moment.
func wantGone(t *testing.T, l []int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range l {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("process %d left running", pid)
		}
	}
}

func scriptConfig(t *testing.T, path string) *config.Config {
	return &config.Config{Hostname: "mx.example.org", DataDir: "data", Dir: t.TempDir(),
		Plugins: map[string]*config.Plugin{"bad": {Path: path}}}
}

// A plugin that answers the handshake with garbage and leaves a child
// holding its output: Start fails within its bounds, for serve and for
// config check, and leaves no process.
func TestBadHandshake(t *testing.T) {
	for _, checkOnly := range []bool{false, true} {
		dir := t.TempDir()
		path := script(t, dir, "sleep 3600 &\necho $! >> "+filepath.Join(dir, "pids")+"\necho garbage\nsleep 3600\n")
		var l logs
		start := time.Now()
		m, err := Start(t.Context(), Options{Config: scriptConfig(t, path), Log: l.logger(), CheckOnly: checkOnly})
		took := time.Since(start)
		if err == nil {
			m.Close()
			t.Fatalf("checkOnly %v: started", checkOnly)
		}
		if !strings.Contains(err.Error(), "plugin bad: starting "+path) {
			t.Errorf("error %q does not name the plugin and its path", err)
		}
		// No handshake, no graceful exit to wait for: the group dies at once.
		if took > stopTimeout {
			t.Errorf("checkOnly %v: Start took %v, over %v", checkOnly, took, stopTimeout)
		}
		if p := pids(t, dir); len(p) != 2 {
			t.Fatalf("recorded pids %v", p)
		} else {
			wantGone(t, p)
		}
		if len(l.find(forcedMessage, map[string]any{"level": "WARN"})) > 0 {
			t.Errorf("go-plugin's %q warned of", forcedMessage)
		}
	}
}

// Start stops at once when its context ends while a plugin starts (SIGINT
// at start-up), and leaves no process.
func TestStartCanceled(t *testing.T) {
	dir := t.TempDir()
	path := script(t, dir, "exec sleep 3600\n") // Never handshakes.
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	m, err := Start(ctx, Options{Config: scriptConfig(t, path), Log: slog.New(slog.DiscardHandler)})
	if err == nil {
		m.Close()
		t.Fatal("started")
	}
	if took := time.Since(start); took > stopTimeout+2*time.Second {
		t.Errorf("Start returned %v after the cancel", took)
	}
	wantGone(t, pids(t, dir))

	// Already canceled: nothing starts.
	os.Remove(filepath.Join(dir, "pids"))
	if _, err := Start(ctx, Options{Config: scriptConfig(t, path), Log: slog.New(slog.DiscardHandler)}); err == nil || !errors.Is(err, context.Canceled) {
		t.Errorf("canceled Start: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pids")); err == nil {
		t.Error("a plugin was started with a canceled context")
	}
}

// Close kills what a plugin left running in its process group.
func TestCloseKillsChildren(t *testing.T) {
	dir := t.TempDir()
	path := script(t, dir, "sleep 3600 &\necho $! >> "+filepath.Join(dir, "pids")+"\nexec "+echoPath+" \"$@\"\n")
	cfg := testConfig(t, nil)
	cfg.Plugins["echo"].Path = path
	m := start(t, Options{Config: cfg, Host: testHost(), Log: slog.New(slog.DiscardHandler)})
	p := pids(t, dir)
	if len(p) != 2 || !alive(p[1]) {
		t.Fatalf("pids %v", p)
	}
	m.Close()
	wantGone(t, p)
}

// A missing or non-executable binary is an error at plugins.NAME.path,
// found before anything starts.
func TestPluginPath(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644)
	for path, want := range map[string]string{
		filepath.Join(dir, "missing"): "cannot run " + filepath.Join(dir, "missing") + ": no such file or directory",
		plain:                         plain + " is not an executable file",
		dir:                           dir + " is not an executable file",
	} {
		_, err := Start(t.Context(), Options{Config: scriptConfig(t, path), Log: slog.New(slog.DiscardHandler), CheckOnly: true})
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != "plugins.bad.path" || ce.Msg != want {
			t.Errorf("%s: got %v, want %s at plugins.bad.path", path, err, want)
		}
	}
}

// Close returns even when a child that left the plugin's process group
// (setsid) holds the plugin's output, which go-plugin reads to its end.
func TestCloseEscapedChild(t *testing.T) {
	old := stopTimeout
	stopTimeout = 300 * time.Millisecond
	t.Cleanup(func() { stopTimeout = old })
	dir := t.TempDir()
	path := script(t, dir, "setsid sleep 3600 &\necho $! >> "+filepath.Join(dir, "pids")+"\nexec "+echoPath+" \"$@\"\n")
	cfg := testConfig(t, nil)
	cfg.Plugins["echo"].Path = path
	m := start(t, Options{Config: cfg, Host: testHost(), Log: slog.New(slog.DiscardHandler)})
	p := pids(t, dir)
	if len(p) != 2 || !alive(p[1]) {
		t.Fatalf("pids %v", p)
	}
	escaped := p[1]
	defer syscall.Kill(escaped, syscall.SIGKILL) // Out of the group: not the manager's to kill.

	closed := make(chan struct{})
	go func() {
		m.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * stopTimeout):
		syscall.Kill(escaped, syscall.SIGKILL) // Lets the Close end.
		<-closed
		t.Fatalf("Close blocked past %v by a child holding the plugin's output", 10*stopTimeout)
	}
	wantGone(t, p[:1])
}
