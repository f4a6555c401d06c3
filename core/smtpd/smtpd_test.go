package smtpd

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/core/authlimit"
	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/store"
	"github.com/switchyard-mta/switchyard/sdk"
)

const testMsg = "From: alice@example.org\r\nTo: bob@remote.example\r\nSubject: test\r\n\r\nHello,\r\n.leading dot\r\n\r\nbye\r\n"

// receivedRe matches the Received header the server prepends.
func receivedRe(with, rcpt string) *regexp.Regexp {
	forClause := ""
	if rcpt != "" {
		forClause = `\r\n\tfor <` + regexp.QuoteMeta(rcpt) + `>`
	}
	return regexp.MustCompile(`^Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n` +
		`\tby ` + regexp.QuoteMeta(testHost) + ` with ` + with +
		forClause + `;\r\n` +
		`\t[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}\r\n`)
}

// checkQueued checks the one queued message: its envelope, its Received
// header and that the rest is exactly msg.
func checkQueued(t *testing.T, q *fakeQueue, want sdkEnvelope, re *regexp.Regexp, msg string) {
	t.Helper()
	msgs := q.messages()
	if len(msgs) != 1 {
		t.Fatalf("queued %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	got := sdkEnvelope{m.env.Account, m.env.From, m.env.Recipients, m.env.Options}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("envelope %+v, want %+v", got, want)
	}
	loc := re.FindStringIndex(m.data)
	if loc == nil {
		t.Fatalf("no matching Received header at start of %q", m.data)
	}
	if body := m.data[loc[1]:]; body != msg {
		t.Errorf("message after Received is %q, want %q", body, msg)
	}
	if files := q.spoolFiles(t); len(files) != 0 {
		t.Errorf("spool files left: %v", files)
	}
}

type sdkEnvelope struct {
	Account    string
	From       string
	Recipients []sdk.Recipient
	Options    sdk.DeliverOptions
}

func dialStartTLS(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClientStartTLS(nc, clientTLS(t))
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// The EHLO before STARTTLS said "localhost"; the one after is ours.
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	return c
}

func sendData(c *smtp.Client, msg string) (*smtp.DataResponse, error) {
	w, err := c.Data()
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return nil, err
	}
	return w.CloseWithResponse()
}

// code returns the reply code and enhanced code of a go-smtp client error.
func code(err error) (int, string) {
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return 0, ""
	}
	e := se.EnhancedCode
	return se.Code, fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
}

func wantCode(t *testing.T, err error, wantC int, wantE string) {
	t.Helper()
	c, e := code(err)
	if c != wantC || e != wantE {
		t.Fatalf("got %v (code %d %s), want %d %s", err, c, e, wantC, wantE)
	}
}

func TestSubmissionStartTLSPlain(t *testing.T) {
	ts := startServer(t, config.KindSubmission, nil)
	c := dialStartTLS(t, ts.addr)
	if ok, _ := c.Extension("AUTH"); !ok {
		t.Fatal("AUTH not offered after STARTTLS")
	}
	for _, ext := range []string{"SMTPUTF8", "8BITMIME", "DSN", "REQUIRETLS", "LIMITS"} {
		if ok, _ := c.Extension(ext); !ok {
			t.Errorf("%s not offered", ext)
		}
	}
	if err := c.Auth(sasl.NewPlainClient("", "alice@example.org", "secret")); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@example.org", &smtp.MailOptions{EnvelopeID: "env1", Return: smtp.DSNReturnHeaders, UTF8: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("bob@remote.example", &smtp.RcptOptions{
		Notify:                []smtp.DSNNotify{smtp.DSNNotifyFailure, smtp.DSNNotifyDelayed},
		OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "bob@remote.example",
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := sendData(c, testMsg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.StatusText, "Queued as Q1") {
		t.Errorf("DATA reply %q lacks the queue id", resp.StatusText)
	}
	want := sdkEnvelope{
		Account: "alice",
		From:    "alice@example.org",
		Recipients: []sdk.Recipient{{
			Address: "bob@remote.example",
			Notify:  []string{"FAILURE", "DELAY"},
			ORcpt:   "RFC822;bob@remote.example",
		}},
		Options: sdk.DeliverOptions{SMTPUTF8: true, Body: "8BITMIME", EnvelopeID: "env1", DSNReturn: "HDRS"},
	}
	checkQueued(t, ts.queue, want, receivedRe(`UTF8SMTPSA \(TLS 1\.3 TLS_[A-Z0-9_]+\)`, "bob@remote.example"), testMsg)
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}

	logs := ts.logs.String()
	if !regexp.MustCompile(`msg=transaction listener=test-submission cid=\w+ remote=127\.0\.0\.1:\d+ account=alice from=alice@example.org rcpts=1 size=\d+ code=250 duration=\S+ queueid=Q1`).MatchString(logs) {
		t.Errorf("no transaction log line in:\n%s", logs)
	}
	if strings.Contains(logs, "secret") {
		t.Errorf("password in log:\n%s", logs)
	}
}

