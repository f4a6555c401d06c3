package smtpd

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/core/config"
)

// step is one line sent (raw: no CRLF added) and the reply expected:
// code and, if set, the start of its text (the enhanced code).
type step struct {
	send string
	code int
	text string
}

// converse connects to ts and runs steps after the greeting; a step with
// code 0 expects the connection to close (EOF) without further reply.
func converse(t *testing.T, ts *testServer, steps []step) {
	t.Helper()
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	runSteps(t, nc, greeted(t, nc), steps)
}

// greeted reads the greeting on nc, a new connection to a test server,
// which it closes when the test ends; every read and write on it must be
// done within 5 seconds.
func greeted(t *testing.T, nc net.Conn) *textproto.Conn {
	t.Helper()
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	tc := textproto.NewConn(nc)
	if _, _, err := tc.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	return tc
}

// converseSubmission is converse on a submission listener: EHLO, STARTTLS,
// EHLO again and, with auth, AUTH PLAIN as alice with "secret", then steps.
func converseSubmission(t *testing.T, ts *testServer, auth bool, steps []step) {
	t.Helper()
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	runSteps(t, nc, textproto.NewConn(nc), []step{{"", 220, ""}, {ehlo, 250, ""}, {"STARTTLS\r\n", 220, ""}})
	tc := tls.Client(nc, clientTLS(t))
	first := []step{{ehlo, 250, ""}}
	if auth {
		first = append(first, step{"AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret")) + "\r\n", 235, ""})
	}
	runSteps(t, tc, textproto.NewConn(tc), append(first, steps...))
}

// runSteps runs steps on a connection; see converse.
func runSteps(t *testing.T, nc net.Conn, tc *textproto.Conn, steps []step) {
	t.Helper()
	for _, st := range steps {
		if st.send != "" {
			if _, err := io.WriteString(nc, st.send); err != nil {
				t.Fatalf("sending %q: %v", st.send, err)
			}
		}
		if st.code == 0 {
			if line, err := tc.ReadLine(); err != io.EOF {
				t.Fatalf("after %q: read %q, %v; want EOF", st.send, line, err)
			}
			return
		}
		code, msg, err := tc.ReadResponse(st.code)
		if err != nil || !strings.HasPrefix(msg, st.text) {
			t.Fatalf("%q: reply %d %q (%v), want %d %s", st.send, code, msg, err, st.code, st.text)
		}
	}
}

const (
	ehlo     = "EHLO client.test\r\n"
	mailOK   = "MAIL FROM:<someone@remote.example>\r\n"
	rcptOK   = "RCPT TO:<other@elsewhere.example>\r\n"
	long64   = "a234567890123456789012345678901234567890123456789012345678901234" // 64 octets.
	label63  = "d23456789012345678901234567890123456789012345678901234567890123"  // 63 octets.
	domain63 = label63 + "." + label63 + "." + label63 + "." + label63            // 255 octets.
)

