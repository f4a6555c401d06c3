package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/switchyard-mta/switchyard/core/store"
	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// `mta sendmail -t` submits a message from standard input through the
// server's own submission listener, with SCRAM-SHA-256 chosen as the
// strongest mechanism offered; Bcc recipients get it, the Bcc header not.
func TestSendmail(t *testing.T) {
	bin := binaries(t)
	sink := startSink(t, nil)
	srv := startServer(t, setup{
		Transports: map[string]string{"smarthost": sink.Addr},
		Rest: fmt.Sprintf("[plugins.auth-scram]\npath = %q\n[sendmail]\nusername = \"alice@example.org\"\npassword_file = \"alice.pw\"\n[[routes]]\ntransport = \"smarthost\"\n",
			bin.Plugins["auth-scram"]) + defaultRest,
	})
	if err := os.WriteFile(filepath.Join(srv.Dir, "alice.pw"), []byte(srv.Passwords["alice"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	msg := "To: bob@remote.example\nBcc: carol@remote.example\nSubject: from cron\n\nnightly report\n"
	out, errOut, code := srv.MTA(msg, []string{"sendmail"}, "-t", "-oi")
	if code != 0 {
		t.Fatalf("mta sendmail: exit %d\n%s%s", code, out, errOut)
	}
	if sink.WaitCount(1, waitShort) != 1 {
		t.Fatalf("message did not arrive\n%s", srv.Log())
	}
	got := sink.Messages()[0]
	if got.From != "alice@example.org" || strings.Join(got.Recipients, ",") != "bob@remote.example,carol@remote.example" {
		t.Errorf("envelope: from %q to %v", got.From, got.Recipients)
	}
	for _, want := range []string{"\r\nTo: bob@remote.example\r\n", "\r\nSubject: from cron\r\n\r\nnightly report\r\n", "\r\nFrom: <alice@example.org>\r\n", "\r\nMessage-ID: <"} {
		if !bytes.Contains(got.Data, []byte(want)) {
			t.Errorf("message lacks %q:\n%s", want, got.Data)
		}
	}
	if bytes.Contains(got.Data, []byte("Bcc")) || bytes.Contains(got.Data, []byte("carol")) {
		t.Errorf("Bcc leaked into the message:\n%s", got.Data)
	}
	if !waitFor(waitShort, func() bool {
		return strings.Contains(srv.Log(), "mech=SCRAM-SHA-256 ") && strings.Contains(srv.Log(), "authenticated")
	}) {
		t.Errorf("no SCRAM-SHA-256 login in the log:\n%s", srv.Log())
	}

	// Bad input: exit 2 with a message.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no recipients"},
		{[]string{"-q"}, "unknown option -q"},
	} {
		_, errOut, code := srv.MTA("Subject: x\n\ny\n", []string{"sendmail"}, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("sendmail %q: exit %d, %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

// shippedConfig returns the repository's mta.toml made to run in a test:
// free loopback ports, the test's binaries, the smarthost at sink.
func shippedConfig(t *testing.T, sink string) string {
	t.Helper()
	bin := binaries(t)
	root, err := mtatest.Root()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "mta.toml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	for _, port := range []string{"1587", "1465", "1025", "1143", "1993"} {
		old := fmt.Sprintf("address = %q", "127.0.0.1:"+port)
		if !strings.Contains(cfg, old) {
			t.Fatalf("the shipped mta.toml has no %s", old)
		}
		cfg = strings.Replace(cfg, old, fmt.Sprintf("address = %q", mtatest.FreeAddr()), 1)
	}
	cfg = regexp.MustCompile(`(?m)^data_dir = .*$`).ReplaceAllString(cfg, `data_dir = "data"`)
	cfg = regexp.MustCompile(`path = "bin/plugins/([a-z0-9-]+)"`).ReplaceAllStringFunc(cfg, func(s string) string {
		name := strings.TrimSuffix(strings.TrimPrefix(s, `path = "bin/plugins/`), `"`)
		return fmt.Sprintf("path = %q", bin.Plugins[name])
	})
	_, port, _ := net.SplitHostPort(sink)
	return strings.Replace(cfg, "port = 2525", "port = "+port, 1)
}

// TestSendmailFromCron: with the shipped configuration, `mta sendmail` run
// as cron runs it (no terminal, another directory, no -config but
// $SWITCHYARD_CONFIG, no password) hands the message to the running
// server's pickup socket; the local recipient gets it in her Inbox, the
// remote one through the smarthost, from root@localhost.
func TestSendmailFromCron(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	sink := startSink(t, nil)
	srv, err := mtatest.StartServer(bin, t.TempDir(), shippedConfig(t, sink.Addr))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()

	cmd := exec.Command(bin.MTA, "sendmail", "-oi", "alice@localhost", "bob@example.net")
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "SWITCHYARD_CONFIG=" + srv.ConfigPath}
	cmd.Stdin = strings.NewReader("Subject: nightly\n\nall is well\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mta sendmail: %v\n%s\nlog:\n%s", err, out, srv.Log())
	}
	if sink.WaitCount(1, waitShort) != 1 {
		t.Fatalf("not relayed\n%s", srv.Log())
	}
	u, _ := user.Current()
	want := u.Username + "@localhost"
	if got := sink.Messages()[0]; got.From != want || strings.Join(got.Recipients, ",") != "bob@example.net" {
		t.Errorf("relayed from %q to %v, want from %s", got.From, got.Recipients, want)
	}
	waitQueueEmpty(t, srv)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	msgs := inbox(t, srv, map[string]store.AccountConfig{"alice": {}}, "alice")
	if len(msgs) != 1 || msgs[0].Header.Get("Subject") != "nightly" {
		t.Fatalf("alice's Inbox: %d messages", len(msgs))
	}

	// With the server stopped, sendmail says so.
	cmd = exec.Command(bin.MTA, "sendmail", "alice@localhost")
	cmd.Dir, cmd.Env, cmd.Stdin = "/", []string{"SWITCHYARD_CONFIG=" + srv.ConfigPath}, strings.NewReader("Subject: x\n\ny\n")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "no server runs") {
		t.Errorf("sendmail without a server: %v\n%s", err, out)
	}
}