// Over implicit TLS, with the LOGIN challenges checked on the wire.
func TestSubmissionsLogin(t *testing.T) {
	ts := startServer(t, config.KindSubmissions, nil)
	nc, err := tls.Dial("tcp", ts.addr, clientTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	tc := textproto.NewConn(nc)
	expect := func(code int, want string) {
		t.Helper()
		_, msg, err := tc.ReadResponse(code)
		if err != nil {
			t.Fatal(err)
		}
		if want != "" && msg != want {
			t.Fatalf("reply %q, want %q", msg, want)
		}
	}
	send := func(line string) {
		t.Helper()
		if err := tc.PrintfLine("%s", line); err != nil {
			t.Fatal(err)
		}
	}
	b64 := base64.StdEncoding.EncodeToString

	expect(220, "")
	send("EHLO client.test")
	_, ehlo, err := tc.ReadResponse(250)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ehlo, "\nAUTH PLAIN LOGIN") || strings.Contains(ehlo, "STARTTLS") {
		t.Fatalf("EHLO reply over implicit TLS:\n%s", ehlo)
	}
	send("AUTH LOGIN")
	expect(334, b64([]byte("Username:")))
	send(b64([]byte("alice")))
	expect(334, b64([]byte("Password:")))
	send(b64([]byte("secret")))
	expect(235, "")
	send("MAIL FROM:<alice@example.org>")
	expect(250, "")
	send("QUIT")
	expect(221, "")

	// With the username as initial response, as go-smtp's client sends it.
	c, err := smtp.DialTLS(ts.addr, clientTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewLoginClient("bob", "hunter2")); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("bob@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Auth(sasl.NewLoginClient("bob", "hunter2")); err == nil {
		t.Fatal("second AUTH accepted")
	}
}

