package e2e

import (
	"net"
	"net/textproto"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestFutureRelease: swaks submits with HOLDFOR=5 (RFC 4865) through a
// smarthost route; `mta queue list` shows the message pending until its
// release, the sink gets nothing before it and the message soon after.
// Holds over the limit, HOLDFOR with HOLDUNTIL, and any hold on the MX are
// refused.
func TestFutureRelease(t *testing.T) {
	t.Parallel()
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks not installed (apt-get install -y swaks)")
	}
	sink := startSink(t, nil)
	srv := startServer(t, setup{Transports: map[string]string{"smarthost": sink.Addr}, Rest: defaultRest + `
[[routes]]
transport = "smarthost"
`})
	password := srv.Passwords["alice"]
	host, port, _ := net.SplitHostPort(srv.Listeners["submission"])
	// swaks has no option for MAIL parameters: it sends MAIL FROM:<ADDR>,
	// and AUTH=<> (RFC 4954 §5: no identity) takes the closing '>'.
	start := time.Now()
	out, err := exec.Command(swaks, "--server", host, "--port", port, "--tls", "--auth", "PLAIN",
		"--auth-user", "alice@example.org", "--auth-password="+password, "--timeout", "20",
		"--from", "alice@example.org> HOLDFOR=5 AUTH=<", "--to", "bob@example.net",
		"--header", "From: alice@example.org", "--header", "Subject: held-5").CombinedOutput()
	submitted := time.Now()
	m := regexp.MustCompile(`<~  250 2\.0\.0 Queued as (\S+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("swaks with HOLDFOR=5: %v\n%s", err, out)
	}
	id := string(m[1])
	if !regexp.MustCompile(`<~  250-FUTURERELEASE 604800 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`).Match(out) {
		t.Errorf("EHLO reply without FUTURERELEASE 604800:\n%s", out)
	}
	if !strings.Contains(string(out), "~> MAIL FROM:<alice@example.org> HOLDFOR=5 AUTH=<>") {
		t.Errorf("swaks did not send HOLDFOR as expected:\n%s", out)
	}

	// Pending, its next attempt the release.
	list := mta(t, srv, "queue", "list")
	row := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(id) + `\s.*\sbob@example\.net\s+pending\s+0\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\s*$`).FindStringSubmatch(list)
	if row == nil {
		t.Fatalf("queue list does not show %s pending with a next attempt:\n%s", id, list)
	}
	next, err := time.ParseInLocation(time.DateTime, row[1], time.Local)
	if err != nil || next.Before(start.Add(5*time.Second).Truncate(time.Second)) || next.After(submitted.Add(5*time.Second)) {
		t.Errorf("queue list: next attempt %s (%v), want the release 5 s after submission at %s", row[1], err, start.Format(time.DateTime))
	}
	if !regexp.MustCompile(`msg=transaction .*queueid=` + regexp.QuoteMeta(id) + ` release=\S+Z`).MatchString(srv.Log()) {
		t.Errorf("no transaction line with the release:\n%s", srv.Log())
	}

	time.Sleep(time.Until(start.Add(3 * time.Second)))
	if n := sink.Count(); n != 0 {
		t.Fatalf("sink has %d messages 3 s after a HOLDFOR=5 submission", n)
	}
	if !waitFor(time.Until(start.Add(15*time.Second)), func() bool { return sink.Count() > 0 }) {
		t.Fatalf("nothing delivered 15 s after a HOLDFOR=5 submission\n%s", mta(t, srv, "queue", "list"))
	}
	if arrived := time.Since(start); arrived < 5*time.Second {
		t.Errorf("delivered %v after submission, before the release", arrived)
	}
	msgs := sink.Messages()
	if len(msgs) != 1 || msgs[0].From != "alice@example.org" || strings.Join(msgs[0].Recipients, ",") != "bob@example.net" ||
		!strings.Contains(string(msgs[0].Data), "\r\nSubject: held-5\r\n") {
		t.Errorf("sink got %+v", msgs)
	}
	waitQueueEmpty(t, srv)

	// Refusals, the session going on after each.
	r := dialRaw(t, srv.Listeners["submission"])
	r.authPlain("alice@example.org", password)
	for _, tc := range []struct {
		params string
		code   int
		text   string
	}{
		{"HOLDFOR=604801", 554, "5.5.4 HOLDFOR=604801 is longer than the longest hold offered, 604800 seconds"},
		{"HOLDFOR=5 HOLDUNTIL=" + time.Now().Add(time.Hour).UTC().Format(time.RFC3339), 501, "5.5.4 HOLDFOR and HOLDUNTIL cannot both be given"},
		{"HOLDUNTIL=" + time.Now().Add(8*24*time.Hour).UTC().Format(time.RFC3339), 554, "5.5.4 HOLDUNTIL is later than"},
		{"HOLDUNTIL=yesterday", 501, "5.5.4 HOLDUNTIL must be an RFC 3339 date-time"},
	} {
		if msg := r.cmd(tc.code, "MAIL FROM:<alice@example.org> %s", tc.params); !strings.HasPrefix(msg, tc.text) {
			t.Errorf("MAIL with %s: %d %q, want %d %s", tc.params, tc.code, msg, tc.code, tc.text)
		}
	}
	r.cmd(250, "MAIL FROM:<alice@example.org>")

	// The MX neither offers nor takes a hold.
	nc, err := net.DialTimeout("tcp", srv.Listeners["mx"], 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	mx := &rawConn{t: t, nc: nc, tp: textproto.NewConn(nc)}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(waitShort))
	mx.expect(220)
	if ehlo := mx.cmd(250, "EHLO client.test"); strings.Contains(ehlo, "FUTURERELEASE") {
		t.Errorf("MX offers FUTURERELEASE:\n%s", ehlo)
	}
	if msg := mx.cmd(555, "MAIL FROM:<someone@remote.example> HOLDFOR=5"); !strings.HasPrefix(msg, "5.5.4 ") {
		t.Errorf("HOLDFOR on the MX: 555 %q, want 5.5.4", msg)
	}
	mx.cmd(250, "MAIL FROM:<someone@remote.example>")
}