// Each form of input go-smtp lets through is refused with its reply, and the
// session stays usable (NOOP) unless it must end.
func TestStrictInput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"NUL in DATA", []step{{ehlo, 250, ""}, {mailOK, 250, ""}, {rcptOK, 250, ""}, {"DATA\r\n", 354, ""},
			{"Subject: x\r\n\r\na\x00b\r\n.\r\n", 554, "5.6.0"}, {"NOOP\r\n", 250, ""}}},
		{"NUL in BDAT", []step{{ehlo, 250, ""}, {mailOK, 250, ""}, {rcptOK, 250, ""},
			{"BDAT 5 LAST\r\na\x00b\r\n", 554, "5.6.0"}, {"NOOP\r\n", 250, ""}}},
		// go-smtp upstream's reader missed this end of data: the client
		// must get its reply now, not at ReadTimeout (10s here, past the 5s
		// limit), and the session goes on in step.
		{"bare CR before end of data", []step{{ehlo, 250, ""}, {mailOK, 250, ""}, {rcptOK, 250, ""}, {"DATA\r\n", 354, ""},
			{"Subject: x\r\n\r\nbody\r\r\n.\r\n", 500, "5.5.2"}, {"NOOP\r\n", 250, ""}}},
		// go-smtp upstream dropped the dot and the CR, storing "\r\nX":
		// for a peer ending lines at CR, the data ended there.
		{"dot and bare CR at line start", []step{{ehlo, 250, ""}, {mailOK, 250, ""}, {rcptOK, 250, ""}, {"DATA\r\n", 354, ""},
			{"Subject: x\r\n\r\nbody\r\n.\rMAIL FROM:<smuggled@remote.example>\r\n.\r\n", 500, "5.5.2"}, {"", 0, ""}}},
		// Upstream read on past this end, to the read timeout.
		{"dot, bare CR, then end of data", []step{{ehlo, 250, ""}, {mailOK, 250, ""}, {rcptOK, 250, ""}, {"DATA\r\n", 354, ""},
			{"Subject: x\r\n\r\nbody\r\n.\r\r\n.\r\n", 500, "5.5.2"}, {"", 0, ""}}},
		{"repeated MAIL parameter", []step{{ehlo, 250, ""}, {"MAIL FROM:<a@remote.example> BODY=7BIT BODY=8BITMIME\r\n", 501, "5.5.4"}, {mailOK, 250, ""}}},
		{"repeated RCPT parameter", []step{{ehlo, 250, ""}, {mailOK, 250, ""}, {"RCPT TO:<a@elsewhere.example> NOTIFY=NEVER notify=SUCCESS\r\n", 501, "5.5.4"}, {rcptOK, 250, ""}}},
		{"non-ASCII sender without SMTPUTF8", []step{{ehlo, 250, ""}, {"MAIL FROM:<jörg@remote.example>\r\n", 553, "5.6.7"}, {"NOOP\r\n", 250, ""}}},
		{"non-ASCII recipient without SMTPUTF8", []step{{ehlo, 250, ""}, {mailOK, 250, ""}, {"RCPT TO:<jörg@elsewhere.example>\r\n", 553, "5.6.7"}}},
		{"non-ASCII domain without SMTPUTF8", []step{{ehlo, 250, ""}, {"MAIL FROM:<a@bücher.example>\r\n", 553, "5.6.7"}}},
		{"non-ASCII with SMTPUTF8", []step{{ehlo, 250, ""}, {"MAIL FROM:<jörg@bücher.example> SMTPUTF8\r\n", 250, ""}, {"RCPT TO:<jörg@elsewhere.example>\r\n", 250, ""}}},
		{"invalid UTF-8 sender", []step{{ehlo, 250, ""}, {"MAIL FROM:<j\xffrg@remote.example> SMTPUTF8\r\n", 501, "5.1.7"}}},
		{"invalid UTF-8 recipient", []step{{ehlo, 250, ""}, {"MAIL FROM:<a@remote.example> SMTPUTF8\r\n", 250, ""}, {"RCPT TO:<\xc3@elsewhere.example>\r\n", 501, "5.1.3"}}},
		{"local part of 64", []step{{ehlo, 250, ""}, {"MAIL FROM:<" + long64 + "@remote.example>\r\n", 250, ""}}},
		{"local part over 64", []step{{ehlo, 250, ""}, {"MAIL FROM:<" + long64 + "x@remote.example>\r\n", 501, "5.1.7"}}},
		{"recipient local part over 64", []step{{ehlo, 250, ""}, {mailOK, 250, ""}, {"RCPT TO:<" + long64 + "x@elsewhere.example>\r\n", 501, "5.1.3"}}},
		{"domain of 255", []step{{ehlo, 250, ""}, {"MAIL FROM:<a@" + domain63 + ">\r\n", 250, ""}}},
		{"domain over 255", []step{{ehlo, 250, ""}, {"MAIL FROM:<a@" + domain63 + "x>\r\n", 501, "5.1.7"}}},
		{"recipient domain over 255", []step{{ehlo, 250, ""}, {mailOK, 250, ""}, {"RCPT TO:<a@x" + domain63 + ">\r\n", 501, "5.1.3"}}},
		{"ENVID of 100", []step{{ehlo, 250, ""}, {"MAIL FROM:<a@remote.example> ENVID=" + strings.Repeat("e", 100) + "\r\n", 250, ""}}},
		{"ENVID over 100", []step{{ehlo, 250, ""}, {"MAIL FROM:<a@remote.example> ENVID=" + strings.Repeat("e", 101) + "\r\n", 501, "5.5.4"}}},
		{"ENVID over 100 as sent, not decoded", []step{{ehlo, 250, ""}, {"MAIL FROM:<a@remote.example> ENVID=" + strings.Repeat("+41", 34) + "\r\n", 501, "5.5.4"}}},
		{"ORCPT of 500", []step{{ehlo, 250, ""}, {mailOK, 250, ""},
			{"RCPT TO:<a@elsewhere.example> ORCPT=rfc822;" + strings.Repeat("o", 500-len("rfc822;")-len("@x")) + "@x\r\n", 250, ""}}},
		{"ORCPT over 500", []step{{ehlo, 250, ""}, {mailOK, 250, ""},
			{"RCPT TO:<a@elsewhere.example> ORCPT=rfc822;" + strings.Repeat("o", 501-len("rfc822;")-len("@x")) + "@x\r\n", 501, "5.5.4"}}},
		{"ORCPT with raw UTF-8 without SMTPUTF8", []step{{ehlo, 250, ""}, {mailOK, 250, ""},
			{"RCPT TO:<a@elsewhere.example> ORCPT=utf-8;jörg@x\r\n", 553, "5.6.7"}, {rcptOK, 250, ""}}},
		{"ORCPT with raw UTF-8 with SMTPUTF8", []step{{ehlo, 250, ""}, {"MAIL FROM:<a@remote.example> SMTPUTF8\r\n", 250, ""},
			{"RCPT TO:<a@elsewhere.example> ORCPT=utf-8;jörg@x\r\n", 250, ""}}},
		{"ORCPT with a control", []step{{ehlo, 250, ""}, {mailOK, 250, ""},
			{"RCPT TO:<a@elsewhere.example> ORCPT=utf-8;a\\x{01}b@x\r\n", 501, "5.5.4"}}},
		{"MAIL parameter after HELO", []step{{"HELO client.test\r\n", 250, ""}, {"MAIL FROM:<a@remote.example> BODY=8BITMIME\r\n", 555, "5.5.4"}, {mailOK, 250, ""}}},
		{"RCPT parameter after HELO", []step{{"HELO client.test\r\n", 250, ""}, {mailOK, 250, ""}, {"RCPT TO:<a@elsewhere.example> NOTIFY=NEVER\r\n", 555, "5.5.4"}}},
		// SIZE=0 leaves no trace in MailOptions (third_party/go-smtp patch 11).
		{"SIZE=0 after HELO", []step{{"HELO client.test\r\n", 250, ""}, {"MAIL FROM:<> SIZE=0\r\n", 555, "5.5.4"}, {"MAIL FROM:<>\r\n", 250, ""}}},
		{"parameter after EHLO, HELO", []step{{ehlo, 250, ""}, {"HELO client.test\r\n", 250, ""}, {"MAIL FROM:<a@remote.example> SIZE=10\r\n", 555, "5.5.4"}}},
		{"MAIL parameter after EHLO again", []step{{"HELO client.test\r\n", 250, ""}, {ehlo, 250, ""}, {"MAIL FROM:<a@remote.example> BODY=8BITMIME\r\n", 250, ""}}},
		{"NUL in sender", []step{{ehlo, 250, ""}, {"MAIL FROM:<a\x00b@remote.example>\r\n", 554, "5.6.0"}}},
		{"bare CR in sender", []step{{ehlo, 250, ""}, {"MAIL FROM:<a\rb@remote.example>\r\n", 500, "5.5.2"}}},
		{"NUL in recipient", []step{{ehlo, 250, ""}, {mailOK, 250, ""}, {"RCPT TO:<a@else\x00where.example>\r\n", 554, "5.6.0"}}},
		{"bare CR in recipient", []step{{ehlo, 250, ""}, {mailOK, 250, ""}, {"RCPT TO:<a@else\rwhere.example>\r\n", 500, "5.5.2"}}},
		{"bad domain syntax", []step{{ehlo, 250, ""}, {"MAIL FROM:<a@remote..example>\r\n", 501, "5.1.7"}}},
		// Domains parse as mailaddr has them: LDH labels, valid IDNA, A-labels that decode.
		// go-smtp trimmed a form feed (strings.TrimSpace) and took the rest (third_party/go-smtp patch 8).
		{"form feed after the sender", []step{{ehlo, 250, ""}, {"MAIL FROM:a@remote.example\f\r\n", 501, "5.1.7"}, {mailOK, 250, ""}}},
		// go-smtp trimmed every CR before the line ending (third_party/go-smtp patch 9).
		{"CR CR LF after the sender", []step{{ehlo, 250, ""}, {"MAIL FROM:a@remote.example\r\r\n", 500, "5.5.2"}, {mailOK, 250, ""}}},
		// go-smtp took a parameter glued to the path (third_party/go-smtp patch 10).
		{"parameter without a space", []step{{ehlo, 250, ""}, {"MAIL FROM:<a@remote.example>SMTPUTF8\r\n", 501, "5.5.4"}, {mailOK, 250, ""}, {"RCPT TO:<alice@example.org>NOTIFY=NEVER\r\n", 501, "5.5.4"}}},
		{"CR inside a command", []step{{ehlo, 250, ""}, {"NOOP a\rb\r\n", 500, "5.5.2"}, {"EHLO x\r\r\n", 500, "5.5.2"}, {mailOK, 250, ""}}},
		{"hyphen first in a label", []step{{ehlo, 250, ""}, {"MAIL FROM:<a@-remote.example>\r\n", 501, "5.1.7"}}},
		{"A-label that is no punycode", []step{{ehlo, 250, ""}, {mailOK, 250, ""}, {"RCPT TO:<a@xn--zz.example>\r\n", 501, "5.1.3"}}},
		{"U-label with a disallowed rune", []step{{ehlo, 250, ""}, {"MAIL FROM:<a@remote.example> SMTPUTF8\r\n", 250, ""}, {"RCPT TO:<a@x\u00a0y.example>\r\n", 501, "5.1.3"}}},
		{"A-label and U-label of one domain", []step{{ehlo, 250, ""}, {"MAIL FROM:<a@xn--bcher-kva.example>\r\n", 250, ""}, {"RCPT TO:<b@XN--BCHER-KVA.example>\r\n", 250, ""}}},
		{"NUL in EHLO", []step{{"EHLO cli\x00ent\r\n", 501, "5.5.2"}, {ehlo, 250, ""}}},
		{"bare CR in EHLO", []step{{"EHLO cli\rent\r\n", 500, "5.5.2"}, {"HELO client.test\r\n", 250, ""}}},
		// A CR in any command line is refused before go-smtp parses it
		// (patch 9), so a second greeting is never echoed with it.
		{"bare CR in second EHLO", []step{{ehlo, 250, ""}, {"EHLO cli\rent\r\n", 500, "5.5.2"}, {"NOOP\r\n", 250, ""}}},
		// One reply, then the connection closes: not go-smtp's second one.
		{"over-long DATA line", []step{{ehlo, 250, ""}, {mailOK, 250, ""}, {rcptOK, 250, ""}, {"DATA\r\n", 354, ""},
			{"Subject: x\r\n\r\n" + strings.Repeat("x", 3000) + "\r\n.\r\n", 500, "5.5.2"}, {"", 0, ""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, config.KindSMTP, relayLoopback)
			converse(t, ts, tc.steps)
			if strings.Contains(tc.name, "DATA") || strings.Contains(tc.name, "BDAT") || strings.Contains(tc.name, "end of data") {
				if n := len(ts.queue.messages()); n != 0 {
					t.Fatalf("%d messages queued", n)
				}
			}
		})
	}
}

