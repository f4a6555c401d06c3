package smtpclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/sdk/smtptest"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dial(t testing.TB, addr string, cfg *Config) *Client {
	t.Helper()
	if cfg.EHLO == "" {
		cfg.EHLO = "client.test"
	}
	c, err := Dial(testCtx(t), addr, cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// scripted starts a smtptest.Script and returns its address.
func scripted(t testing.TB, greeting string, reply func(cmd string) string) string {
	return smtptest.NewScript(t, greeting, reply).Addr
}

// want checks a reply and its error.
func want(t *testing.T, what string, r Reply, err error, code int, enh string) {
	t.Helper()
	if err != nil || r.Code != code || r.EnhancedCode != enh {
		t.Fatalf("%s: got %v, %v; want %d %s", what, r, err, code, enh)
	}
}

func TestTransaction(t *testing.T) {
	s := smtptest.NewServer(t, smtptest.Options{DSN: true, SMTPUTF8: true, Reply: smtptest.RejectByName})
	c := dial(t, s.Addr, &Config{})
	if _, ok := c.Extension("dsn"); !ok {
		t.Error("DSN not offered")
	}
	if ext := c.Extensions(); ext["SIZE"] != "" || !has(ext, "8BITMIME") || !has(ext, "PIPELINING") {
		t.Errorf("extensions %v", ext)
	}
	if _, ok := c.TLSConnectionState(); ok || c.RemoteAddr().String() != s.Addr {
		t.Errorf("TLS state or remote address %v", c.RemoteAddr())
	}

	body := "From: a@example.org\r\nSubject: test\r\n\r\nHello\r\n.leading dot\r\n..two\r\n.\r\n8-bit: \xc3\xa9\r\nno final line break"
	r, err := c.Mail("a@example.org", &MailOptions{Size: int64(len(body)), Body: "8bitmime", SMTPUTF8: true, DSNReturn: "hdrs", EnvelopeID: "env 1+x"})
	want(t, "MAIL", r, err, 250, "2.0.0")
	r, err = c.Rcpt("b@example.net", &RcptOptions{Notify: []string{"success", "FAILURE", "SUCCESS"}, ORcpt: "rfc822;b+x@example.net"})
	want(t, "RCPT", r, err, 250, "2.0.0")
	r, err = c.Rcpt("reject@example.net", nil)
	want(t, "RCPT reject", r, err, 550, "5.1.1")
	if r.Text != "no such user" || r.String() != "550 5.1.1 no such user" || r.Positive() {
		t.Errorf("reply %q", r)
	}
	r, err = c.Rcpt("tempfail@example.net", nil)
	want(t, "RCPT tempfail", r, err, 451, "4.3.0")
	if _, err := c.Rcpt("x>@example.net", nil); !errors.Is(err, ErrInvalidAddress) {
		t.Errorf("RCPT with >: %v", err)
	}
	if _, err := c.Mail("a\r\nRSET@example.org", nil); !errors.Is(err, ErrInvalidAddress) {
		t.Errorf("MAIL with CRLF: %v", err)
	}
	r, err = c.Data()
	want(t, "DATA", r, err, 354, "")
	r, err = c.WriteData(iotest.OneByteReader(strings.NewReader(body)))
	want(t, "end of data", r, err, 250, "2.0.0")

	// A second transaction on the same connection, with the null sender.
	r, err = c.Mail("", nil)
	want(t, "MAIL", r, err, 250, "2.0.0")
	r, err = c.Reset()
	want(t, "RSET", r, err, 250, "2.0.0")
	r, err = c.Mail("", nil)
	want(t, "MAIL", r, err, 250, "2.0.0")
	r, err = c.Rcpt("c@example.net", nil)
	want(t, "RCPT", r, err, 250, "2.0.0")
	r, err = c.Data()
	want(t, "DATA", r, err, 354, "")
	r, err = c.WriteData(strings.NewReader("Subject: two\r\n\r\n"))
	want(t, "end of data", r, err, 250, "2.0.0")
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}

	msgs := s.Messages()
	if len(msgs) != 2 {
		t.Fatalf("server got %d messages", len(msgs))
	}
	m := msgs[0]
	if string(m.Data) != body+"\r\n" {
		t.Errorf("body:\n%q\nwant\n%q", m.Data, body+"\r\n")
	}
	if m.Helo != "client.test" || m.From != "a@example.org" || !reflect.DeepEqual(m.To(), []string{"b@example.net"}) {
		t.Errorf("envelope: helo %q from %q rcpts %q", m.Helo, m.From, m.To())
	}
	o := m.Mail
	if o.Body != smtp.Body8BitMIME || !o.UTF8 || o.Size != int64(len(body)) || o.EnvelopeID != "env 1+x" || o.Return != smtp.DSNReturnHeaders {
		t.Errorf("MAIL options: %+v", o)
	}
	ro := m.Rcpts[0].Options
	if !reflect.DeepEqual(ro.Notify, []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure}) ||
		ro.OriginalRecipientType != smtp.DSNAddressTypeRFC822 || ro.OriginalRecipient != "b+x@example.net" {
		t.Errorf("RCPT options: %+v", ro)
	}
	if m := msgs[1]; m.From != "" || string(m.Data) != "Subject: two\r\n\r\n" {
		t.Errorf("second message from %q body %q", m.From, m.Data)
	}
	if tr := s.Trace(); strings.Count(tr, "RSET\r\n") != 1 || !strings.Contains(tr, "QUIT\r\n") {
		t.Errorf("trace:\n%s", tr)
	}
}

