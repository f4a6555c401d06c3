package e2e

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TestQueueListFilters: queue list selects by account, recipient domain,
// transport and age, prints JSON, and refuses bad filters with exit 2; the
// changing commands count what they changed, and each change stays after
// kill -9 right after the command.
func TestQueueListFilters(t *testing.T) {
	t.Parallel()
	sink := startSink(t, func(rcpt string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	})
	srv := startServer(t, setup{IMAP: true, BackoffScale: 1, Transports: map[string]string{"smarthost": sink.Addr}, Rest: defaultRest + `
[[routes]]
transport = "smarthost"
`})
	for _, s := range []struct{ account, rcpt string }{{"alice", "x@remote.example"}, {"bob", "y@other.example"}} {
		c := dialAuth(t, srv.Listeners["submission"], false, s.account+"@example.org", srv.Passwords[s.account])
		if err := send(c, s.account+"@example.org", []string{s.rcpt}, []byte("Subject: held back\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	if !waitFor(waitShort, func() bool { return strings.Count(srv.Log(), "status=deferred") >= 2 }) {
		t.Fatalf("no deferred attempts:\n%s", srv.Log())
	}
	lines := func(args ...string) []string {
		out := mta(t, srv, append([]string{"queue", "list"}, args...)...)
		return strings.Split(strings.TrimSpace(out), "\n")
	}
	// crash kills the server with SIGKILL right after a command returned,
	// and starts it again: the change must have stayed.
	crash := func() {
		t.Helper()
		srv.Kill()
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
	}
	if l := lines("-account", "alice"); len(l) != 2 || !strings.Contains(l[1], "x@remote.example") {
		t.Errorf("-account alice:\n%s", strings.Join(l, "\n"))
	}
	if l := lines("-to", "@OTHER.example"); len(l) != 2 || !strings.Contains(l[1], "y@other.example") {
		t.Errorf("-to @OTHER.example:\n%s", strings.Join(l, "\n"))
	}
	if l := lines("-transport", "smarthost", "-state", "pending"); len(l) != 3 {
		t.Errorf("-transport smarthost: want both messages:\n%s", strings.Join(l, "\n"))
	}
	if l := lines("-older", "1h"); len(l) != 1 || !strings.HasPrefix(l[0], "no queued message matches (2 queued)") {
		t.Errorf("-older 1h:\n%s", strings.Join(l, "\n"))
	}
	var msgs []struct {
		ID         string `json:"id"`
		From       string `json:"from"`
		Recipients []struct {
			Address  string `json:"address"`
			State    string `json:"state"`
			Attempts int    `json:"attempts"`
			Code     int    `json:"code"`
		} `json:"recipients"`
	}
	out := mta(t, srv, "queue", "list", "-json", "-from", "bob@example.org")
	if err := json.Unmarshal([]byte(out), &msgs); err != nil || len(msgs) != 1 || msgs[0].Recipients[0].Address != "y@other.example" || msgs[0].Recipients[0].Code != 451 {
		t.Errorf("-json -from bob: %v\n%s", err, out)
	}
	show := mta(t, srv, "queue", "show", msgs[0].ID)
	for _, want := range []string{`id:\s+` + msgs[0].ID, `from:\s+bob@example\.org`, `recipient:\s+y@other\.example`, `state:\s+pending, 1 attempts`, `attempt:\s+\S+ \S+ via \S+, \d+ms`, `result:\s+temporary 451 4\.3\.0 try later`, `next attempt:`} {
		if !regexp.MustCompile(want).MatchString(show) {
			t.Errorf("queue show lacks %s:\n%s", want, show)
		}
	}
	if _, _, code := srv.MTA("", []string{"queue", "show"}, "ffff"); code != 2 {
		t.Errorf("queue show of an unknown id: exit %d, want 2", code)
	}
	// Reschedule: a filter or -all; due now makes another attempt at once.
	if _, errOut, code := srv.MTA("", []string{"queue", "reschedule"}); code != 2 || !strings.Contains(errOut, "-all") {
		t.Errorf("queue reschedule without a filter: exit %d, want 2\n%s", code, errOut)
	}
	if out := mta(t, srv, "queue", "reschedule", "-to", "@other.example"); !strings.HasPrefix(out, "1 messages rescheduled") {
		t.Errorf("queue reschedule -to @other.example: %s", out)
	}
	if !waitFor(waitShort, func() bool { return strings.Count(srv.Log(), "status=deferred") >= 3 }) {
		t.Errorf("no attempt after reschedule:\n%s", srv.Log())
	}
	if out := mta(t, srv, "queue", "reschedule", "-all", "-in", "2h"); !strings.HasPrefix(out, "2 messages rescheduled") {
		t.Errorf("queue reschedule -all -in 2h: %s", out)
	}
	crash()
	var later []struct {
		Recipients []struct {
			NextAttempt time.Time `json:"next_attempt"`
		} `json:"recipients"`
	}
	if err := json.Unmarshal([]byte(mta(t, srv, "queue", "list", "-json")), &later); err != nil || len(later) != 2 {
		t.Fatalf("list after reschedule and kill -9: %v", err)
	}
	for _, m := range later {
		if d := time.Until(m.Recipients[0].NextAttempt); d < 110*time.Minute || d > 2*time.Hour {
			t.Errorf("next attempt in %v after reschedule -in 2h and kill -9, want about 2h", d)
		}
	}
	// Hold and release.
	if _, errOut, code := srv.MTA("", []string{"queue", "hold"}); code != 2 {
		t.Errorf("queue hold without a filter: exit %d, want 2\n%s", code, errOut)
	}
	if out := mta(t, srv, "queue", "hold", "-to", "@other.example"); !strings.HasPrefix(out, "1 messages held") {
		t.Errorf("queue hold: %s", out)
	}
	if l := lines("-state", "held"); len(l) != 2 || !strings.Contains(l[1], "y@other.example") || !strings.Contains(l[1], "held") {
		t.Errorf("-state held:\n%s", strings.Join(l, "\n"))
	}
	crash()
	if l := lines("-state", "held"); len(l) != 2 {
		t.Errorf("-state held after kill -9 and restart:\n%s", strings.Join(l, "\n"))
	}
	if out := mta(t, srv, "queue", "release", "-all"); !strings.HasPrefix(out, "1 messages released") {
		t.Errorf("queue release -all: %s", out)
	}
	crash()
	if l := lines("-state", "held"); len(l) != 1 || !strings.HasPrefix(l[0], "no queued message matches") {
		t.Errorf("-state held after release:\n%s", strings.Join(l, "\n"))
	}
	// Fail: bob gets a DSN saying the operator failed it.
	if out := mta(t, srv, "queue", "fail", "-account", "bob"); !strings.HasPrefix(out, "1 messages failed") {
		t.Errorf("queue fail: %s", out)
	}
	// The failure stays after kill -9, and its DSN comes once: one queued
	// just before the kill and made again after the restart is not queued
	// twice (queue.Envelope.NoticeKey).
	crash()
	if l := lines("-account", "bob", "-state", "pending"); len(l) != 1 || !strings.HasPrefix(l[0], "no queued message matches") {
		t.Errorf("bob's message pending after fail and kill -9:\n%s", strings.Join(l, "\n"))
	}
	cb := imapLogin(t, srv, "imaps", "bob", srv.Passwords["bob"], nil)
	if n := waitMessages(t, cb, "INBOX", 1); n != 1 {
		t.Fatalf("bob's Inbox holds %d messages, want the DSN", n)
	}
	time.Sleep(500 * time.Millisecond)
	if n := waitMessages(t, cb, "INBOX", 1); n != 1 {
		t.Fatalf("bob's Inbox holds %d messages, want one DSN", n)
	}
	if dsn := string(fetchBodyOf(t, cb, "INBOX", 1)); !strings.Contains(dsn, "operator") || !strings.Contains(dsn, "y@other.example") {
		t.Errorf("DSN:\n%s", dsn)
	}
	// Drop: gone, without a DSN to alice.
	if out := mta(t, srv, "queue", "drop", "-account", "alice"); !strings.HasPrefix(out, "1 messages dropped") {
		t.Errorf("queue drop: %s", out)
	}
	if !logHas(srv, `msg="message dropped by the operator"`) {
		t.Error("drop not logged")
	}
	crash()
	if l := lines("-account", "alice"); len(l) != 1 || !strings.HasPrefix(l[0], "no queued message matches") {
		t.Errorf("after drop:\n%s", strings.Join(l, "\n"))
	}
	for _, args := range [][]string{{"-account", "nobody"}, {"-from", "not an address"}, {"-state", "deferred"}, {"-transport", "nowhere"}, {"extra"}} {
		if _, errOut, code := srv.MTA("", []string{"queue", "list"}, args...); code != 2 {
			t.Errorf("queue list %q: exit %d, want 2\n%s", args, code, errOut)
		}
	}
}

// TestHoldRule: a hold rule for a domain holds new mail to it while other
// mail flows; release delivers it; removing the rule lets new mail go. The
// rule, and its removal, stay after kill -9.
func TestHoldRule(t *testing.T) {
	t.Parallel()
	sink := startSink(t, nil)
	srv := startServer(t, setup{Transports: map[string]string{"smarthost": sink.Addr}, Rest: defaultRest + `
[[routes]]
transport = "smarthost"
`})
	holdrule := func(verb string, args ...string) string {
		t.Helper()
		out, errOut, code := srv.MTA("", []string{"queue", "holdrule", verb}, args...)
		if code != 0 {
			t.Fatalf("mta queue holdrule %s %q: exit %d\n%s%s", verb, args, code, out, errOut)
		}
		return out
	}
	if out := holdrule("add", "-to-domain", "HELD.example"); !strings.Contains(out, "new mail to @held.example") {
		t.Errorf("holdrule add: %s", out)
	}
	srv.Kill() // The rule stays after kill -9 right after the command.
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c := dialAuth(t, srv.Listeners["submission"], false, "alice@example.org", srv.Passwords["alice"])
	for _, rcpt := range []string{"x@held.example", "y@free.example"} {
		if err := send(c, "alice@example.org", []string{rcpt}, []byte("Subject: rule\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	if sink.WaitCount(1, waitShort) != 1 || sink.Messages()[0].Recipients[0] != "y@free.example" {
		t.Fatalf("the free message did not flow: %d at the sink", sink.Count())
	}
	time.Sleep(300 * time.Millisecond)
	if sink.Count() != 1 {
		t.Errorf("the held message was delivered")
	}
	if out := mta(t, srv, "queue", "list", "-state", "held"); !strings.Contains(out, "x@held.example") {
		t.Errorf("queue list -state held:\n%s", out)
	}
	if out := mta(t, srv, "queue", "release", "-to", "@held.example"); !strings.HasPrefix(out, "1 messages released") {
		t.Errorf("release: %s", out)
	}
	if sink.WaitCount(2, waitShort) != 2 {
		t.Errorf("the released message did not arrive")
	}
	out := holdrule("list")
	if !strings.Contains(out, "held.example") {
		t.Fatalf("holdrule list:\n%s", out)
	}
	id := strings.Fields(strings.Split(strings.TrimSpace(out), "\n")[1])[0]
	holdrule("rm", id)
	srv.Kill() // And its removal stays.
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	c = dialAuth(t, srv.Listeners["submission"], false, "alice@example.org", srv.Passwords["alice"])
	if err := send(c, "alice@example.org", []string{"z@held.example"}, []byte("Subject: after\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	if sink.WaitCount(3, waitShort) != 3 {
		t.Errorf("mail after the rule's removal was held")
	}
	for _, args := range [][]string{{"add", "-to-domain", "bad domain!"}, {"add", "-account", "nobody"}, {"rm", "999"}, {"rm", "x"}} {
		if _, errOut, code := srv.MTA("", []string{"queue", "holdrule", args[0]}, args[1:]...); code != 2 {
			t.Errorf("queue holdrule %q: exit %d, want 2\n%s", args, code, errOut)
		}
	}
}
