package e2e

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// loginNoIR is LOGIN as classic clients do it: no initial response, the
// username and password each answer a challenge.
type loginNoIR struct{ user, password string }

func (l loginNoIR) Start() (string, []byte, error) { return sasl.Login, nil, nil }

func (l loginNoIR) Next(challenge []byte) ([]byte, error) {
	switch string(challenge) {
	case "Username:":
		return []byte(l.user), nil
	case "Password:":
		return []byte(l.password), nil
	}
	return nil, fmt.Errorf("unexpected LOGIN challenge %q", challenge)
}

// TestSubmissionRelaysToSmarthost: a message submitted over STARTTLS or
// implicit TLS, with AUTH PLAIN or LOGIN, reaches the smarthost through
// transport-submission with its envelope and its bytes, a Received header
// prepended.
func TestSubmissionRelaysToSmarthost(t *testing.T) {
	t.Parallel()
	sink := startSink(t, nil)
	srv := startServer(t, setup{Transports: map[string]string{"smarthost": sink.Addr}, Rest: defaultRest + `
[[routes]]
transport = "smarthost"
`})
	login, password := "alice@example.org", srv.Passwords["alice"]
	rcpts := []string{"bob@example.net", "carol@example.net"}

	for i, tc := range []struct {
		name        string
		listener    string
		implicitTLS bool
		auth        sasl.Client
	}{
		{"starttls-plain", "submission", false, sasl.NewPlainClient("", login, password)},
		{"implicit-tls-login", "submissions", true, sasl.NewLoginClient(login, password)},
		{"starttls-login-no-initial-response", "submission", false, loginNoIR{login, password}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := sink.Count()
			c, err := mtatest.Dial(srv.Listeners[tc.listener], tc.implicitTLS, !tc.implicitTLS)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, isTLS := c.TLSConnectionState(); !isTLS {
				t.Fatal("connection is not TLS")
			}
			if err := c.Auth(tc.auth); err != nil {
				t.Fatalf("AUTH: %v", err)
			}
			subject := fmt.Sprintf("submission-%d", i)
			msg := mtatest.MakeMessage(login, rcpts[0], subject, 3000)
			if err := send(c, login, rcpts, msg); err != nil {
				t.Fatal(err)
			}
			c.Quit()

			if n := sink.WaitCount(before+1, waitShort); n != before+1 {
				t.Fatalf("sink has %d messages, want %d", n, before+1)
			}
			got := sink.Messages()[before]
			if got.From != login {
				t.Errorf("MAIL FROM %q, want %q", got.From, login)
			}
			if !slices.Equal(got.Recipients, rcpts) {
				t.Errorf("RCPT TO %q, want %q (one transaction)", got.Recipients, rcpts)
			}
			if !bytes.HasSuffix(got.Data, msg) {
				t.Fatalf("data does not end with the submitted message:\n%.600s", got.Data)
			}
			head := string(got.Data[:len(got.Data)-len(msg)])
			if !strings.HasPrefix(head, "Received: from ") || strings.Count(head, "Received:") != 1 ||
				!strings.HasSuffix(head, "\r\n") || !strings.Contains(head, "by mail.example.org with ESMTPSA") {
				t.Errorf("prepended header is not one Received field of ours:\n%s", head)
			}
			if strings.Contains(head, "for <") {
				t.Errorf("Received header names a recipient of a message with two: %s", head)
			}
		})
	}
}

// TestTemporaryFailureRetried: a 451 for one recipient is retried and the
// recipient then delivered once; the other recipient of the message is
// delivered at the first attempt and not again. `mta queue list` shows the
// recipient waiting with the smarthost's reply.
func TestTemporaryFailureRetried(t *testing.T) {
	t.Parallel()
	var refused atomic.Bool
	sink := startSink(t, func(rcpt string) *smtp.SMTPError {
		if rcpt == "later@example.net" && refused.CompareAndSwap(false, true) {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "greylisted, try again"}
		}
		return nil
	})
	// Retry after 7.5 min × 0.004 = 1.8 s: time to see the queue.
	srv := startServer(t, setup{BackoffScale: 0.004, Transports: map[string]string{"smarthost": sink.Addr}, Rest: defaultRest + `
[[routes]]
transport = "smarthost"
`})
	rcpts := []string{"now@example.net", "later@example.net"}
	submit(t, srv, "alice@example.org", rcpts, mtatest.MakeMessage("alice@example.org", rcpts[0], "retry", 1000))

	// While the retry is due, the queue shows the pending recipient and
	// the reply it got.
	var list string
	if !waitFor(waitShort, func() bool {
		list = mta(t, srv, "queue", "list")
		return strings.Contains(list, "later@example.net") && strings.Contains(list, "451")
	}) {
		t.Fatalf("queue list does not show the 451:\n%s", list)
	}
	line := lineWith(list, "later@example.net")
	if !strings.Contains(line, "pending") || !strings.Contains(line, "4.3.0 greylisted") {
		t.Errorf("queue list line for the recipient: %q, want pending with 451 4.3.0 greylisted", line)
	}
	if sink.Count() != 1 {
		t.Errorf("sink has %d messages before the retry, want 1 (for now@)", sink.Count())
	}

	if !waitFor(waitShort, func() bool { return received(sink)["later@example.net"] >= 1 }) {
		t.Fatalf("later@ not delivered after the retry; sink got %v", received(sink))
	}
	waitQueueEmpty(t, srv)
	if got := received(sink); got["later@example.net"] != 1 || got["now@example.net"] != 1 {
		t.Errorf("deliveries by recipient %v, want each once", got)
	}
	if n := sink.Attempts("later@example.net"); n != 2 {
		t.Errorf("RCPT TO later@: %d attempts, want 2", n)
	}
	if n := sink.Attempts("now@example.net"); n != 1 {
		t.Errorf("RCPT TO now@: %d attempts, want 1", n)
	}
}