// Refusals on a submission listener after STARTTLS, by step.
func TestSubmissionRefusals(t *testing.T) {
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 100)
	for _, tc := range []struct {
		name     string
		login    string // Empty: no AUTH.
		password string
		from     string
		rcpts    []string
		msg      string
		wantCode int
		wantEnh  string
	}{
		{"unauthenticated MAIL", "", "", "alice@example.org", nil, "", 530, "5.7.0"},
		{"wrong password", "alice", "Secret", "", nil, "", 535, "5.7.8"},
		{"unknown login", "mallory", "secret", "", nil, "", 535, "5.7.8"},
		{"PLAIN authzid of another account", "bob\x00alice", "secret", "", nil, "", 535, "5.7.8"},
		{"someone else's address", "alice", "secret", "bob@example.org", nil, "", 553, "5.7.1"},
		{"foreign address", "alice", "secret", "alice@elsewhere.example", nil, "", 553, "5.7.1"},
		{"null sender", "alice", "secret", "<>", nil, "", 553, "5.7.1"},
		{"local recipient", "alice", "secret", "alice@example.org", []string{"bob@example.org"}, "", 450, "4.3.2"},
		{"too many recipients", "alice", "secret", "alice@example.org", []string{"a@r.example", "b@r.example", "c@r.example"}, "", 452, "4.5.3"},
		{"too large", "alice", "secret", "alice@example.org", []string{"a@r.example"}, big, 552, "5.3.4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, config.KindSubmission, func(cfg *Config) {
				cfg.MaxRecipients = 2
				cfg.MaxMessageSize = 4000
			})
			c := dialStartTLS(t, ts.addr)
			err := func() error {
				if tc.login != "" {
					authzid, login, ok := strings.Cut(tc.login, "\x00")
					if !ok {
						authzid, login = "", tc.login
					}
					if err := c.Auth(sasl.NewPlainClient(authzid, login, tc.password)); err != nil {
						return err
					}
				}
				if tc.from == "" {
					return errors.New("no error")
				}
				from := tc.from
				if from == "<>" {
					from = ""
				}
				if err := c.Mail(from, nil); err != nil {
					return err
				}
				for _, r := range tc.rcpts {
					if err := c.Rcpt(r, nil); err != nil {
						return err
					}
				}
				if tc.msg == "" {
					return errors.New("no error")
				}
				_, err := sendData(c, tc.msg)
				return err
			}()
			wantCode(t, err, tc.wantCode, tc.wantEnh)
			if n := len(ts.queue.messages()); n != 0 {
				t.Fatalf("%d messages queued", n)
			}
			if files := ts.queue.spoolFiles(t); len(files) != 0 {
				t.Fatalf("spool files left: %v", files)
			}
			// The connection is still usable.
			if err := c.Noop(); err != nil {
				t.Fatalf("NOOP after refusal: %v", err)
			}
		})
	}
}

// Before STARTTLS, AUTH is neither offered nor accepted, and MAIL needs it.
func TestSubmissionAuthNeedsTLS(t *testing.T) {
	ts := startServer(t, config.KindSubmission, nil)
	c, err := smtp.Dial(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("STARTTLS not offered")
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Fatal("AUTH offered without TLS")
	}
	if ok, _ := c.Extension("REQUIRETLS"); ok {
		t.Fatal("REQUIRETLS offered without TLS")
	}
	err = c.Auth(sasl.NewPlainClient("", "alice", "secret"))
	if c, e := code(err); c/100 != 5 || !strings.HasPrefix(e, "5.7.") {
		t.Fatalf("AUTH without TLS: %v", err)
	}
	wantCode(t, c.Mail("alice@example.org", nil), 530, "5.7.0")
}