// The checks accept what they must: a clean message after EHLO, with
// parameters, through DATA and BDAT.
func TestStrictInputAccepts(t *testing.T) {
	ts := startServer(t, config.KindSMTP, relayLoopback)
	converse(t, ts, []step{
		{ehlo, 250, ""},
		{"MAIL FROM:<\"a b\"@remote.example> BODY=8BITMIME SIZE=100 ENVID=x+2By\r\n", 250, ""},
		{"RCPT TO:<other@[192.0.2.1]> NOTIFY=FAILURE ORCPT=rfc822;other@elsewhere.example\r\n", 250, ""},
		{"DATA\r\n", 354, ""},
		{"Subject: x\r\n\r\n..stuffed\r\n..\r\n.\r\n", 250, ""},
		{mailOK, 250, ""},
		{rcptOK, 250, ""},
		{"BDAT 14 LAST\r\nSubject: y\r\n\r\n", 250, ""},
	})
	msgs := ts.queue.messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages queued, want 2", len(msgs))
	}
	if !strings.HasSuffix(msgs[0].data, "\r\n\r\n.stuffed\r\n.\r\n") {
		t.Errorf("DATA message %q", msgs[0].data)
	}
}

// AUTH with a response that is not base64 is a syntax error, 501 5.5.2
// (RFC 4954 §4), whether as initial response or after 334; go-smtp upstream
// answered 454, a temporary failure clients retry.
func TestAuthBadBase64(t *testing.T) {
	ts := startServer(t, config.KindSubmission, nil)
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	tp := textproto.NewConn(nc)
	expect := func(code int, text string) {
		t.Helper()
		if _, msg, err := tp.ReadResponse(code); err != nil || !strings.HasPrefix(msg, text) {
			t.Fatalf("reply %q (%v), want %d %s", msg, err, code, text)
		}
	}
	expect(220, "")
	tp.PrintfLine("EHLO client.test")
	expect(250, "")
	tp.PrintfLine("STARTTLS")
	expect(220, "")
	tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true})
	tp = textproto.NewConn(tc)
	tp.PrintfLine("EHLO client.test")
	expect(250, "")
	tp.PrintfLine("AUTH PLAIN !!!")
	expect(501, "5.5.2")
	tp.PrintfLine("AUTH PLAIN")
	expect(334, "")
	tp.PrintfLine("!!!")
	expect(501, "5.5.2")
	tp.PrintfLine("NOOP")
	expect(250, "")
}

