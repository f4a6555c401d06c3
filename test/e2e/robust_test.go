package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// TestSlowlorisCapped: 200 connections from one address that never finish
// a command line hold at most the per-IP cap (20 by default) of the MX
// listener; the others are refused with 421 4.7.0, and a client at another
// address is served meanwhile.
func TestSlowlorisCapped(t *testing.T) {
	t.Parallel()
	srv := startServer(t, setup{})
	mx := srv.Listeners["mx"]

	conns := make([]net.Conn, 200)
	for i := range conns {
		conns[i] = dialFrom(t, "127.0.0.1", mx)
		conns[i].Write([]byte("E")) // The first byte of a line that never ends.
	}
	var mu sync.Mutex
	replies := map[string]int{}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			mu.Lock()
			defer mu.Unlock()
			switch {
			case strings.HasPrefix(line, "220 "):
				replies["220"]++
			case strings.HasPrefix(line, "421 4.7.0 ") && strings.Contains(line, "Too many connections from your address"):
				replies["421"]++
			default:
				replies[fmt.Sprintf("%q %v", line, err)]++
			}
		})
	}
	wg.Wait()
	if replies["220"] != 20 || replies["421"] != 180 || len(replies) != 2 {
		t.Fatalf("replies to 200 connections from one address: %v; want 20 greetings and 180 refusals", replies)
	}

	other := dialFrom(t, "127.0.0.2", mx)
	r := &rawConn{t: t, nc: other, tp: textproto.NewConn(other)}
	other.SetDeadline(time.Now().Add(10 * time.Second))
	r.expect(220)
	r.cmd(250, "EHLO other.example")
	if !strings.Contains(srv.Log(), "connections refused over limits") {
		t.Error("no log line for the refusals")
	}
}

// dialFrom connects to addr from the loopback address ip.
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, ip, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestBindFailure: a listener whose address is taken stops the start at
// once, before any plugin starts, naming the listener with file and line,
// and leaves no listener open.
func TestBindFailure(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	first := mtatest.FreeAddr()
	cfg := serverConfig(bin, setup{}, first, mtatest.FreeAddr(), taken.Addr().String())
	dir := t.TempDir()
	path := filepath.Join(dir, "mta.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin.MTA, "serve", "-config", path)
	out, err := runWithin(t, cmd, 20*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("mta serve with a taken address: %v\n%s", err, out)
	}
	line := lineOf(cfg, fmt.Sprintf("address = %q", taken.Addr().String()))
	want := fmt.Sprintf("%s:%d: listeners[2].address: listener \"mx\" (smtp) cannot listen on %s: bind: address already in use", path, line, taken.Addr())
	if !strings.Contains(out, want) {
		t.Errorf("output does not contain %q:\n%s", want, out)
	}
	if strings.Contains(out, "plugin started") {
		t.Errorf("plugins started before the listeners were bound:\n%s", out)
	}
	if ln, err := net.Listen("tcp", first); err != nil {
		t.Errorf("the first listener's address is still taken: %v", err)
	} else {
		ln.Close()
	}

	// config check names the listener the same way, with exit status 2.
	stdout, stderr, code := runMTA(t, "", "config", "check", "-config", path)
	if code != 2 || !strings.Contains(stderr, want) {
		t.Errorf("config check: exit %d, want 2 and %q\n%s%s", code, want, stdout, stderr)
	}
}

// lineOf returns the 1-based line of s that is line.
func lineOf(s, line string) int {
	for i, l := range strings.Split(s, "\n") {
		if l == line {
			return i + 1
		}
	}
	return 0
}

// runWithin runs cmd and returns its combined output; it fails the test if
// cmd runs longer than d.
func runWithin(t *testing.T, cmd *exec.Cmd, d time.Duration) (string, error) {
	t.Helper()
	var b strings.Builder
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return b.String(), err
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not end within %v:\n%s", strings.Join(cmd.Args, " "), d, b.String())
		return "", nil
	}
}

// TestSignalsLeaveNoOrphan: SIGHUP is logged and ignored, the plugins stay
// the server's children; SIGTERM ends the server and every plugin.
func TestSignalsLeaveNoOrphan(t *testing.T) {
	t.Parallel()
	srv := startServer(t, setup{})
	pids := pluginPIDs(t, srv)

	srv.Signal(syscall.SIGHUP)
	if !waitFor(10*time.Second, func() bool { return strings.Contains(srv.Log(), "SIGHUP ignored") }) {
		t.Fatalf("no log line for SIGHUP:\n%s", srv.Log())
	}
	time.Sleep(500 * time.Millisecond)
	if srv.Exited() {
		t.Fatalf("SIGHUP ended the server:\n%s", srv.Log())
	}
	for name, pid := range pids {
		if ppid := parentOf(pid); ppid != srv.PID() {
			t.Errorf("plugin %s (pid %d): parent %d after SIGHUP, want the server %d", name, pid, ppid, srv.PID())
		}
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	for name, pid := range pids {
		if !waitFor(10*time.Second, func() bool { return !alive(pid) }) {
			t.Errorf("plugin %s (pid %d) left running after the server ended", name, pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// pluginPIDs returns the pid of every plugin in srv's configuration.
func pluginPIDs(t *testing.T, srv *mtatest.Server) map[string]int {
	t.Helper()
	cfg, err := os.ReadFile(srv.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	pids := map[string]int{}
	for _, line := range strings.Split(string(cfg), "\n") {
		name, ok := strings.CutPrefix(line, "[plugins.")
		if !ok || strings.Contains(name, ".") {
			continue
		}
		name = strings.TrimSuffix(name, "]")
		pid, err := srv.PluginPID(name)
		if err != nil {
			t.Fatal(err)
		}
		pids[name] = pid
	}
	if len(pids) == 0 {
		t.Fatal("no plugin in the configuration")
	}
	return pids
}

// alive reports whether pid is a process that has not ended (a zombie has).
func alive(pid int) bool {
	f := procStat(pid)
	return len(f) > 0 && f[0] != "Z"
}

// parentOf returns the parent pid of pid, or 0.
func parentOf(pid int) int {
	f := procStat(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// procStat returns the fields of /proc/PID/stat after the command name:
// state, ppid, ...; nil if there is no such process.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b) // pid (comm) state ppid ...; comm may hold ')'.
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
}

// TestConfigCheckBadPlugin: a plugin that answers the handshake with
// garbage and leaves a child holding its output makes `mta config check`
// exit 2 at once, naming the plugin, and leaves no process behind.
func TestConfigCheckBadPlugin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pids := filepath.Join(dir, "pids")
	script := filepath.Join(dir, "bad-plugin")
	src := "#!/bin/sh\necho $$ >> " + pids + "\nsleep 3600 &\necho $! >> " + pids + "\necho garbage\nsleep 3600\n"
	if err := os.WriteFile(script, []byte(src), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("hostname = \"mail.example.org\"\ndata_dir = \"data\"\n[plugins.bad]\npath = %q\n", script)
	path := filepath.Join(dir, "mta.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stdout, stderr, code := runMTA(t, "", "config", "check", "-config", path)
	if code != 2 || !strings.Contains(stderr, "plugin bad: starting "+script) {
		t.Errorf("exit %d, want 2 naming the plugin:\n%s%s", code, stdout, stderr)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("config check took %v", d)
	}
	b, err := os.ReadFile(pids)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		if !waitFor(5*time.Second, func() bool { return !alive(pid) }) {
			t.Errorf("process %d left running", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