// An inbound MX relays only for its relay networks.
func TestSMTPRelay(t *testing.T) {
	t.Run("denied", func(t *testing.T) {
		ts := startServer(t, config.KindSMTP, nil)
		c, err := smtp.Dial(ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := c.Extension("STARTTLS"); !ok {
			t.Fatal("STARTTLS not offered on smtp listener with TLS")
		}
		if err := c.Mail("someone@remote.example", nil); err != nil {
			t.Fatal(err)
		}
		wantCode(t, c.Rcpt("other@elsewhere.example", nil), 550, "5.7.1")
		wantCode(t, c.Rcpt("bob@Example.ORG", nil), 450, "4.3.2")
	})

	t.Run("relay network", func(t *testing.T) {
		ts := startServer(t, config.KindSMTP, relayLoopback)
		c, err := smtp.Dial(ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("client.test"); err != nil {
			t.Fatal(err)
		}
		if err := c.Mail("", nil); err != nil {
			t.Fatalf("null sender on smtp listener: %v", err)
		}
		if err := c.Rcpt("other@elsewhere.example", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("third@elsewhere.example", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := sendData(c, testMsg); err != nil {
			t.Fatal(err)
		}
		want := sdkEnvelope{
			Recipients: []sdk.Recipient{{Address: "other@elsewhere.example"}, {Address: "third@elsewhere.example"}},
			Options:    sdk.DeliverOptions{Body: "8BITMIME"},
		}
		checkQueued(t, ts.queue, want, receivedRe("ESMTP", ""), testMsg)
	})

	t.Run("no AUTH on smtp after STARTTLS", func(t *testing.T) {
		ts := startServer(t, config.KindSMTP, nil)
		c := dialStartTLS(t, ts.addr)
		if ok, _ := c.Extension("AUTH"); ok {
			t.Fatal("AUTH offered on smtp listener")
		}
		if err := c.Auth(sasl.NewPlainClient("", "alice", "secret")); err == nil {
			t.Fatal("AUTH accepted on smtp listener")
		}
	})
}

// rawSession opens a plain connection to a relay-network smtp listener and
// starts a transaction up to the 354 reply.
func rawSession(t *testing.T, ts *testServer) *textproto.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	tc := textproto.NewConn(nc)
	for _, step := range []struct {
		cmd  string
		code int
	}{
		{"", 220},
		{"EHLO client.test", 250},
		{"MAIL FROM:<someone@remote.example>", 250},
		{"RCPT TO:<other@elsewhere.example>", 250},
		{"DATA", 354},
	} {
		if step.cmd != "" {
			tc.PrintfLine("%s", step.cmd)
		}
		if _, msg, err := tc.ReadResponse(step.code); err != nil {
			t.Fatalf("%q: %v %s", step.cmd, err, msg)
		}
	}
	return tc
}

// Bare CR and LF are refused, SMTP smuggling attempts included, and the
// session stays in sync: the smuggled commands are not run.
func TestBareCRLF(t *testing.T) {
	for _, tc := range []struct {
		name     string
		data     string
		wantCode int
	}{
		{"clean", "Subject: x\r\n\r\nbody\r\n.\r\n", 250},
		{"bare LF", "Subject: x\r\n\r\nline one\nline two\r\n.\r\n", 500},
		{"bare CR", "Subject: x\r\n\r\nline one\rline two\r\n.\r\n", 500},
		{"LF at start", "\nSubject: x\r\n\r\nbody\r\n.\r\n", 500},
		// Not as the last line: go-smtp would not see the end of data.
		{"CR before CRLF", "Subject: x\r\n\r\nbody\r\r\nmore\r\n.\r\n", 500},
		{"smuggling LF.CRLF", "Subject: x\r\n\r\nbody\n.\r\nMAIL FROM:<evil@remote.example>\r\nRCPT TO:<v@elsewhere.example>\r\nDATA\r\nevil\r\n.\r\n", 500},
		{"smuggling CRLF.LF", "Subject: x\r\n\r\nbody\r\n.\nMAIL FROM:<evil@remote.example>\r\nRCPT TO:<v@elsewhere.example>\r\nDATA\r\nevil\r\n.\r\n", 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, config.KindSMTP, relayLoopback)
			conn := rawSession(t, ts)
			if _, err := io.WriteString(conn.W, tc.data); err != nil {
				t.Fatal(err)
			}
			conn.W.Flush()
			code, msg, err := conn.ReadResponse(tc.wantCode)
			if err != nil {
				t.Fatalf("reply %d %s: %v", code, msg, err)
			}
			if tc.wantCode == 500 && msg != "5.5.2 Bare LF or CR in message (SMTP smuggling)" {
				t.Fatalf("reply text %q", msg)
			}
			// The next reply is to our NOOP: nothing smuggled was run.
			conn.PrintfLine("NOOP")
			if code, msg, err := conn.ReadResponse(250); err != nil || !strings.Contains(msg, "nothing") {
				t.Fatalf("NOOP reply %d %q: %v", code, msg, err)
			}
			wantQueued := 0
			if tc.wantCode == 250 {
				wantQueued = 1
			}
			if n := len(ts.queue.messages()); n != wantQueued {
				t.Fatalf("%d messages queued, want %d", n, wantQueued)
			}
			if files := ts.queue.spoolFiles(t); len(files) != 0 {
				t.Fatalf("spool files left: %v", files)
			}
		})
	}
}

func TestQueueFailure(t *testing.T) {
	ts := startServer(t, config.KindSMTP, relayLoopback)
	ts.queue.fail = true
	c, err := smtp.Dial(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Mail("someone@remote.example", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("other@elsewhere.example", nil); err != nil {
		t.Fatal(err)
	}
	_, err = sendData(c, testMsg)
	wantCode(t, err, 451, "4.3.0")
	if files := ts.queue.spoolFiles(t); len(files) != 0 {
		t.Fatalf("spool files left: %v", files)
	}
	if !strings.Contains(ts.logs.String(), "disk on fire") {
		t.Errorf("queue error not logged:\n%s", ts.logs.String())
	}
}

func TestReadTimeout(t *testing.T) {
	ts := startServer(t, config.KindSMTP, func(cfg *Config) { cfg.ReadTimeout = 200 * time.Millisecond })
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := greeted(t, nc)
	start := time.Now()
	if _, msg, err := tc.ReadResponse(421); err != nil {
		t.Fatalf("idle reply: %v %s", err, msg)
	}
	if _, err := tc.ReadLine(); err != io.EOF {
		t.Fatalf("after idle timeout: %v, want EOF", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed after %v", d)
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*Config)
	}{
		{"submission without TLS", func(c *Config) { c.Listener.Kind = config.KindSubmission; c.TLS = nil }},
		{"submissions without TLS", func(c *Config) { c.Listener.Kind = config.KindSubmissions; c.TLS = nil }},
		{"submission without Auth", func(c *Config) { c.Listener.Kind = config.KindSubmission; c.Auth = nil }},
		{"imap kind", func(c *Config) { c.Listener.Kind = config.KindIMAP }},
		{"no hostname", func(c *Config) { c.Hostname = "" }},
		{"no queue", func(c *Config) { c.Queue = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{
				Hostname: testHost,
				Listener: config.Listener{Name: "x", Kind: config.KindSMTP},
				TLS:      serverTLS(t),
				Accounts: fakeAccounts{},
				Auth:     fakeChecker{},
				Queue:    &fakeQueue{},
			}
			if _, err := New(cfg); err != nil {
				t.Fatalf("valid config: %v", err)
			}
			tc.modify(&cfg)
			if _, err := New(cfg); err == nil {
				t.Fatal("New accepted invalid config")
			}
		})
	}
}

type fakeChecker struct{}

func (fakeChecker) CheckPassword(ctx context.Context, account, password string) (bool, error) {
	return false, nil
}

// REQUIRETLS needs TLS even where the listener offers it after STARTTLS.
func TestRequireTLSPlain(t *testing.T) {
	ts := startServer(t, config.KindSMTP, relayLoopback)
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	tc := textproto.NewConn(nc)
	for _, step := range []struct {
		cmd  string
		code int
		msg  string
	}{
		{"", 220, ""},
		{"EHLO client.test", 250, ""},
		{"MAIL FROM:<someone@remote.example> REQUIRETLS", 530, "5.7.10 REQUIRETLS needs a TLS session"},
		{"MAIL FROM:<someone@remote.example>", 250, ""},
	} {
		if step.cmd != "" {
			tc.PrintfLine("%s", step.cmd)
		}
		_, msg, err := tc.ReadResponse(step.code)
		if err != nil || step.msg != "" && msg != step.msg {
			t.Fatalf("%q: %v %q", step.cmd, err, msg)
		}
	}
}

// A message line over the limit is refused and the connection closed.
func TestLongLine(t *testing.T) {
	ts := startServer(t, config.KindSMTP, relayLoopback)
	conn := rawSession(t, ts)
	io.WriteString(conn.W, "Subject: x\r\n\r\n"+strings.Repeat("x", 3000)+"\r\n.\r\n")
	conn.W.Flush()
	if _, msg, err := conn.ReadResponse(500); err != nil {
		t.Fatalf("reply to long line: %v %s", err, msg)
	}
	for {
		if _, err := conn.ReadLine(); err != nil {
			if err != io.EOF {
				t.Fatalf("connection not closed: %v", err)
			}
			break
		}
	}
	if n := len(ts.queue.messages()); n != 0 {
		t.Fatalf("%d messages queued", n)
	}
}

func TestReceivedParts(t *testing.T) {
	for _, tc := range []struct {
		utf8, tls, auth bool
		want            string
	}{
		{false, false, false, "ESMTP"},
		{false, true, false, "ESMTPS"},
		{false, false, true, "ESMTPA"},
		{false, true, true, "ESMTPSA"},
		{true, true, true, "UTF8SMTPSA"},
	} {
		if got := withProtocol(tc.utf8, tc.tls, tc.auth); got != tc.want {
			t.Errorf("withProtocol(%v, %v, %v) = %s, want %s", tc.utf8, tc.tls, tc.auth, got, tc.want)
		}
	}
	for ip, want := range map[string]string{
		"192.0.2.1":        "[192.0.2.1]",
		"2001:db8::1":      "[IPv6:2001:db8::1]",
		"::ffff:192.0.2.1": "[IPv6:::ffff:192.0.2.1]", // Unmapped before, in Accept.
	} {
		if got := addressLiteral(netip.MustParseAddr(ip)); got != want {
			t.Errorf("addressLiteral(%s) = %s, want %s", ip, got, want)
		}
	}
	for helo, want := range map[string]string{
		"mail.example.org":   "mail.example.org",
		"[192.0.2.1]":        "[192.0.2.1]",
		"evil)\tby (x":       "evil__by__x",
		"a;b\x00c\u00e9":     "a_b_c_",
		"[IPv6:2001:db8::1]": "[IPv6:2001:db8::1]",
	} {
		if got := heloToken(helo); got != want {
			t.Errorf("heloToken(%q) = %q, want %q", helo, got, want)
		}
	}
}

// Repeated AUTH failures from one address are delayed, then refused with 421
// and a closed connection, even with the right password.
func TestAuthLimit(t *testing.T) {
	limit := authlimit.New()
	limit.FreeFailures, limit.Delay, limit.MaxFailures = 1, 50*time.Millisecond, 3
	ts := startServer(t, config.KindSubmissions, func(c *Config) { c.AuthLimit = limit })
	dial := func() *smtp.Client {
		c, err := smtp.DialTLS(ts.addr, clientTLS(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := dial()
	for i := range 3 {
		start := time.Now()
		err := c.Auth(sasl.NewPlainClient("", "alice", "wrong"))
		if c, _ := code(err); c != 535 {
			t.Fatalf("failure %d: %v, want 535", i+1, err)
		}
		if d := time.Since(start); i > 0 && d < time.Duration(i)*50*time.Millisecond {
			t.Fatalf("failure %d answered after %v: not delayed", i+1, d)
		}
	}
	c = dial()
	if err := c.Auth(sasl.NewPlainClient("", "alice", "secret")); func() int { c, _ := code(err); return c }() != 421 {
		t.Fatalf("after 3 failures: %v, want 421", err)
	}
	if err := c.Noop(); err == nil {
		t.Fatal("connection still open after 421")
	}

	// Logins pipelined behind the refused one are not read: one refusal,
	// then the connection ends.
	waitLog(t, ts, "too many failures")
	before := strings.Count(ts.logs.String(), "too many failures")
	nc, err := tls.Dial("tcp", ts.addr, clientTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	tc := greeted(t, nc)
	good := "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret")) + "\r\n"
	io.WriteString(nc, "EHLO client.test\r\n"+good+good+good+"NOOP\r\n")
	if _, _, err := tc.ReadResponse(250); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tc.ReadResponse(421); err != nil {
		t.Fatalf("pipelined AUTH: %v, want 421", err)
	}
	if line, err := tc.ReadLine(); err == nil {
		t.Errorf("after 421: %q, want the connection closed", line)
	}
	time.Sleep(100 * time.Millisecond)
	if n := strings.Count(ts.logs.String(), "too many failures") - before; n != 1 {
		t.Errorf("%d refusals logged, want 1: the pipelined logins after the first were read", n)
	}
}

// Local recipients are delivered before the reply; one failing after another
// succeeded is queued for a retry; all failing gives the failure.
func TestLocalDelivery(t *testing.T) {
	tests := []struct {
		name       string
		rcpts      []string
		local      *fakeLocal
		wantRcpt   []int // Per recipient.
		wantData   int
		wantEnh    string
		delivered  []string
		wantQueued []string
	}{
		{"delivered", []string{"alice@example.org", "BOB@example.org"}, &fakeLocal{}, []int{250, 250}, 250, "2.0.0", []string{"alice", "bob"}, nil},
		{"unknown user", []string{"carol@example.org"}, &fakeLocal{}, []int{550}, 0, "", nil, nil},
		{"over quota at RCPT", []string{"alice@example.org"}, &fakeLocal{full: map[string]bool{"alice": true}}, []int{452}, 0, "", nil, nil},
		{"over quota at DATA", []string{"alice@example.org"}, &fakeLocal{fail: map[string]error{"alice": store.ErrQuota}}, []int{250}, 452, "4.2.2", nil, nil},
		{"failing alone", []string{"alice@example.org"}, &fakeLocal{fail: map[string]error{"alice": errors.New("disk")}}, []int{250}, 451, "4.3.0", nil, nil},
		{"one of two failing", []string{"alice@example.org", "bob@example.org"}, &fakeLocal{fail: map[string]error{"bob": store.ErrQuota}}, []int{250, 250}, 250, "2.0.0", []string{"alice"}, []string{"bob@example.org"}},
		{"local and remote", []string{"alice@example.org", "x@remote.example"}, &fakeLocal{}, []int{250, 250}, 250, "2.0.0", []string{"alice"}, []string{"x@remote.example"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, config.KindSMTP, func(c *Config) {
				c.Local = tc.local
				relayLoopback(c)
			})
			c, err := smtp.Dial(ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Mail("sender@remote.example", nil); err != nil {
				t.Fatal(err)
			}
			accepted := 0
			for i, r := range tc.rcpts {
				code, _ := code(c.Rcpt(r, nil))
				if code == 0 {
					code = 250
					accepted++
				}
				if code != tc.wantRcpt[i] {
					t.Fatalf("RCPT %s: %d, want %d", r, code, tc.wantRcpt[i])
				}
			}
			if accepted == 0 {
				return
			}
			w, err := c.Data()
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(w, testMsg)
			err = w.Close()
			gotCode, gotEnh := code(err)
			if gotCode == 0 {
				gotCode, gotEnh = 250, "2.0.0"
			}
			if gotCode != tc.wantData || gotEnh != tc.wantEnh {
				t.Fatalf("DATA: %d %s (%v), want %d %s", gotCode, gotEnh, err, tc.wantData, tc.wantEnh)
			}
			for _, a := range tc.delivered {
				line := `msg=delivery .*from=sender@remote.example to=(?i:` + a + `@example.org) transport=local status=sent account=` + a + ` mailbox=Inbox`
				if !regexp.MustCompile(line).MatchString(ts.logs.String()) {
					t.Errorf("no log line %s", line)
				}
			}
			tc.local.mu.Lock()
			if tc.local.from != "sender@remote.example" {
				t.Errorf("local delivery from %q", tc.local.from)
			}
			for a, addrs := range tc.local.addresses {
				// The addresses as given in RCPT TO.
				want := []string{a + "@example.org"}
				if a == "bob" && slices.Contains(tc.rcpts, "BOB@example.org") {
					want = []string{"BOB@example.org"}
				}
				if !slices.Equal(addrs, want) {
					t.Errorf("%s: addresses %v, want %v", a, addrs, want)
				}
			}
			var delivered []string
			for a, b := range tc.local.delivered {
				delivered = append(delivered, a)
				if !strings.HasSuffix(string(b), testMsg) || !strings.HasPrefix(string(b), "Received: ") {
					t.Errorf("%s got %q", a, b)
				}
			}
			tc.local.mu.Unlock()
			slices.Sort(delivered)
			if !slices.Equal(delivered, tc.delivered) {
				t.Errorf("delivered to %v, want %v", delivered, tc.delivered)
			}
			var queued []string
			for _, m := range ts.queue.messages() {
				for _, r := range m.env.Recipients {
					queued = append(queued, r.Address)
				}
			}
			if !slices.Equal(queued, tc.wantQueued) {
				t.Errorf("queued %v, want %v", queued, tc.wantQueued)
			}
		})
	}
}