func has(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// TestParameters checks MAIL and RCPT lines as sent, with and without the
// extensions their parameters need.
func TestParameters(t *testing.T) {
	lines := make(chan string, 100)
	script := func(ehlo string) func(string) string {
		return func(cmd string) string {
			lines <- cmd
			if strings.HasPrefix(cmd, "EHLO") {
				return ehlo
			}
			return "250 ok"
		}
	}
	rich := scripted(t, "220 rich", script("250-rich\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250 DSN"))
	poor := scripted(t, "220 poor", script("250 poor"))
	full := &MailOptions{Size: 500, Body: "7bit", SMTPUTF8: true, RequireTLS: true, DSNReturn: "full", EnvelopeID: "a+b=c d"}
	for _, tc := range []struct {
		name string
		addr string
		send func(c *Client) (Reply, error)
		want string
	}{
		{"mail all", rich, func(c *Client) (Reply, error) { return c.Mail("a@x", full) }, "MAIL FROM:<a@x> SIZE=500 BODY=7BIT SMTPUTF8 REQUIRETLS RET=FULL ENVID=a+2Bb+3Dc+20d"},
		{"mail without extensions", poor, func(c *Client) (Reply, error) { return c.Mail("a@x", full) }, "MAIL FROM:<a@x> SMTPUTF8 REQUIRETLS"},
		{"mail binarymime", poor, func(c *Client) (Reply, error) { return c.Mail("", &MailOptions{Body: "BINARYMIME"}) }, "MAIL FROM:<> BODY=BINARYMIME"},
		{"mail bad values", rich, func(c *Client) (Reply, error) {
			return c.Mail("a@x", &MailOptions{Body: "9BIT", DSNReturn: "ALL", EnvelopeID: "é"})
		}, "MAIL FROM:<a@x>"},
		{"notify dedup", rich, rcpt(RcptOptions{Notify: []string{"success", "FAILURE", "SUCCESS"}}), "RCPT TO:<b@y> NOTIFY=SUCCESS,FAILURE"},
		{"notify never", rich, rcpt(RcptOptions{Notify: []string{"NEVER"}}), "RCPT TO:<b@y> NOTIFY=NEVER"},
		{"notify never and more", rich, rcpt(RcptOptions{Notify: []string{"NEVER", "DELAY"}}), "RCPT TO:<b@y>"},
		{"notify unknown", rich, rcpt(RcptOptions{Notify: []string{"SOMETIMES"}}), "RCPT TO:<b@y>"},
		{"orcpt rfc822", rich, rcpt(RcptOptions{ORcpt: "rfc822;b+x@example.net"}), "RCPT TO:<b@y> ORCPT=rfc822;b+2Bx@example.net"},
		{"orcpt rfc822 non-ascii", rich, rcpt(RcptOptions{ORcpt: "RFC822;dörte@example.net"}), "RCPT TO:<b@y>"},
		{"orcpt utf-8", rich, rcpt(RcptOptions{ORcpt: "UTF-8;dörte+x@example.net"}), `RCPT TO:<b@y> ORCPT=utf-8;d\x{F6}rte\x{2B}x@example.net`},
		{"orcpt other type", rich, rcpt(RcptOptions{ORcpt: "x400;whatever"}), "RCPT TO:<b@y>"},
		{"orcpt no type", rich, rcpt(RcptOptions{ORcpt: "no type"}), "RCPT TO:<b@y>"},
		{"rcpt without dsn", poor, rcpt(RcptOptions{Notify: []string{"NEVER"}, ORcpt: "rfc822;b@y"}), "RCPT TO:<b@y>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, tc.addr, &Config{})
			for len(lines) > 0 {
				<-lines // EHLO
			}
			r, err := tc.send(c)
			want(t, tc.name, r, err, 250, "")
			if got := <-lines; got != tc.want {
				t.Errorf("sent\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func rcpt(o RcptOptions) func(c *Client) (Reply, error) {
	return func(c *Client) (Reply, error) { return c.Rcpt("b@y", &o) }
}

func TestDotStuffing(t *testing.T) {
	srv := smtptest.NewScript(t, "220 x", func(cmd string) string {
		if cmd == "DATA" {
			return "354 go ahead"
		}
		return "250 ok"
	})
	c := dial(t, srv.Addr, &Config{})
	for _, tc := range []struct{ in, wire string }{
		{"a\r\n.b\r\n..c\r\n", "a\r\n..b\r\n...c\r\n"},
		{".", "..\r\n"},
		{"", ""},
		{".\r\n", "..\r\n"},
		{"a\nb\n", "a\r\nb\r\n"},
		{"\n.\n", "\r\n..\r\n"},
		{"bare\rcr", "bare\rcr\r\n"},
		{"ends with cr\r", "ends with cr\r\n"},
		{"\r\n\r\n.\r\n.", "\r\n\r\n..\r\n..\r\n"},
	} {
		for _, oneByte := range []bool{false, true} {
			var in = strings.NewReader(tc.in)
			r, err := c.Data()
			want(t, "DATA", r, err, 354, "")
			if oneByte {
				r, err = c.WriteData(iotest.OneByteReader(in))
			} else {
				r, err = c.WriteData(in)
			}
			want(t, "end of data", r, err, 250, "2.0.0")
			if got := string((<-srv.Messages).Data); got != tc.wire {
				t.Errorf("%q (one byte at a time %v): sent %q, want %q", tc.in, oneByte, got, tc.wire)
			}
		}
	}
	if _, err := c.WriteData(strings.NewReader("RSET\r\n")); err == nil {
		t.Error("WriteData without DATA sent the message as commands")
	}
}

func TestWriteDataReadError(t *testing.T) {
	srv := smtptest.NewScript(t, "220 x", func(cmd string) string {
		if cmd == "DATA" {
			return "354 go ahead"
		}
		return "250 ok"
	})
	c := dial(t, srv.Addr, &Config{})
	r, err := c.Data()
	want(t, "DATA", r, err, 354, "")
	cause := errors.New("disk on fire")
	_, err = c.WriteData(io.MultiReader(strings.NewReader("Subject: x\r\n\r\nbody\r\n"), iotest.ErrReader(cause)))
	if !errors.Is(err, ErrReadMessage) || !errors.Is(err, cause) {
		t.Fatalf("got %v, want ErrReadMessage wrapping the cause", err)
	}
	select {
	case msg := <-srv.Messages:
		if msg.Ended {
			t.Fatalf("server got the end of a message that failed: %q", msg.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("connection not closed after the message failed")
	}
	if _, err := c.Reset(); err == nil {
		t.Error("connection still open after the message failed")
	}
}

func TestBdat(t *testing.T) {
	s := smtptest.NewServer(t, smtptest.Options{BINARYMIME: true})
	c := dial(t, s.Addr, &Config{})
	if _, ok := c.Extension("CHUNKING"); !ok {
		t.Fatal("CHUNKING not offered")
	}
	var body []byte
	for i := 0; len(body) < 2*bdatChunk+bdatChunk/2; i++ {
		const pattern = "\x00\xff\n.\r\n.\r\nbare\rend"
		body = append(body, pattern[i%len(pattern)])
	}
	r, err := c.Mail("a@example.org", &MailOptions{Body: "BINARYMIME", Size: int64(len(body))})
	want(t, "MAIL", r, err, 250, "2.0.0")
	r, err = c.Rcpt("b@example.net", nil)
	want(t, "RCPT", r, err, 250, "2.0.0")
	r, err = c.Bdat(bytes.NewReader(body))
	want(t, "BDAT", r, err, 250, "2.0.0")
	msgs := s.Messages()
	if len(msgs) != 1 || !bytes.Equal(msgs[0].Data, body) || msgs[0].Mail.Body != smtp.BodyBinaryMIME {
		t.Fatalf("server got %d messages, body equal %v", len(msgs), len(msgs) == 1 && bytes.Equal(msgs[0].Data, body))
	}
	if n := strings.Count(s.Trace(), "BDAT "); n != 3 {
		t.Errorf("%d BDAT commands, want 3", n)
	}
}

func TestTLSModes(t *testing.T) {
	untrusted := &tls.Config{ServerName: "localhost"}
	tls12 := &tls.Config{MaxVersion: tls.VersionTLS12}
	for _, tc := range []struct {
		name      string
		tls       smtptest.TLSMode
		serverTLS *tls.Config
		mode      TLSMode
		config    *tls.Config // nil: trusting the server.
		version   uint16      // 0: no TLS.
		err       error
	}{
		{name: "none", tls: smtptest.StartTLS, mode: TLSNone},
		{name: "opportunistic", tls: smtptest.StartTLS, mode: TLSOpportunistic, version: tls.VersionTLS13},
		{name: "opportunistic without starttls", mode: TLSOpportunistic},
		{name: "starttls", tls: smtptest.StartTLS, mode: TLSStartTLS, version: tls.VersionTLS13},
		{name: "starttls tls 1.2", tls: smtptest.StartTLS, serverTLS: tls12, mode: TLSStartTLS, version: tls.VersionTLS12},
		{name: "starttls not offered", mode: TLSStartTLS, err: ErrNoSTARTTLS},
		{name: "implicit", tls: smtptest.ImplicitTLS, mode: TLSImplicit, version: tls.VersionTLS13},
		{name: "untrusted", tls: smtptest.StartTLS, mode: TLSStartTLS, config: untrusted, err: ErrTLS},
		{name: "implicit untrusted", tls: smtptest.ImplicitTLS, mode: TLSImplicit, config: untrusted, err: ErrTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// AUTH is offered over TLS only.
			s := smtptest.NewServer(t, smtptest.Options{TLS: tc.tls, TLSConfig: tc.serverTLS, Mechanisms: []string{"PLAIN"}})
			cfg := &Config{EHLO: "client.test", TLS: tc.mode, TLSConfig: s.ClientConfig()}
			if tc.config != nil {
				cfg.TLSConfig = tc.config
			}
			c, err := Dial(testCtx(t), s.Addr, cfg)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("got %v, want %v", err, tc.err)
				}
				var cve *tls.CertificateVerificationError
				if tc.err == ErrTLS && !errors.As(err, &cve) {
					t.Errorf("%v is not a certificate verification error", err)
				}
				if tr := s.Trace(); strings.Contains(tr, "MAIL") || tc.err == ErrNoSTARTTLS && strings.Contains(tr, "STARTTLS\r\n") {
					t.Errorf("trace:\n%s", tr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			cs, ok := c.TLSConnectionState()
			if ok != (tc.version != 0) || cs.Version != tc.version {
				t.Errorf("TLS %v version %x, want %x", ok, cs.Version, tc.version)
			}
			// go-smtp offers AUTH over TLS only: seeing it proves EHLO was
			// said again after STARTTLS (RFC 3207 §4.2).
			if _, auth := c.Extension("AUTH"); auth != ok {
				t.Errorf("AUTH offered %v with TLS %v", auth, ok)
			}
			// Reset looks for unsolicited data without waiting: over TLS
			// too, the session goes on after it.
			if r, err := c.Reset(); err != nil || r.Code != 250 {
				t.Fatalf("RSET: %v, %v", r, err)
			}
			r, err := c.Mail("a@example.org", nil)
			want(t, "MAIL", r, err, 250, "2.0.0")
		})
	}
}

// TestResetUnsolicited: a reply nothing asked for (here a 421 after the
// EHLO reply, as a server closing an idle session sends) makes Reset fail
// without sending RSET, and so does a closed connection.
func TestResetUnsolicited(t *testing.T) {
	var mu sync.Mutex
	var cmds []string
	addr := scripted(t, "220 x", func(cmd string) string {
		mu.Lock()
		cmds = append(cmds, cmd)
		mu.Unlock()
		if strings.HasPrefix(cmd, "EHLO") {
			return "250 ok\r\n421 4.4.2 idle too long, closing"
		}
		return "250 ok"
	})
	c := dial(t, addr, &Config{})
	time.Sleep(100 * time.Millisecond) // The 421 arrives.
	if _, err := c.Reset(); !errors.Is(err, ErrUnsolicited) {
		t.Fatalf("Reset after an unsolicited reply: %v, want ErrUnsolicited", err)
	}
	mu.Lock()
	for _, cmd := range cmds {
		if strings.HasPrefix(cmd, "RSET") {
			t.Errorf("RSET sent to a session out of step")
		}
	}
	mu.Unlock()

	quiet := dial(t, scripted(t, "220 x", func(string) string { return "250 ok" }), &Config{})
	if r, err := quiet.Reset(); err != nil || r.Code != 250 {
		t.Fatalf("Reset of a quiet session: %v, %v", r, err)
	}
	quiet.raw.Close()
	if _, err := quiet.Reset(); err == nil {
		t.Fatal("Reset of a closed session succeeded")
	}
}

func TestDialErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	ehlo502 := func(cmd string) string {
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			return "502 5.5.2 what?"
		case strings.HasPrefix(cmd, "HELO"):
			return "250 hi"
		}
		return "250 ok"
	}
	noTLS := func(cmd string) string {
		if strings.HasPrefix(cmd, "EHLO") {
			return "250-x\r\n250 STARTTLS"
		}
		return "454 4.7.0 TLS not available"
	}
	for _, tc := range []struct {
		name     string
		greeting string
		script   func(string) string
		cfg      Config
		err      error
		reply    *ReplyError
	}{
		{name: "greeting refused", greeting: "554 5.3.2 not now", reply: &ReplyError{"greeting", Reply{554, "5.3.2", "not now"}}},
		{name: "malformed greeting", greeting: "hello?", err: ErrProtocol},
		{name: "helo fallback", greeting: "220 old", script: ehlo502},
		{name: "no helo fallback with tls", greeting: "220 old", script: ehlo502, cfg: Config{TLS: TLSStartTLS, TLSConfig: &tls.Config{}}, reply: &ReplyError{"EHLO", Reply{502, "5.5.2", "what?"}}},
		{name: "starttls refused", greeting: "220 x", script: noTLS, cfg: Config{TLS: TLSStartTLS, TLSConfig: &tls.Config{}}, reply: &ReplyError{"STARTTLS", Reply{454, "4.7.0", "TLS not available"}}},
		{name: "ehlo with space", greeting: "220 x", cfg: Config{EHLO: "a b"}},
		{name: "tls without config", greeting: "220 x", cfg: Config{TLS: TLSImplicit}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.script == nil {
				tc.script = func(string) string { return "250 ok" }
			}
			addr := scripted(t, tc.greeting, tc.script)
			if tc.cfg.EHLO == "" {
				tc.cfg.EHLO = "client.test"
			}
			c, err := Dial(testCtx(t), addr, &tc.cfg)
			var re *ReplyError
			switch {
			case tc.reply != nil:
				if !errors.As(err, &re) || *re != *tc.reply {
					t.Fatalf("got %v, want %v", err, tc.reply)
				}
			case tc.err != nil:
				if !errors.Is(err, tc.err) {
					t.Fatalf("got %v, want %v", err, tc.err)
				}
			case tc.name == "helo fallback":
				if err != nil {
					t.Fatal(err)
				}
				if len(c.Extensions()) != 0 {
					t.Errorf("extensions after HELO: %v", c.Extensions())
				}
				c.Close()
			default:
				if err == nil {
					c.Close()
					t.Fatal("no error")
				}
			}
		})
	}

	t.Run("closed port", func(t *testing.T) {
		if _, err := Dial(testCtx(t), closed, &Config{EHLO: "client.test"}); !errors.Is(err, ErrDial) {
			t.Fatalf("got %v, want ErrDial", err)
		}
	})
	t.Run("cancelled during setup", func(t *testing.T) {
		addr := scripted(t, "220-slow", func(string) string { return "" })
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := Dial(ctx, addr, &Config{EHLO: "client.test"})
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
			t.Fatalf("after %v: %v", time.Since(start), err)
		}
	})
}

func TestReplies(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply string // To RSET.
		want  Reply
		err   bool // ErrProtocol.
	}{
		{"plain", "250 ok", Reply{250, "", "ok"}, false},
		{"enhanced", "250 2.1.0 ok", Reply{250, "2.1.0", "ok"}, false},
		{"multi-line", "550-5.7.1 first line\r\n550 5.7.1 second line", Reply{550, "5.7.1", "first line second line"}, false},
		{"multi-line without enhanced codes", "421-a\r\n421-b\r\n421 c", Reply{421, "", "a b c"}, false},
		{"code only", "250", Reply{250, "", ""}, false},
		{"enhanced only", "451 4.3.0", Reply{451, "4.3.0", ""}, false},
		{"enhanced of another class", "250 5.1.1 odd", Reply{250, "", "5.1.1 odd"}, false},
		{"not enhanced", "250 2.1 two", Reply{250, "", "2.1 two"}, false},
		{"bare LF", "250 ok\n", Reply{250, "", "ok"}, false},
		{"codes differ", "250-a\r\n251 b", Reply{}, true},
		{"not a reply", "hello?", Reply{}, true},
		{"code out of range", "199 x", Reply{}, true},
		{"no separator", "250x", Reply{}, true},
		{"line too long", "250 " + strings.Repeat("x", maxReplyLine), Reply{}, true},
		{"too many lines", strings.Repeat("250-x\r\n", maxReplyLines) + "250 x", Reply{}, true},
		{"bare CR in text", "250 ok\rinjected", Reply{}, true},
		{"control character", "250 ok\x1b[2J", Reply{}, true},
		{"tab", "250 ok\tthere", Reply{250, "", "ok\tthere"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := scripted(t, "220 x", func(cmd string) string {
				if cmd == "RSET" {
					return tc.reply
				}
				return "250 ok"
			})
			c := dial(t, addr, &Config{})
			r, err := c.Reset()
			if tc.err {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("got %v, %v; want ErrProtocol", r, err)
				}
				return
			}
			if err != nil || r != tc.want {
				t.Fatalf("got %#v, %v; want %#v", r, err, tc.want)
			}
		})
	}
	if s := (Reply{550, "5.1.1", "no such user"}).String(); s != "550 5.1.1 no such user" {
		t.Errorf("String: %q", s)
	}
}

func TestDeadlines(t *testing.T) {
	silent := func(cmd string) string {
		if strings.HasPrefix(cmd, "MAIL") {
			time.Sleep(2 * time.Second)
			return ""
		}
		return "250 ok"
	}
	t.Run("command timeout", func(t *testing.T) {
		addr := scripted(t, "220 x", silent)
		c := dial(t, addr, &Config{Timeouts: Timeouts{Command: 200 * time.Millisecond}})
		start := time.Now()
		_, err := c.Mail("a@example.org", nil)
		if !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) > time.Second {
			t.Fatalf("after %v: %v", time.Since(start), err)
		}
	})
	t.Run("bind", func(t *testing.T) {
		addr := scripted(t, "220 x", silent)
		c := dial(t, addr, &Config{})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		unbind := c.Bind(ctx)
		start := time.Now()
		if _, err := c.Mail("a@example.org", nil); err == nil || time.Since(start) > time.Second {
			t.Fatalf("after %v: %v", time.Since(start), err)
		}
		if unbind() {
			t.Error("unbind reports the context was not done")
		}
	})
	t.Run("unbind", func(t *testing.T) {
		addr := scripted(t, "220 x", func(string) string { return "250 ok" })
		c := dial(t, addr, &Config{})
		ctx, cancel := context.WithCancel(context.Background())
		unbind := c.Bind(ctx)
		if !unbind() {
			t.Fatal("unbind reports the context done")
		}
		cancel()
		r, err := c.Reset()
		want(t, "RSET after unbind and cancel", r, err, 250, "")
	})
}
