package e2e

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// Two servers mail each other: a.example's queue delivers to b.example's
// MX through transport-submission, b's IDLE client hears of it; a recipient
// b does not know gets the sender a failure DSN in a's Inbox.
func TestTwoServers(t *testing.T) {
	b := startServer(t, setup{Hostname: "mail.b.example", IMAP: true, Rest: `
[domains."b.example"]
[accounts.bob]
domain = "b.example"
addresses = ["bob@b.example"]
`})
	a := startServer(t, setup{
		Hostname:   "mail.a.example",
		IMAP:       true,
		Transports: map[string]string{"tob": b.Listeners["mx"]},
		Rest: `
[domains."a.example"]
[accounts.alice]
domain = "a.example"
addresses = ["alice@a.example"]
[[routes]]
to_domains = ["b.example"]
transport = "tob"
`})
	submitAs := func(to string, msg []byte) {
		t.Helper()
		c := dialAuth(t, a.Listeners["submission"], false, "alice@a.example", a.Passwords["alice"])
		if err := send(c, "alice@a.example", []string{to}, msg); err != nil {
			t.Fatalf("submitting to %s: %v", to, err)
		}
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
	}

	// bob@b.example waits in IDLE.
	evB := newIMAPEvents()
	cb := imapLogin(t, b, "imaps", "bob", b.Passwords["bob"], evB.handler())
	selectMailbox(t, cb, "INBOX", false)
	idle, err := cb.Idle()
	if err != nil {
		t.Fatalf("IDLE on b: %v", err)
	}
	msg := mtatest.MakeMessage("alice@a.example", "bob@b.example", "a-to-b", 4000)
	submitAs("bob@b.example", msg)
	if n := recv(t, evB.exists, waitShort, "EXISTS on b"); n != 1 {
		t.Errorf("EXISTS %d on b, want 1", n)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatalf("IDLE on b: %v", err)
	}
	// b's Received field over a's, over the bytes submitted.
	fields := splitReceived(t, fetchBody(t, cb, imap.SeqSetNum(1)), msg, 2)
	for i, want := range [][]string{
		{"from mail.a.example ", "by mail.b.example with ESMTP", "for <bob@b.example>"},
		{"by mail.a.example with ESMTPSA", "for <bob@b.example>"},
	} {
		for _, w := range want {
			if !strings.Contains(fields[i], w) {
				t.Errorf("Received field %d lacks %q:\n%s", i, w, fields[i])
			}
		}
	}
	waitQueueEmpty(t, a)

	// A recipient b does not have: 550 5.1.1 at RCPT, a failure DSN to
	// alice on a.
	evA := newIMAPEvents()
	ca := imapLogin(t, a, "imap", "alice@a.example", a.Passwords["alice"], evA.handler())
	selectMailbox(t, ca, "INBOX", false)
	idle, err = ca.Idle()
	if err != nil {
		t.Fatalf("IDLE on a: %v", err)
	}
	orig := mtatest.MakeMessage("alice@a.example", "nobody@b.example", "to-nobody", 1500)
	submitAs("nobody@b.example", orig)
	if n := recv(t, evA.exists, waitShort, "EXISTS on a (the DSN)"); n != 1 {
		t.Errorf("EXISTS %d on a, want 1", n)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatalf("IDLE on a: %v", err)
	}
	origID := mustHeader(t, orig, "Message-Id")
	checkFailureDSN(t, fetchBody(t, ca, imap.SeqSetNum(1)), origID, "nobody@b.example", "5.1.1")
	// The server's own parse of it: ENVELOPE and BODYSTRUCTURE.
	m := fetchOne(t, ca, imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true, BodyStructure: &imap.FetchItemBodyStructure{}})
	if m.Envelope == nil || len(m.Envelope.To) != 1 || m.Envelope.To[0].Addr() != "alice@a.example" ||
		len(m.Envelope.InReplyTo) != 1 || "<"+m.Envelope.InReplyTo[0]+">" != origID {
		t.Errorf("DSN ENVELOPE %+v, want To alice@a.example, In-Reply-To %s", m.Envelope, origID)
	}
	var parts []string
	if mp, ok := m.BodyStructure.(*imap.BodyStructureMultiPart); ok {
		parts = append(parts, mp.MediaType())
		for _, c := range mp.Children {
			parts = append(parts, c.MediaType())
		}
	}
	if len(parts) < 3 || parts[0] != "multipart/report" || parts[1] != "text/plain" || parts[2] != "message/delivery-status" {
		t.Errorf("DSN BODYSTRUCTURE: %v, want multipart/report of text/plain, message/delivery-status, ...", parts)
	}
	waitQueueEmpty(t, a)
	if d, err := cb.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait(); err != nil || deref(d.NumMessages) != 1 {
		t.Errorf("bob's Inbox after the failure: %v messages (%v), want 1", d, err)
	}
}

// checkFailureDSN checks that raw is a failure DSN (RFC 3464) for rcpt with
// status, threaded with the message origID.
func checkFailureDSN(t *testing.T, raw []byte, origID, rcpt, status string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("DSN unparsable: %v\n%s", err, raw)
	}
	if got := m.Header.Get("In-Reply-To"); got != origID {
		t.Errorf("DSN In-Reply-To %q, want %q", got, origID)
	}
	if got := m.Header.Get("References"); !strings.Contains(got, origID) {
		t.Errorf("DSN References %q, want %q in it", got, origID)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN Content-Type %q (%v), want multipart/report; report-type=delivery-status", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var types []string
	var status822 string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("DSN part: %v\n%s", err, raw)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		types = append(types, ct)
		body, _ := io.ReadAll(p)
		if ct == "message/delivery-status" {
			status822 = string(body)
		}
	}
	if len(types) < 2 || types[0] != "text/plain" || types[1] != "message/delivery-status" {
		t.Errorf("DSN parts %v, want text/plain, message/delivery-status, ...", types)
	}
	for _, want := range []string{"Final-Recipient: rfc822; " + rcpt, "Action: failed", "Status: " + status} {
		if !strings.Contains(status822, want) {
			t.Errorf("delivery-status lacks %q:\n%s", want, status822)
		}
	}
}