// TestPermanentFailureNotRetried: a 550 5.1.1 fails its recipient at once,
// never retried, while the other recipient of the same transaction is
// delivered; the queue ends empty.
func TestPermanentFailureNotRetried(t *testing.T) {
	t.Parallel()
	sink := startSink(t, func(rcpt string) *smtp.SMTPError {
		if rcpt == "nobody@example.net" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	})
	srv := startServer(t, setup{Transports: map[string]string{"smarthost": sink.Addr}, Rest: defaultRest + `
[[routes]]
transport = "smarthost"
`})
	rcpts := []string{"nobody@example.net", "somebody@example.net"}
	submit(t, srv, "alice@example.org", rcpts, mtatest.MakeMessage("alice@example.org", rcpts[1], "permanent", 1000))

	if n := sink.WaitCount(1, waitShort); n != 1 {
		t.Fatalf("sink has %d messages, want 1", n)
	}
	waitQueueEmpty(t, srv)
	// Retries, had there been any, would have come 45 ms, 135 ms, 315 ms
	// and 675 ms after the first attempt.
	time.Sleep(time.Second)
	if n := sink.Attempts("nobody@example.net"); n != 1 {
		t.Errorf("RCPT TO nobody@: %d attempts, want 1", n)
	}
	if got := received(sink); got["nobody@example.net"] != 0 || got["somebody@example.net"] != 1 {
		t.Errorf("deliveries by recipient %v, want only somebody@, once", got)
	}
	if m := sink.Messages()[0]; !slices.Equal(m.Recipients, []string{"somebody@example.net"}) {
		t.Errorf("transaction recipients %q", m.Recipients)
	}
	if !regexp.MustCompile(`msg=delivery .*to=nobody@example.net .*status=bounced `).MatchString(srv.Log()) {
		t.Errorf("no delivery attempt logged with a permanent failure")
	}
}

// lineWith returns the first line of s containing sub.
func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

// TestSendAs: an account with send_as submits from the domains and
// addresses it lists, and from nothing else (553 5.7.1).
func TestSendAs(t *testing.T) {
	t.Parallel()
	sink := startSink(t, nil)
	srv := startServer(t, setup{Transports: map[string]string{"smarthost": sink.Addr}, Rest: `
[domains."example.org"]
[accounts.relay]
domain = "example.org"
addresses = ["relay@example.org"]
send_as = ["customer.example", "boss@partner.example"]
[[routes]]
transport = "smarthost"
`})
	c := dialAuth(t, srv.Listeners["submission"], false, "relay@example.org", srv.Passwords["relay"])
	for _, from := range []string{"news@customer.example", "boss@partner.example", "relay@example.org"} {
		if err := send(c, from, []string{"someone@remote.example"}, []byte("From: "+from+"\r\nSubject: as\r\n\r\nx\r\n")); err != nil {
			t.Errorf("as %s: %v", from, err)
		}
	}
	for _, from := range []string{"other@partner.example", "x@elsewhere.example"} {
		wantCode(t, "MAIL FROM "+from, c.Mail(from, nil), 553, smtp.EnhancedCode{5, 7, 1})
		c.Reset()
	}
	if sink.WaitCount(3, waitShort) != 3 {
		t.Errorf("sink got %d messages, want 3", sink.Count())
	}
}