// quickPasswords knows alice's password "secret", without the cost of
// bcrypt, for tests that log in many times.
type quickPasswords struct{}

func (quickPasswords) CheckPassword(ctx context.Context, account, password string) (bool, error) {
	return account == "alice" && password == "secret", nil
}

// futureRelease configures a submission listener as mta.toml's default
// does: FUTURERELEASE with a hold of up to 7 days.
func futureRelease(cfg *Config) {
	cfg.Auth = quickPasswords{}
	cfg.FutureRelease = 7 * 24 * time.Hour
}

// HOLDFOR and HOLDUNTIL (RFC 4865, third_party/go-smtp patch 12): each
// refusal has its reply, and the session goes on.
func TestStrictFutureRelease(t *testing.T) {
	sub := startServer(t, config.KindSubmission, futureRelease)
	mx := startServer(t, config.KindSMTP, func(cfg *Config) {
		relayLoopback(cfg)
		cfg.FutureRelease = 7 * 24 * time.Hour // Not offered on MX all the same.
	})
	at := func(d time.Duration) string { return time.Now().Add(d).UTC().Format(time.RFC3339) }
	const from = "MAIL FROM:<alice@example.org> "
	for _, tc := range []struct {
		name  string
		ts    *testServer // Submission: after AUTH.
		steps []step
	}{
		{"HOLDFOR=0", sub, []step{{from + "HOLDFOR=0\r\n", 250, ""}}},
		{"HOLDFOR the longest", sub, []step{{from + "HOLDFOR=604800\r\n", 250, ""}}},
		{"HOLDFOR too long", sub, []step{{from + "HOLDFOR=604801\r\n", 554, "5.5.4 HOLDFOR=604801 is longer"}, {"NOOP\r\n", 250, ""}}},
		{"HOLDFOR of 10 digits", sub, []step{{from + "HOLDFOR=1000000000\r\n", 501, "5.5.4 HOLDFOR must be"}}},
		{"HOLDFOR not a number", sub, []step{{from + "HOLDFOR=soon\r\n", 501, "5.5.4 HOLDFOR must be"}}},
		{"HOLDFOR negative", sub, []step{{from + "HOLDFOR=-5\r\n", 501, "5.5.4 HOLDFOR must be"}}},
		{"HOLDFOR empty", sub, []step{{from + "HOLDFOR=\r\n", 501, "5.5.4 HOLDFOR must be"}}},
		{"HOLDFOR and HOLDUNTIL", sub, []step{{from + "HOLDFOR=5 HOLDUNTIL=" + at(time.Hour) + "\r\n", 501, "5.5.4 HOLDFOR and HOLDUNTIL cannot both"}, {from + "HOLDFOR=5\r\n", 250, ""}}},
		{"HOLDFOR twice", sub, []step{{from + "HOLDFOR=5 holdfor=6\r\n", 501, "5.5.4"}}},
		{"HOLDUNTIL", sub, []step{{from + "HOLDUNTIL=" + at(time.Hour) + "\r\n", 250, ""}}},
		{"HOLDUNTIL with an offset", sub, []step{{from + "HOLDUNTIL=" + time.Now().Add(time.Hour).In(time.FixedZone("", -5*3600)).Format(time.RFC3339) + "\r\n", 250, ""}}},
		{"HOLDUNTIL not RFC 3339", sub, []step{{from + "HOLDUNTIL=tomorrow\r\n", 501, "5.5.4 HOLDUNTIL must be an RFC 3339"}}},
		{"HOLDUNTIL without a zone", sub, []step{{from + "HOLDUNTIL=2030-01-02T15:04:05\r\n", 501, "5.5.4 HOLDUNTIL must be an RFC 3339"}}},
		{"HOLDUNTIL in the past", sub, []step{{from + "HOLDUNTIL=" + at(-time.Hour) + "\r\n", 554, "5.5.4 HOLDUNTIL is in the past"}}},
		{"HOLDUNTIL too late", sub, []step{{from + "HOLDUNTIL=" + at(8*24*time.Hour) + "\r\n", 554, "5.5.4 HOLDUNTIL is later than"}, {"NOOP\r\n", 250, ""}}},
		// The session refuses MAIL before AUTH, hold or not.
		{"HOLDFOR before AUTH", nil, []step{{from + "HOLDFOR=5\r\n", 530, "5.7.0"}}},
		{"HOLDFOR on MX", mx, []step{{ehlo, 250, ""}, {"MAIL FROM:<a@remote.example> HOLDFOR=5\r\n", 555, "5.5.4 HOLDFOR and HOLDUNTIL are not offered"}, {mailOK, 250, ""}}},
		{"HOLDUNTIL on MX", mx, []step{{ehlo, 250, ""}, {"MAIL FROM:<a@remote.example> HOLDUNTIL=" + at(time.Hour) + "\r\n", 555, "5.5.4"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			switch tc.ts {
			case mx:
				converse(t, mx, tc.steps)
			case nil:
				converseSubmission(t, sub, false, tc.steps)
			default:
				converseSubmission(t, sub, true, tc.steps)
			}
		})
	}
}

// A line too long in DATA ends the connection after its reply: what the
// client sent after it, a whole transaction here, is not read as commands
// (the reader's buffer holds it already), and nothing is queued.
func TestLongLineHangupSmuggles(t *testing.T) {
	ts := startServer(t, config.KindSMTP, relayLoopback)
	smuggled := "MAIL FROM:<smuggler@remote.example>\r\nRCPT TO:<victim@elsewhere.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n"
	converse(t, ts, []step{
		{ehlo, 250, ""}, {mailOK, 250, ""}, {rcptOK, 250, ""}, {"DATA\r\n", 354, ""},
		{"Subject: x\r\n\r\n" + strings.Repeat("a", maxLineLength+10) + "\r\n.\r\n" + smuggled, 500, "5.5.2"},
		{"", 0, ""},
	})
	time.Sleep(200 * time.Millisecond) // A smuggled transaction would be queued by now.
	if m := ts.queue.messages(); len(m) != 0 {
		t.Fatalf("queued after the hang-up: %+v", m)
	}
	if logs := ts.logs.String(); strings.Contains(logs, "smuggler") {
		t.Errorf("the smuggled commands reached the session:\n%s", logs)
	}
}
