package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// TestCLIUsage: -h explains every command and exits 0; no command, an
// unknown one or the first word of some exits 2 with the usage.
func TestCLIUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		want []string // In stdout or stderr.
	}{
		{[]string{"-h"}, 0, []string{"usage: mta COMMAND", "serve", "config check", "account passwd", "queue list", "plugin list"}},
		{[]string{"serve", "-h"}, 0, []string{"usage: mta serve [-config FILE]", "Serve SMTP", "-config file"}},
		{[]string{"config", "check", "-h"}, 0, []string{"usage: mta config check [-config FILE]", "Validate the configuration", "-config file"}},
		{[]string{"account", "passwd", "-h"}, 0, []string{"usage: mta account passwd [-config FILE] ACCOUNT", "standard input", "-config file"}},
		{[]string{"queue", "list", "-h"}, 0, []string{"usage: mta queue list [-config FILE]", "queued messages", "-config file"}},
		{[]string{"plugin", "list", "-h"}, 0, []string{"usage: mta plugin list [-config FILE]", "restart count", "-config file"}},
		{[]string{"frobnicate"}, 2, []string{`unknown command "frobnicate"`, "usage: mta COMMAND"}},
		{nil, 2, []string{"usage: mta COMMAND", "serve", "/etc/switchyard/mta.toml"}},
		{[]string{"queue"}, 2, []string{"usage: mta queue COMMAND", "queue list", "mta queue: which one?"}},
		{[]string{"account"}, 2, []string{"usage: mta account COMMAND", "account passwd"}},
		{[]string{"version"}, 0, []string{"mta ", "go1."}},
		{[]string{"version", "extra"}, 2, []string{"unexpected arguments"}},
		{[]string{"queue", "list", "-frobnicate"}, 2, []string{"flag provided but not defined"}},
		{[]string{"config", "check", "-config", "/nonexistent/mta.toml"}, 2, []string{"/nonexistent/mta.toml"}},
		{[]string{"serve", "-config", "/nonexistent/mta.toml"}, 2, []string{"/nonexistent/mta.toml"}},
	} {
		t.Run(strings.Join(tc.args, "_"), func(t *testing.T) {
			t.Parallel()
			stdout, stderr, code := runMTA(t, "", tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(stdout+stderr, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			if t.Failed() {
				t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
			}
		})
	}
}

// TestCLIAdmin: account passwd, queue list and plugin list work with the
// server running (through the control socket) and stopped; a password set
// either way is the one AUTH accepts; SIGTERM stops the server with exit
// status 0.
func TestCLIAdmin(t *testing.T) {
	t.Parallel()
	sink := startSink(t, nil)
	srv := startServer(t, setup{Transports: map[string]string{"smarthost": sink.Addr}, Rest: defaultRest + `
[[routes]]
transport = "smarthost"
`})
	sub := func() string { return srv.Listeners["submission"] }
	authWith := func(password string) error {
		c, err := mtatest.Dial(sub(), false, true)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.Auth(plainClient("alice@example.org", password))
	}
	passwd := func(account, password string) (string, int) {
		out, errOut, code := srv.MTA(password+"\n", []string{"account", "passwd"}, account)
		return out + errOut, code
	}
	wantAuth := func(state, good, bad string) {
		t.Helper()
		if err := authWith(good); err != nil {
			t.Errorf("%s: AUTH with the new password: %v", state, err)
		}
		wantSMTPError(t, state+": AUTH with the old password", authWith(bad), 535, smtp.EnhancedCode{5, 7, 8})
	}
	generated := srv.Passwords["alice"]

	// Running: through the control socket.
	if _, err := os.Stat(filepath.Join(srv.Dir, "data", "ctl.sock")); err != nil {
		t.Fatalf("no control socket: %v", err)
	}
	if out, code := passwd("alice", "running-password-1"); code != 0 || !strings.Contains(out, "account alice: password set") {
		t.Fatalf("account passwd (running): exit %d: %s", code, out)
	}
	wantAuth("running", "running-password-1", generated)

	// An account added to the file since the server started.
	cfg, err := os.ReadFile(srv.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	added := string(cfg) + "\n[accounts.carol]\ndomain = \"example.org\"\naddresses = [\"carol@example.org\"]\n"
	if err := os.WriteFile(srv.ConfigPath, []byte(added), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := passwd("carol", "carol-password-1"); code != 2 || !strings.Contains(out, "restart the server") {
		t.Errorf("account passwd of an account the server has not loaded: exit %d, want 2 and a restart hint: %s", code, out)
	}
	if err := os.WriteFile(srv.ConfigPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := passwd("nosuch", "running-password-1"); code != 2 || !strings.Contains(out, `no account "nosuch"`) {
		t.Errorf("account passwd of an unknown account: exit %d, want 2: %s", code, out)
	}
	if out, code := passwd("alice", "short"); code != 2 {
		t.Errorf("account passwd with a short password: exit %d, want 2: %s", code, out)
	}
	if out := mta(t, srv, "queue", "list"); strings.TrimSpace(out) != "queue is empty" {
		t.Errorf("queue list (running): %q", out)
	}
	list := mta(t, srv, "plugin", "list")
	if f := strings.Fields(lineWith(list, "transport-submission")); len(f) < 7 || f[2] != "transport" || f[3] != "running" || f[4] == "0" || f[5] != "0" {
		t.Errorf("plugin list (running), want transport-submission serving a transport, running, a pid, 0 restarts:\n%s", list)
	}

	// SIGTERM: a graceful stop, exit status 0.
	if err := srv.Stop(); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	if !strings.Contains(srv.Log(), "shutting down") {
		t.Errorf("no shutdown logged")
	}

	// Stopped: on the data directory.
	if out, code := passwd("alice", "stopped-password-2"); code != 0 {
		t.Fatalf("account passwd (stopped): exit %d: %s", code, out)
	}
	if out := mta(t, srv, "queue", "list"); strings.TrimSpace(out) != "queue is empty" {
		t.Errorf("queue list (stopped): %q", out)
	}
	list = mta(t, srv, "plugin", "list")
	if line := lineWith(list, "transport-submission"); !strings.Contains(line, "not running") {
		t.Errorf("plugin list (stopped):\n%s", list)
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(srv.Output(), "generated password") {
		t.Errorf("a password was generated again at restart:\n%s", srv.Output())
	}
	wantAuth("after restart", "stopped-password-2", "running-password-1")

	// And the server works after all this.
	submit2 := dialAuth(t, sub(), false, "alice@example.org", "stopped-password-2")
	msg := mtatest.MakeMessage("alice@example.org", "x@example.net", "cli", 500)
	if err := send(submit2, "alice@example.org", []string{"x@example.net"}, msg); err != nil {
		t.Fatal(err)
	}
	if n := sink.WaitCount(1, waitShort); n != 1 {
		t.Fatalf("sink has %d messages, want 1", n)
	}
}

// promptScript runs argv on a pseudo-terminal, answers every prompt ending
// in ": " with the next of the given lines, and prints what the terminal
// showed; it exits with argv's status.
const promptScript = `
import os, pty, sys, termios, time
answers = sys.argv[1].split("\n")
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
seen = b""
while True:
    try:
        data = os.read(fd, 1024)
    except OSError:
        break
    if not data:
        break
    seen += data
    if seen.rstrip().endswith(b":") and answers:
        # Answer once echo is off, as a person typing would be too slow to
        # notice otherwise.
        for _ in range(500):
            if not termios.tcgetattr(fd)[3] & termios.ECHO:
                break
            time.sleep(0.01)
        os.write(fd, (answers.pop(0) + "\n").encode())
        seen += b"<answered>"
sys.stdout.write(seen.decode(errors="replace"))
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
`

// TestPasswdPrompt: on a terminal, account passwd asks twice without echo
// and says when it is done; two different answers change nothing.
func TestPasswdPrompt(t *testing.T) {
	t.Parallel()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed (.ci/run installs it)")
	}
	srv := startServer(t, setup{})
	run := func(answers string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, python, "-c", promptScript, answers, srv.Bin.MTA, "account", "passwd", "-config", srv.ConfigPath, "alice")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("prompt-password-1\nprompt-password-2")
	if err == nil || !strings.Contains(out, "the passwords differ") {
		t.Errorf("two different answers: %v\n%s", err, out)
	}
	out, err = run("prompt-password-1\nprompt-password-1")
	if err != nil || strings.Count(out, "<answered>") != 2 || !strings.Contains(out, "account alice: password set") {
		t.Fatalf("same answer twice: %v\n%s", err, out)
	}
	if strings.Contains(out, "prompt-password-1") {
		t.Errorf("the password was echoed:\n%s", out)
	}
	c := dialAuth(t, srv.Listeners["submission"], false, "alice@example.org", "prompt-password-1")
	c.Close()
}
