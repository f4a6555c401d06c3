package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// TestCLIUsage: -h explains every command and exits 0; an unknown command
// exits 2.
func TestCLIUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		want []string // In stderr.
	}{
		{[]string{"-h"}, 0, []string{"usage: mta COMMAND", "serve", "config check", "account passwd", "queue list", "plugin list"}},
		{[]string{"serve", "-h"}, 0, []string{"usage: mta serve [-config FILE]", "Serve SMTP", "-config file"}},
		{[]string{"config", "check", "-h"}, 0, []string{"usage: mta config check [-config FILE]", "Validate the configuration", "-config file"}},
		{[]string{"account", "passwd", "-h"}, 0, []string{"usage: mta account passwd [-config FILE] ACCOUNT", "standard input", "-config file"}},
		{[]string{"queue", "list", "-h"}, 0, []string{"usage: mta queue list [-config FILE]", "queued messages", "-config file"}},
		{[]string{"plugin", "list", "-h"}, 0, []string{"usage: mta plugin list [-config FILE]", "restart count", "-config file"}},
		{[]string{"frobnicate"}, 2, []string{`unknown command "frobnicate"`, "usage: mta COMMAND"}},
		{[]string{"queue"}, 2, []string{`unknown command "queue"`}},
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
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q", w)
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
	if out, code := passwd("alice", "running-password-1"); code != 0 {
		t.Fatalf("account passwd (running): exit %d: %s", code, out)
	}
	wantAuth("running", "running-password-1", generated)
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
