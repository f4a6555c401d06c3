package e2e

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// TestRejections: bad input gets its exact reply code, and none of it
// reaches the smarthost or stays in the queue.
func TestRejections(t *testing.T) {
	t.Parallel()
	sink := startSink(t, nil)
	srv := startServer(t, setup{MaxMessageSize: "10KB", Transports: map[string]string{"smarthost": sink.Addr}, Rest: defaultRest + `
[[routes]]
transport = "smarthost"
`})
	alice, pw := "alice@example.org", srv.Passwords["alice"]
	small := mtatest.MakeMessage(alice, "x@example.net", "small", 500)

	t.Run("bare-LF-in-DATA", func(t *testing.T) {
		for _, body := range []string{
			"Subject: smuggle\r\n\r\nline one\nline two\r\n",           // Bare LF.
			"Subject: smuggle\r\n\r\nline one\n.\r\nMAIL FROM:<x>\r\n", // Bare LF before a dot line.
			"Subject: smuggle\r\n\r\nline one\rline two\r\n",           // Bare CR.
		} {
			r := dialRaw(t, srv.Listeners["submission"])
			r.authPlain(alice, pw)
			r.cmd(250, "MAIL FROM:<%s>", alice)
			r.cmd(250, "RCPT TO:<x@example.net>")
			r.cmd(354, "DATA")
			r.write([]byte(body + ".\r\n"))
			msg := r.expect(500)
			if !strings.HasPrefix(msg, "5.5.2 ") {
				t.Errorf("body %q: reply 500 %q, want 500 5.5.2", body, msg)
			}
			// The session goes on: the next transaction works.
			r.cmd(250, "RSET")
			r.cmd(250, "MAIL FROM:<%s>", alice)
		}
	})

	t.Run("oversize-DATA", func(t *testing.T) {
		c := dialAuth(t, srv.Listeners["submission"], false, alice, pw)
		big := mtatest.MakeMessage(alice, "x@example.net", "big", 20<<10)
		err := send(c, alice, []string{"x@example.net"}, big)
		wantSMTPError(t, "20 KB message, limit 10 KB", err, 552, smtp.EnhancedCode{5, 3, 4})
	})

	t.Run("oversize-SIZE-parameter", func(t *testing.T) {
		c := dialAuth(t, srv.Listeners["submission"], false, alice, pw)
		err := c.Mail(alice, &smtp.MailOptions{Size: 20 << 10})
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 552 {
			t.Fatalf("MAIL FROM SIZE=20480, limit 10 KB: %v, want 552", err)
		}
	})

	t.Run("MAIL-without-AUTH", func(t *testing.T) {
		c, err := mtatest.Dial(srv.Listeners["submission"], false, true)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wantSMTPError(t, "MAIL before AUTH", c.Mail(alice, nil), 530, smtp.EnhancedCode{5, 7, 0})
	})

	t.Run("MAIL-without-AUTH-implicit-TLS", func(t *testing.T) {
		c, err := mtatest.Dial(srv.Listeners["submissions"], true, false)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wantSMTPError(t, "MAIL before AUTH", c.Mail(alice, nil), 530, smtp.EnhancedCode{5, 7, 0})
	})

	t.Run("MAIL-FROM-another-account", func(t *testing.T) {
		c := dialAuth(t, srv.Listeners["submission"], false, alice, pw)
		for _, from := range []string{"bob@example.org", "alice@elsewhere.example", ""} {
			wantSMTPError(t, "MAIL FROM:<"+from+"> as alice", c.Mail(from, nil), 553, smtp.EnhancedCode{5, 7, 1})
			c.Reset()
		}
	})

	t.Run("wrong-password", func(t *testing.T) {
		c, err := mtatest.Dial(srv.Listeners["submission"], false, true)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wantSMTPError(t, "AUTH with a wrong password", c.Auth(sasl.NewPlainClient("", alice, "wrong-password")), 535, smtp.EnhancedCode{5, 7, 8})
	})

	t.Run("MX-refuses-relaying", func(t *testing.T) {
		c, err := mtatest.Dial(srv.Listeners["mx"], false, false)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Mail("someone@sender.example", nil); err != nil {
			t.Fatal(err)
		}
		wantSMTPError(t, "RCPT to a foreign domain on the MX", c.Rcpt("x@example.net", nil), 550, smtp.EnhancedCode{5, 7, 1})
		if _, err := c.Data(); err == nil {
			t.Errorf("DATA without recipients accepted")
		}
	})

	// Nothing of the above was queued or relayed.
	waitQueueEmpty(t, srv)
	// A message sent now arrives alone, after anything queued before.
	submit(t, srv, alice, []string{"last@example.net"}, small)
	if n := sink.WaitCount(1, waitShort); n != 1 {
		t.Fatalf("sink has %d messages, want 1", n)
	}
	time.Sleep(200 * time.Millisecond)
	if n := sink.Count(); n != 1 || !bytes.HasSuffix(sink.Messages()[0].Data, small) {
		t.Errorf("sink has %d messages, want only the last one", n)
	}
}
