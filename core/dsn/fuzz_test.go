package dsn

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
)

// FuzzCompose composes DSNs about hostile originals (any bytes: bare CR and
// LF, NUL, 8-bit, no header/body separator, huge headers) with hostile
// recipient addresses and remote reply texts (CRLF, header injection), and
// checks that the DSN is a well-formed report: CRLF lines of at most 998
// octets, no NUL, 7-bit unless the recipient needs UTF-8, a parsable
// multipart/report whose delivery-status part is header blocks, and no
// header of the DSN taken from the reply text.
func FuzzCompose(f *testing.F) {
	f.Add([]byte("From: a@example.org\r\nSubject: hi\r\nMessage-ID: <1@x>\r\n\r\nbody\r\n"), "bob@remote.example", "mailbox unavailable", "mx.remote.example", true)
	f.Add([]byte("Subject: =?utf-8?q?caf=C3=A9?=\nbare LF\rbare CR\x00NUL\r\n\r\n\xff\xfe"), "jörg@bücher.example", "ok\r\nX-Injected: 1", "", false)
	f.Add([]byte(strings.Repeat("X-Long: "+strings.Repeat("y", 2000)+"\r\n", 50)), "a\r\nBcc: c@d@e", "550 5.1.1\r\n\r\n--boundary", "mx\r\nX: y", true)
	f.Add([]byte(""), "", "", "", false)
	f.Add([]byte("no header separator at all"), "x@y", "\x00", "[192.0.2.1]", true)
	f.Fuzz(func(t *testing.T, orig []byte, rcpt, text, remote string, full bool) {
		ret := "HDRS"
		if full {
			ret = "FULL"
		}
		n := Notification{
			Kind:         Failure,
			ReportingMTA: "mail.example.org",
			To:           "sender@example.org",
			EnvelopeID:   text,
			Arrival:      time.Unix(1e9, 0),
			Recipients: []Recipient{{
				Recipient:   sdk.Recipient{Address: rcpt, ORcpt: "rfc822;" + rcpt},
				Result:      sdk.RecipientResult{Status: sdk.StatusPermanent, Code: 550, EnhancedCode: "5.1.1", Text: text, RemoteHost: remote},
				LastAttempt: time.Unix(1e9+60, 0),
			}},
			Original: bytes.NewReader(orig),
			Return:   ret,
			Now:      time.Unix(1e9+120, 0),
		}
		msg, err := Compose(n)
		if err != nil {
			t.Fatalf("Compose: %v", err)
		}
		checkDSNLines(t, msg, !isASCII(rcpt))
		m, err := mail.ReadMessage(bytes.NewReader(msg))
		if err != nil {
			t.Fatalf("DSN unreadable: %v\n%q", err, msg)
		}
		for k := range m.Header {
			switch textproto.CanonicalMIMEHeaderKey(k) {
			case "From", "To", "Subject", "Date", "Message-Id", "Mime-Version", "Content-Type", "Auto-Submitted", "In-Reply-To", "References":
			default:
				t.Fatalf("unexpected DSN header %q", k)
			}
		}
		mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
		if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
			t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
		}
		mr := multipart.NewReader(m.Body, params["boundary"])
		parts := 0
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("part %d: %v", parts, err)
			}
			body, err := io.ReadAll(p)
			if err != nil {
				t.Fatalf("part %d: %v", parts, err)
			}
			if parts == 1 {
				ct := p.Header.Get("Content-Type")
				if ct != "message/delivery-status" && ct != "message/global-delivery-status" {
					t.Fatalf("second part %q", ct)
				}
				if p.Header.Get("Content-Transfer-Encoding") == "" {
					checkStatus(t, body)
				}
			}
			parts++
		}
		if parts < 2 || parts > 3 {
			t.Fatalf("%d parts", parts)
		}
	})
}

// checkDSNLines checks that msg is CRLF lines of at most 998 octets
// without NUL, and 7-bit unless utf8.
func checkDSNLines(t *testing.T, msg []byte, utf8 bool) {
	t.Helper()
	if !bytes.HasSuffix(msg, []byte("\r\n")) {
		t.Fatal("DSN does not end in CRLF")
	}
	for i, line := range bytes.Split(msg[:len(msg)-2], []byte("\r\n")) {
		switch {
		case len(line) > 998:
			t.Fatalf("line %d of %d octets", i, len(line))
		case bytes.ContainsAny(line, "\r\n\x00"):
			t.Fatalf("line %d has a bare CR, LF or NUL: %q", i, line)
		case !utf8 && !isASCII(string(line)):
			t.Fatalf("line %d is 8-bit: %q", i, line)
		}
	}
}

// checkStatus checks that a delivery-status body is header blocks: the
// per-message fields, then one group per recipient.
func checkStatus(t *testing.T, body []byte) {
	t.Helper()
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(body)))
	groups := 0
	for {
		h, err := r.ReadMIMEHeader()
		if len(h) > 0 {
			groups++
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("delivery-status group %d: %v\n%q", groups, err, body)
		}
		if groups == 2 && (h.Get("Action") != "failed" || h.Get("Final-Recipient") == "") {
			t.Fatalf("recipient group %v", h)
		}
	}
	if groups != 2 {
		t.Fatalf("%d groups in delivery-status:\n%q", groups, body)
	}
}
