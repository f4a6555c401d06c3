package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/switchyard-mta/switchyard/core/certs"
	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// TestSendAsSmarthost: send_as lets a relay account send for another
// domain. Server A, the provider, has the account relay with send_as
// customer.example and sends its outgoing mail to a sink. Server B, the
// customer's site, relays all its remote mail through transport-submission
// to A's submission listener (STARTTLS, A's certificate verified through
// ca_file), logged in as relay. A message of B's user news@customer.example
// reaches A's sink with its envelope sender and content; one of B's user
// x@other-site.example, a domain send_as does not list, is refused by A at
// MAIL with 553 5.7.1 and comes back to x on B as a failure DSN, without
// being retried, and without putting the recipient on x's suppression
// list. B keeps the delivered message retired: queue retired show
// shows its attempt with the TLS used.
func TestSendAsSmarthost(t *testing.T) {
	t.Parallel()
	sink := startSink(t, nil)
	// A's certificate is generated for "localhost" (core/certs), the name
	// B connects to.
	a := startServer(t, setup{Hostname: "localhost", Transports: map[string]string{"out": sink.Addr}, Rest: `
[domains."provider.example"]
[accounts.relay]
domain = "provider.example"
addresses = ["relay@provider.example"]
send_as = ["customer.example"]
[[routes]]
transport = "out"
`})
	pwFile := filepath.Join(t.TempDir(), "relay.pw")
	if err := os.WriteFile(pwFile, []byte(a.Passwords["relay"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	caFile, _ := certs.SelfSignedPaths(filepath.Join(a.Dir, "data"))
	_, port, _ := strings.Cut(a.Listeners["submission"], ":")
	b := startServer(t, setup{Hostname: "mail.customer.example", IMAP: true, KeepRetired: "1h", Rest: fmt.Sprintf(`[transports.provider]
plugin = "transport-submission"
[transports.provider.config]
host = "localhost"
port = %s
tls = "starttls"
username = "relay@provider.example"
password_file = %q
ca_file = %q
[[routes]]
transport = "provider"
[log]
level = "debug"
[domains."customer.example"]
[domains."other-site.example"]
[accounts.news]
domain = "customer.example"
addresses = ["news@customer.example"]
[accounts.x]
domain = "other-site.example"
addresses = ["x@other-site.example"]
`, port, pwFile, caFile)})
	submitOnB := func(account, from string, msg []byte) {
		t.Helper()
		c := dialAuth(t, b.Listeners["submission"], false, from, b.Passwords[account])
		if err := send(c, from, []string{"someone@remote.example"}, msg); err != nil {
			t.Fatalf("%s submitting on B: %v", from, err)
		}
		if err := c.Quit(); err != nil {
			t.Fatalf("QUIT: %v", err)
		}
	}

	// news@customer.example: through A as relay, to the sink.
	msg := mtatest.MakeMessage("news@customer.example", "someone@remote.example", "newsletter", 3000)
	submitOnB("news", "news@customer.example", msg)
	if n := sink.WaitCount(1, waitShort); n != 1 {
		t.Fatalf("A's sink has %d messages, want 1\nB's log:\n%s", n, b.Log())
	}
	got := sink.Messages()[0]
	if got.From != "news@customer.example" || !slices.Equal(got.Recipients, []string{"someone@remote.example"}) {
		t.Errorf("sink got MAIL FROM %q RCPT TO %q, want news@customer.example, someone@remote.example", got.From, got.Recipients)
	}
	head, ok := bytes.CutSuffix(got.Data, msg)
	if !ok {
		t.Fatalf("data at the sink does not end with the message submitted on B:\n%.800s", got.Data)
	}
	// A's Received field (relay logged in, over TLS) over B's.
	fields := strings.SplitAfter(string(head), "\r\nReceived: ")
	if len(fields) != 2 || !strings.HasPrefix(fields[0], "Received: from mail.customer.example ") ||
		!strings.Contains(fields[0], "by localhost with ESMTPSA") || !strings.Contains(fields[1], "by mail.customer.example with ESMTPSA") {
		t.Errorf("want A's Received field over B's before the message, got:\n%s", head)
	}
	if !logHas(a, `msg=authenticated .*listener=submission .*account=relay`) {
		t.Errorf("A logged no AUTH of relay on its submission listener")
	}
	waitQueueEmpty(t, b)
	// The plugins log at the core's level: its per-attempt line is for
	// debugging, which B logs and A does not.
	if !logHas(b, `msg="delivery attempt" plugin=transport-submission .*reused=false`) || logHas(a, `msg="delivery attempt"`) {
		t.Errorf("transport-submission's attempt line: want it on B (debug) and not on A (info)")
	}
	// B keeps the delivered message retired with its attempt: TLS 1.3 to
	// A, the certificate verified against ca_file.
	var retired []struct {
		ID string `json:"id"`
	}
	if out := mta(t, b, "queue", "retired", "list", "-json", "-from", "news@customer.example"); json.Unmarshal([]byte(out), &retired) != nil || len(retired) != 1 {
		t.Fatalf("queue retired list on B: want the delivered message, got:\n%s", out)
	}
	show := mta(t, b, "queue", "retired", "show", retired[0].ID)
	for _, want := range []string{`retired:\s+\S+ \S+, left the queue`, `recipient:\s+someone@remote\.example`, `state:\s+delivered, 1 attempts`,
		`attempt:\s+\S+ \S+ via provider, \d+ms`, `result:\s+delivered 250 `, `remote:\s+localhost 127\.0\.0\.1`, `tls:\s+TLS1\.3 TLS_\S+, pkix`} {
		if !regexp.MustCompile(want).MatchString(show) {
			t.Errorf("queue retired show on B lacks %s:\n%s", want, show)
		}
	}

	// x@other-site.example: A refuses the sender at MAIL, B returns a
	// failure DSN to x.
	orig := mtatest.MakeMessage("x@other-site.example", "someone@remote.example", "not-a-customer", 1000)
	submitOnB("x", "x@other-site.example", orig)
	cx := imapLogin(t, b, "imaps", "x@other-site.example", b.Passwords["x"], nil)
	if n := waitMessages(t, cx, "INBOX", 1); n != 1 {
		t.Fatalf("x's Inbox on B holds %d messages, want 1 (the DSN)\nB's log:\n%s", n, b.Log())
	}
	selectMailbox(t, cx, "INBOX", true)
	dsn := fetchBody(t, cx, imap.SeqSetNum(1))
	checkFailureDSN(t, dsn, mustHeader(t, orig, "Message-Id"), "someone@remote.example", "5.7.1")
	for _, w := range []string{"Remote-MTA: dns; localhost\r\n", "Diagnostic-Code: smtp; 553 5.7.1 "} {
		if !bytes.Contains(dsn, []byte(w)) {
			t.Errorf("DSN lacks %q:\n%s", w, dsn)
		}
	}
	if l := logLines(a.Log(), `msg="sender refused" listener=submission `, " account=relay from=x@other-site.example code=553"); len(l) != 1 {
		t.Errorf("A logged %d refusals of x@other-site.example by relay, want 1: %q", len(l), l)
	}
	if !logHas(b, `msg=delivery .* from=x@other-site\.example to=someone@remote\.example transport=provider attempt=1 status=bounced .* code=553 enhanced=5\.7\.1 `) {
		t.Errorf("B logged no bounce of x's message at its first attempt with 553 5.7.1")
	}
	waitQueueEmpty(t, b)
	// A refusal of the sender says nothing of the recipient: it is not
	// suppressed, and x's next message to it is accepted.
	if out := mta(t, b, "suppression", "list", "x"); strings.Contains(out, "someone@remote.example") {
		t.Errorf("B suppressed the recipient after A refused the sender:\n%s", out)
	}
	c := dialAuth(t, b.Listeners["submission"], false, "x@other-site.example", b.Passwords["x"])
	if err := send(c, "x@other-site.example", []string{"someone@remote.example"}, orig); err != nil {
		t.Errorf("x's second message to someone@remote.example: %v", err)
	}
	c.Close()
	if n := sink.Count(); n != 1 {
		t.Errorf("A's sink has %d messages after the refused one, want 1", n)
	}
}
