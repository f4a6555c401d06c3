package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"net/textproto"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// scriptPlugins declares policy-script plugins by name, each with the
// stages and body need given.
func scriptPlugins(t *testing.T, plugins map[string]string) string {
	t.Helper()
	bin := binaries(t)
	var b strings.Builder
	for name, args := range plugins {
		fmt.Fprintf(&b, "[plugins.%s]\npath = %q\nargs = [%s]\n", name, bin.Plugins["policy-script"], args)
	}
	return b.String()
}

// wantCode checks an SMTP error's code and enhanced code.
func wantCode(t *testing.T, what string, err error, code int, enhanced smtp.EnhancedCode) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != code || se.EnhancedCode != enhanced {
		t.Errorf("%s: %v, want %d %v", what, err, code, enhanced)
	}
}

// TestPolicyVerdicts: checks on the MX at helo, mail, rcpt and data,
// through a real plugin process: a refused greeting, sender and recipient
// (that one only), a refused, discarded and quarantined message, and the
// headers of two checks above the Received field, in order, with the field
// a check deleted gone.
func TestPolicyVerdicts(t *testing.T) {
	t.Parallel()
	sink := startSink(t, nil)
	srv := startServer(t, setup{
		IMAP:          true,
		RelayNetworks: []string{"127.0.0.0/8"},
		Policies:      []string{"first", "second"},
		Transports:    map[string]string{"smarthost": sink.Addr},
		Rest: scriptPlugins(t, map[string]string{"script": `"-stages", "helo,mail,rcpt,data", "-body", "full"`}) + `
[policies.first]
plugin = "script"
[[policies.first.config.rules]]
stage = "helo"
match = "bad.helo"
action = "reject"
text = "go away"
[[policies.first.config.rules]]
stage = "mail"
match = "spammer@"
action = "reject"
[[policies.first.config.rules]]
stage = "rcpt"
match = "reject-rcpt"
action = "reject"
code = 554
[[policies.first.config.rules]]
stage = "rcpt"
match = "tempfail-rcpt"
action = "tempfail"
[[policies.first.config.rules]]
stage = "rcpt"
header = "X-Rcpt: seen"
[[policies.first.config.rules]]
stage = "data"
match = "DISCARD-ME"
action = "discard"
[[policies.first.config.rules]]
stage = "data"
match = "QUARANTINE-ME"
action = "quarantine"
text = "looks like spam"
[[policies.first.config.rules]]
stage = "data"
match = "REJECT-ME"
action = "reject"
text = "content refused"
[[policies.first.config.rules]]
stage = "data"
header = "X-First: 1"
delete = "X-Remove-Me"
[policies.second]
plugin = "script"
[[policies.second.config.rules]]
stage = "data"
header = "X-Second: 2"
[[routes]]
to_domains = ["remote.example"]
transport = "smarthost"
` + defaultRest,
	})
	mx := srv.Listeners["mx"]
	dial := func() *smtp.Client {
		t.Helper()
		c, err := mtatest.Dial(mx, false, false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	// A refused greeting; the client may greet again.
	c, err := smtp.Dial(mx)
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, "EHLO bad.helo", c.Hello("bad.helo"), 550, smtp.EnhancedCode{5, 7, 1})
	c.Close()

	c = dial()
	wantCode(t, "MAIL from a spammer", c.Mail("spammer@remote.example", nil), 550, smtp.EnhancedCode{5, 7, 1})
	if err := c.Mail("carol@remote.example", nil); err != nil {
		t.Fatalf("MAIL after a refused one: %v", err)
	}
	wantCode(t, "RCPT reject-rcpt", c.Rcpt("reject-rcpt@remote.example", nil), 554, smtp.EnhancedCode{5, 7, 1})
	wantCode(t, "RCPT tempfail-rcpt", c.Rcpt("tempfail-rcpt@remote.example", nil), 451, smtp.EnhancedCode{4, 7, 1})
	if err := c.Rcpt("bob@example.org", nil); err != nil {
		t.Fatalf("RCPT bob: %v", err)
	}
	msg := "From: carol@remote.example\r\nX-Remove-Me: forged\r\nSubject: kept\r\n\r\nhello\r\n"
	if err := data(c, msg); err != nil {
		t.Fatalf("DATA: %v", err)
	}
	cb := imapLogin(t, srv, "imaps", "bob", srv.Passwords["bob"], nil)
	if n := waitMessages(t, cb, "INBOX", 1); n != 1 {
		t.Fatalf("bob's Inbox holds %d messages, want 1", n)
	}
	got := string(fetchBodyOf(t, cb, "INBOX", 1))
	if i := strings.Index(got, "X-First: 1\r\nX-Second: 2\r\nReceived: "); i < 0 || !strings.Contains(got[:i], "X-Rcpt: seen\r\n") {
		t.Errorf("headers not in check order above Received:\n%s", got)
	}
	if strings.Contains(got, "X-Remove-Me") || !strings.Contains(got, "Subject: kept\r\n\r\nhello\r\n") {
		t.Errorf("deleted field still there, or message changed:\n%s", got)
	}
	if strings.Contains(got, "X-Rcpt: seen\r\nX-Rcpt: seen") {
		t.Errorf("headers of refused recipients kept:\n%s", got)
	}

	// Discard: 250, nothing delivered.
	c = dial()
	if err := send(c, "carol@remote.example", []string{"bob@example.org"}, []byte("Subject: DISCARD-ME\r\n\r\nx\r\n")); err != nil {
		t.Fatalf("discarded message: %v, want 250", err)
	}
	// Reject at data.
	err = send(c, "carol@remote.example", []string{"bob@example.org"}, []byte("Subject: REJECT-ME\r\n\r\nx\r\n"))
	wantCode(t, "REJECT-ME", errors.Unwrap(err), 550, smtp.EnhancedCode{5, 7, 1})
	if err == nil || !strings.Contains(err.Error(), "content refused") {
		t.Errorf("REJECT-ME: %v, want the check's text", err)
	}

	// Quarantine: bob's copy in Junk, the remote one marked.
	if err := send(c, "carol@remote.example", []string{"bob@example.org", "dave@remote.example"}, []byte("Subject: QUARANTINE-ME\r\n\r\nx\r\n")); err != nil {
		t.Fatalf("quarantined message: %v, want 250", err)
	}
	if n := waitMessages(t, cb, "Junk", 1); n != 1 {
		t.Errorf("bob's Junk holds %d messages, want 1", n)
	}
	if n := waitMessages(t, cb, "INBOX", 1); n != 1 {
		t.Errorf("bob's Inbox holds %d messages, want still 1 (discarded, refused and quarantined ones not there)", n)
	}
	if sink.WaitCount(1, waitShort) != 1 {
		t.Fatal("the remote copy did not arrive")
	}
	if remote := sink.Messages()[0].Data; !bytes.Contains(remote, []byte("\r\nX-Switchyard-Quarantine: looks like spam\r\nReceived: ")) {
		t.Errorf("remote copy not marked:\n%s", remote)
	}
	for _, line := range []string{`msg="message discarded by policy" .*policy=first`, `msg="message quarantined by policy" .*policy=first reason="looks like spam"`, `msg="recipient refused by policy" .*rcpt=reject-rcpt@remote.example code=554`} {
		if !logHas(srv, line) {
			t.Errorf("log lacks %s", line)
		}
	}
}

// TestPolicyFailures: a check slower than its timeout, and one whose
// plugin crashes mid-session, get their on_error: tempfail (451 4.7.1,
// never 5xx, within the timeout) or accept; after the crash the plugin
// restarts and the next session is checked again.
func TestPolicyFailures(t *testing.T) {
	t.Parallel()
	srv := startServer(t, setup{
		Policies: []string{"strict", "lenient"},
		Rest: scriptPlugins(t, map[string]string{"script": `"-stages", "rcpt"`, "other": `"-stages", "rcpt"`}) + `
[policies.strict]
plugin = "script"
timeout = "1s"
[[policies.strict.config.rules]]
stage = "rcpt"
match = "slow@"
sleep = "30s"
[[policies.strict.config.rules]]
stage = "rcpt"
match = "crash@"
exit = true
[[policies.strict.config.rules]]
stage = "rcpt"
match = "refused@"
action = "reject"
[policies.lenient]
plugin = "other"
timeout = "1s"
on_error = "accept"
[[policies.lenient.config.rules]]
stage = "rcpt"
match = "patient@"
sleep = "30s"
` + defaultRest + `
[accounts.slow]
domain = "example.org"
addresses = ["slow@example.org", "crash@example.org", "patient@example.org", "refused@example.org"]
`,
	})
	c, err := mtatest.Dial(srv.Listeners["mx"], false, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("carol@remote.example", nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	wantCode(t, "RCPT past the timeout", c.Rcpt("slow@example.org", nil), 451, smtp.EnhancedCode{4, 7, 1})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("a check past its 1s timeout held RCPT %v", d)
	}
	if err := c.Rcpt("patient@example.org", nil); err != nil {
		t.Errorf("RCPT past the timeout with on_error accept: %v", err)
	}
	wantCode(t, "RCPT crashing the plugin", c.Rcpt("crash@example.org", nil), 451, smtp.EnhancedCode{4, 7, 1})
	if err := c.Rcpt("bob@example.org", nil); err == nil {
		// Possible only if the plugin restarted already.
		t.Log("plugin back within the session")
	} else {
		wantCode(t, "RCPT while the plugin restarts", err, 451, smtp.EnhancedCode{4, 7, 1})
	}
	c.Close()

	// After the restart, the next session is checked again.
	if !waitFor(waitShort, func() bool { return strings.Contains(srv.Log(), `msg="plugin restarted" plugin=script`) }) {
		t.Fatalf("plugin did not restart:\n%s", srv.Log())
	}
	c, err = mtatest.Dial(srv.Listeners["mx"], false, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("carol@remote.example", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("bob@example.org", nil); err != nil {
		t.Errorf("RCPT after the restart: %v", err)
	}
	wantCode(t, "RCPT refused after the restart", c.Rcpt("refused@example.org", nil), 550, smtp.EnhancedCode{5, 7, 1})
}

// TestPolicyConnect: a check refusing the client at connect answers its
// first EHLO with the refusal and closes the connection.
func TestPolicyConnect(t *testing.T) {
	t.Parallel()
	srv := startServer(t, setup{
		Policies: []string{"block"},
		Rest: scriptPlugins(t, map[string]string{"script": `"-stages", "connect"`}) + `
[policies.block]
plugin = "script"
[[policies.block.config.rules]]
stage = "connect"
match = "127.0.0.1"
action = "reject"
code = 554
text = "your network is blocked"
` + defaultRest,
	})
	c, err := textproto.Dial("tcp", srv.Listeners["mx"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	c.PrintfLine("EHLO client.example")
	if code, msg, err := c.ReadResponse(250); code != 554 || !strings.Contains(msg, "your network is blocked") {
		t.Errorf("EHLO: %d %q %v, want 554 and the check's text", code, msg, err)
	}
	c.PrintfLine("NOOP")
	if _, err := c.ReadLine(); err == nil {
		t.Error("connection still open after the refusal")
	}
}

// data sends msg as DATA on c.
func data(c *smtp.Client, msg string) error {
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	return w.Close()
}

// waitMessages waits until mailbox holds want messages, and returns how
// many it holds.
func waitMessages(t *testing.T, c *imapclient.Client, mailbox string, want int) int {
	t.Helper()
	var n int
	waitFor(waitShort, func() bool {
		sd, err := c.Status(mailbox, &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil {
			t.Fatalf("STATUS %s: %v", mailbox, err)
		}
		n = int(deref(sd.NumMessages))
		return n >= want
	})
	return n
}

// logHas reports whether a line of srv's log matches the expression.
func logHas(srv *mtatest.Server, expr string) bool {
	return regexp.MustCompile(`(?m)^.*` + expr).MatchString(srv.Log())
}

// TestPolicyGreylist: the greylist example, an outsider's plugin, on the
// MX: a new triplet gets 451 4.7.1, also when retried at once; after the
// delay it passes, and the message is delivered.
func TestPolicyGreylist(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	srv := startServer(t, setup{IMAP: true, Policies: []string{"greylist"}, Rest: fmt.Sprintf(`
[plugins.policy-greylist]
path = %q
[policies.greylist]
plugin = "policy-greylist"
[policies.greylist.config]
delay = "1s"
`, bin.Plugins["policy-greylist"]) + defaultRest})
	attempt := func() error {
		c, err := mtatest.Dial(srv.Listeners["mx"], false, false)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return send(c, "carol@remote.example", []string{"bob@example.org"}, []byte("Subject: greylisted\r\n\r\nretried\r\n"))
	}
	for _, when := range []string{"first attempt", "retried at once"} {
		err := attempt()
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 7, 1}) {
			t.Fatalf("%s: %v, want 451 4.7.1", when, err)
		}
	}
	time.Sleep(2100 * time.Millisecond)
	if err := attempt(); err != nil {
		t.Fatalf("after the delay: %v", err)
	}
	cb := imapLogin(t, srv, "imaps", "bob", srv.Passwords["bob"], nil)
	if n := waitMessages(t, cb, "INBOX", 1); n != 1 {
		t.Errorf("bob's Inbox holds %d messages, want 1", n)
	}
}