// TestCatchall: mail to an unknown address of a domain with a catch-all
// lands in that account's Inbox; another domain's unknown address is still
// refused, and the catch-all account may not send as the address.
func TestCatchall(t *testing.T) {
	t.Parallel()
	srv := startServer(t, setup{IMAP: true, Rest: `
[domains."example.org"]
catchall = "inbox"
[domains."example.net"]
[accounts.inbox]
domain = "example.org"
addresses = ["inbox@example.org"]
`})
	c, err := mtatest.Dial(srv.Listeners["mx"], false, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := send(c, "carol@remote.example", []string{"whoever@example.org"}, []byte("Subject: caught\r\n\r\nx\r\n")); err != nil {
		t.Fatalf("to an unknown address with a catch-all: %v", err)
	}
	if err := c.Mail("carol@remote.example", nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "RCPT of another domain's unknown address", c.Rcpt("whoever@example.net", nil), 550, smtp.EnhancedCode{5, 1, 1})
	cb := imapLogin(t, srv, "imaps", "inbox", srv.Passwords["inbox"], nil)
	if n := waitMessages(t, cb, "INBOX", 1); n != 1 {
		t.Errorf("the catch-all's Inbox holds %d messages, want 1", n)
	}
	s := dialAuth(t, srv.Listeners["submission"], false, "inbox@example.org", srv.Passwords["inbox"])
	wantCode(t, "MAIL FROM an address the catch-all receives", s.Mail("whoever@example.org", nil), 553, smtp.EnhancedCode{5, 7, 1})
}

// TestAlias: an alias with two members: a member's submission to it
// reaches the other member once, and not herself (she is the From); an
// outsider may not post to a members-only alias but may to a public one;
// a member who is also a direct recipient gets one copy; allow_msg_from
// lets members send as the alias; mta alias list shows it.
func TestAlias(t *testing.T) {
	t.Parallel()
	srv := startServer(t, setup{IMAP: true, Rest: defaultRest + `
[domains."example.org".aliases.team]
members = ["alice@example.org", "bob@example.org"]
allow_msg_from = true
[domains."example.org".aliases.me]
members = ["alice@example.org"]
[domains."example.org".aliases.info]
members = ["alice@example.org", "bob@example.org"]
post_public = true
`})
	ca := dialAuth(t, srv.Listeners["submission"], false, "alice@example.org", srv.Passwords["alice"])
	if err := send(ca, "alice@example.org", []string{"team@example.org"}, []byte("From: alice@example.org\r\nSubject: to the team\r\n\r\nx\r\n")); err != nil {
		t.Fatalf("alice to team: %v", err)
	}
	// To an alias of herself alone: accepted, and nothing delivered.
	if err := send(ca, "alice@example.org", []string{"me@example.org"}, []byte("From: alice@example.org\r\nSubject: to myself\r\n\r\nx\r\n")); err != nil {
		t.Errorf("alice to an alias of herself: %v, want 250", err)
	}
	mx, err := smtp.Dial(srv.Listeners["mx"])
	if err != nil {
		t.Fatal(err)
	}
	defer mx.Close()
	if err := mx.Mail("carol@remote.example", nil); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "outsider to a members-only alias", mx.Rcpt("team@example.org", nil), 550, smtp.EnhancedCode{5, 7, 1})
	mx.Reset()
	if err := send(mx, "carol@remote.example", []string{"info@example.org", "bob@example.org"}, []byte("From: carol@remote.example\r\nSubject: to info and bob\r\n\r\nx\r\n")); err != nil {
		t.Fatalf("outsider to a public alias and bob: %v", err)
	}
	if err := send(ca, "team@example.org", []string{"carol@remote.example"}, []byte("From: team@example.org\r\nSubject: as the team\r\n\r\nx\r\n")); err != nil {
		t.Errorf("MAIL FROM the alias with allow_msg_from: %v", err)
	}
	wantCode(t, "MAIL FROM an alias without allow_msg_from", ca.Mail("info@example.org", nil), 553, smtp.EnhancedCode{5, 7, 1})
	ca.Reset()

	cb := imapLogin(t, srv, "imaps", "bob", srv.Passwords["bob"], nil)
	if n := waitMessages(t, cb, "INBOX", 2); n != 2 {
		t.Errorf("bob's Inbox holds %d messages, want 2 (team once, info and bob once)", n)
	}
	cl := imapLogin(t, srv, "imaps", "alice", srv.Passwords["alice"], nil)
	if n := waitMessages(t, cl, "INBOX", 1); n != 1 {
		t.Errorf("alice's Inbox holds %d messages, want 1 (info; not her own to the team)", n)
	}
	if got := string(fetchBodyOf(t, cb, "INBOX", 1)); !strings.Contains(got, "Delivered-To: team@example.org\r\n") {
		t.Errorf("bob's copy from the alias lacks Delivered-To: team@example.org:\n%s", got)
	}
	if out := mta(t, srv, "alias", "list"); !strings.Contains(out, "team@example.org") || !strings.Contains(out, "alice@example.org,bob@example.org") || !strings.Contains(out, "anyone") {
		t.Errorf("mta alias list:\n%s", out)
	}
}
