package dsn

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
)

const (
	origHeader = "From: Alice <alice@example.org>\r\n" +
		"To: bob@example.net\r\n" +
		"Subject: Lunch on Friday\r\n" +
		"Message-ID: <m1@example.org>\r\n" +
		"References: <r0@example.org>\r\n <r1@example.org>\r\n" +
		"Date: Mon, 02 Mar 2026 10:00:00 +0100\r\n"
	origMsg = origHeader + "\r\nHello Bob,\r\nlunch?\r\n"
)

var (
	now     = time.Date(2026, 3, 3, 12, 0, 0, 0, time.UTC)
	arrival = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
)

// notification returns a failure for bob@example.net of origMsg, changed by mod.
func notification(mod func(n *Notification)) Notification {
	n := Notification{
		Kind:         Failure,
		ReportingMTA: "mx.example.org",
		From:         "postmaster@example.org",
		To:           "alice@example.org",
		EnvelopeID:   "env-42",
		Arrival:      arrival,
		Recipients: []Recipient{{
			Recipient:   sdk.Recipient{Address: "bob@example.net", ORcpt: "rfc822;Bob@example.net"},
			Result:      sdk.RecipientResult{Address: "bob@example.net", Status: sdk.StatusPermanent, Code: 550, EnhancedCode: "5.1.1", Text: "no such user", RemoteHost: "mx.example.net.", RemoteIP: "192.0.2.7"},
			LastAttempt: now.Add(-time.Minute),
		}},
		Original:  strings.NewReader(origMsg),
		Now:       now,
		MessageID: "<dsn1@mx.example.org>",
	}
	if mod != nil {
		mod(&n)
	}
	return n
}

func rcpt(addr string, notify ...string) Recipient {
	return Recipient{
		Recipient: sdk.Recipient{Address: addr, Notify: notify},
		Result:    sdk.RecipientResult{Code: 451, EnhancedCode: "4.4.2", Text: "timeout", RemoteHost: "mx.example.net"},
	}
}

// dsn is a composed DSN parsed back.
type dsn struct {
	hdr     mail.Header
	params  map[string]string // Of the top Content-Type.
	parts   []part
	perMsg  textproto.MIMEHeader
	perRcpt []textproto.MIMEHeader
}

type part struct {
	ct, cte string
	body    []byte // Decoded.
}

func (d *dsn) text() string { return string(d.parts[0].body) }

func (d *dsn) finalRecipients() []string {
	var l []string
	for _, h := range d.perRcpt {
		l = append(l, h.Get("Final-Recipient"))
	}
	return l
}

// parse checks the lines of a DSN (RFC 5322 §2.1.1, 7-bit body) and parses it
// with net/mail and mime/multipart.
func parse(t *testing.T, out []byte) *dsn {
	t.Helper()
	checkLines(t, out)
	msg, err := mail.ReadMessage(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("net/mail: %v\n%s", err, out)
	}
	// 7-bit but for a To with a UTF-8 address (RFC 6532).
	head, body, _ := bytes.Cut(out, []byte("\r\n\r\n"))
	if !isASCII(string(body)) {
		t.Errorf("body is not 7-bit")
	}
	inTo := false // In the To field, folded or not.
	for line := range strings.Lines(string(head)) {
		if line[0] != ' ' && line[0] != '\t' {
			inTo = strings.HasPrefix(line, "To:")
		}
		if !isASCII(line) && !inTo {
			t.Errorf("header line not 7-bit: %q", line)
		}
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" {
		t.Fatalf("Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	d := &dsn{hdr: msg.Header, params: params}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("multipart: %v", err)
		}
		raw, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("read part: %v", err)
		}
		pt := part{ct: p.Header.Get("Content-Type"), cte: p.Header.Get("Content-Transfer-Encoding"), body: raw}
		switch pt.cte {
		case "quoted-printable":
			if pt.body, err = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw))); err != nil {
				t.Fatalf("quoted-printable: %v", err)
			}
		case "base64":
			if pt.body, err = base64.StdEncoding.DecodeString(strings.ReplaceAll(string(raw), "\r\n", "")); err != nil {
				t.Fatalf("base64: %v", err)
			}
		case "7bit":
		default:
			t.Fatalf("part %s: Content-Transfer-Encoding %q", pt.ct, pt.cte)
		}
		d.parts = append(d.parts, pt)
	}
	if len(d.parts) < 2 {
		t.Fatalf("%d parts", len(d.parts))
	}
	for i, group := range strings.Split(strings.TrimRight(string(d.parts[1].body), "\r\n"), "\r\n\r\n") {
		h, err := textproto.NewReader(bufio.NewReader(strings.NewReader(group + "\r\n\r\n"))).ReadMIMEHeader()
		if err != nil {
			t.Fatalf("delivery-status group %d: %v\n%s", i, err, group)
		}
		if i == 0 {
			d.perMsg = h
		} else {
			d.perRcpt = append(d.perRcpt, h)
		}
	}
	return d
}

// checkLines checks that every line ends in CRLF and has at most 998 octets
// (RFC 5322 §2.1.1).
func checkLines(t *testing.T, out []byte) {
	t.Helper()
	if !bytes.HasSuffix(out, []byte("\r\n")) {
		t.Errorf("no CRLF at the end")
	}
	for i, line := range bytes.SplitAfter(out, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if !bytes.HasSuffix(line, []byte("\r\n")) || bytes.Count(line, []byte("\r")) != 1 {
			t.Errorf("line %d: bare CR or LF: %q", i+1, line)
		}
		if n := len(line) - 2; n > 998 {
			t.Errorf("line %d: %d octets", i+1, n)
		}
	}
}

func TestCompose(t *testing.T) {
	huge := origHeader + "\r\n" + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 300<<10/66)
	utf8Msg := "From: Jörg <jörg@example.org>\r\nSubject: Grüße aus Köln – Tagesordnung für das Treffen der Arbeitsgruppe am Freitag\r\nMessage-ID: <u1@example.org>\r\n\r\nBis bald, Jörg\r\n"
	var manyRefs []string
	for i := range 30 {
		manyRefs = append(manyRefs, "<r"+string(rune('a'+i))+"@example.org>")
	}
	readErr := errors.New("disk on fire")

	tests := []struct {
		name    string
		n       Notification
		wantErr error // Compared with errors.Is; errAny: any error.
		check   func(t *testing.T, d *dsn)
	}{
		{
			name: "failure returns the full message",
			n:    notification(nil),
			check: func(t *testing.T, d *dsn) {
				want := map[string]string{
					"Subject":        "Delivery Status Notification (Failure): Lunch on Friday",
					"Message-Id":     "<dsn1@mx.example.org>",
					"In-Reply-To":    "<m1@example.org>",
					"References":     "<r0@example.org> <r1@example.org> <m1@example.org>",
					"Auto-Submitted": "auto-replied",
					"Mime-Version":   "1.0",
				}
				for k, v := range want {
					if got := d.hdr.Get(k); got != v {
						t.Errorf("%s: %q, want %q", k, got, v)
					}
				}
				if from, err := d.hdr.AddressList("From"); err != nil || len(from) != 1 || from[0].Name != "Mail Delivery Subsystem" || from[0].Address != "postmaster@example.org" {
					t.Errorf("From %q: %v", d.hdr.Get("From"), err)
				}
				if to, err := d.hdr.AddressList("To"); err != nil || len(to) != 1 || to[0].Address != "alice@example.org" {
					t.Errorf("To %q: %v", d.hdr.Get("To"), err)
				}
				if date, err := d.hdr.Date(); err != nil || !date.Equal(now) {
					t.Errorf("Date %q: %v", d.hdr.Get("Date"), err)
				}
				if d.params["report-type"] != "delivery-status" {
					t.Errorf("report-type %q", d.params["report-type"])
				}
				wantParts := []part{
					{ct: "text/plain; charset=utf-8", cte: "7bit"},
					{ct: "message/delivery-status", cte: "7bit"},
					{ct: "message/rfc822", cte: "7bit", body: []byte(origMsg)},
				}
				checkParts(t, d, wantParts)
				wantMsg := textproto.MIMEHeader{
					"Original-Envelope-Id": {"env-42"},
					"Reporting-Mta":        {"dns; mx.example.org"},
					"Arrival-Date":         {"Mon, 02 Mar 2026 09:00:00 +0000"},
				}
				checkFields(t, "per-message", d.perMsg, wantMsg)
				if len(d.perRcpt) != 1 {
					t.Fatalf("%d recipients", len(d.perRcpt))
				}
				checkFields(t, "per-recipient", d.perRcpt[0], textproto.MIMEHeader{
					"Original-Recipient": {"rfc822; Bob@example.net"},
					"Final-Recipient":    {"rfc822; bob@example.net"},
					"Action":             {"failed"},
					"Status":             {"5.1.1"},
					"Remote-Mta":         {"dns; mx.example.net"},
					"Diagnostic-Code":    {"smtp; 550 5.1.1 no such user"},
					"Last-Attempt-Date":  {"Tue, 03 Mar 2026 11:59:00 +0000"},
				})
				checkText(t, d, "<bob@example.net>", "mx.example.net [192.0.2.7] answered: 550 5.1.1 no such user",
					"Last attempt: Tue, 03 Mar 2026 11:59:00 +0000.",
					"does not exist", "will not try again", "Your message is attached.")
			},
		},
		{
			name: "delay returns the headers",
			n: notification(func(n *Notification) {
				n.Kind = Delay
				n.Recipients[0].Result = sdk.RecipientResult{Code: 421, EnhancedCode: "4.4.2", Text: "try later", RemoteHost: "mx.example.net"}
				n.Recipients[0].WillRetryUntil = now.Add(48 * time.Hour)
			}),
			check: func(t *testing.T, d *dsn) {
				if got, want := d.hdr.Get("Subject"), "Delivery Status Notification (Delay): Lunch on Friday"; got != want {
					t.Errorf("Subject %q, want %q", got, want)
				}
				checkParts(t, d, []part{
					{ct: "text/plain; charset=utf-8", cte: "7bit"},
					{ct: "message/delivery-status", cte: "7bit"},
					{ct: "text/rfc822-headers", cte: "7bit", body: []byte(origHeader)},
				})
				checkFields(t, "per-recipient", d.perRcpt[0], textproto.MIMEHeader{
					"Action":           {"delayed"},
					"Status":           {"4.4.2"},
					"Diagnostic-Code":  {"smtp; 421 4.4.2 try later"},
					"Will-Retry-Until": {"Thu, 05 Mar 2026 12:00:00 +0000"},
				})
				checkText(t, d, "not been delivered yet", "tried until Thu, 05 Mar 2026", "could not be reached",
					"The headers of your message are attached.")
			},
		},
		{
			name: "delay with RET=FULL",
			n:    notification(func(n *Notification) { n.Kind = Delay; n.Return = "FULL" }),
			check: func(t *testing.T, d *dsn) {
				checkParts(t, d, []part{{}, {}, {ct: "message/rfc822", cte: "7bit", body: []byte(origMsg)}})
				checkFields(t, "per-recipient", d.perRcpt[0], textproto.MIMEHeader{"Action": {"delayed"}, "Status": {"4.0.0"}})
				if v := d.perRcpt[0].Get("Will-Retry-Until"); v != "" {
					t.Errorf("Will-Retry-Until %q without a time", v)
				}
			},
		},
		{
			name: "failure with RET=HDRS",
			n:    notification(func(n *Notification) { n.Return = "hdrs" }),
			check: func(t *testing.T, d *dsn) {
				checkParts(t, d, []part{{}, {}, {ct: "text/rfc822-headers", cte: "7bit", body: []byte(origHeader)}})
				checkText(t, d, "The headers of your message are attached.")
			},
		},
		{
			name: "NOTIFY filters failures",
			n: notification(func(n *Notification) {
				n.Recipients = []Recipient{rcpt("a@x.example"), rcpt("b@x.example", "NEVER"), rcpt("c@x.example", "SUCCESS"),
					rcpt("d@x.example", "FAILURE"), rcpt("e@x.example", "DELAY"), rcpt("f@x.example", "success", "failure")}
			}),
			check: func(t *testing.T, d *dsn) {
				want := []string{"rfc822; a@x.example", "rfc822; d@x.example", "rfc822; f@x.example"}
				if got := d.finalRecipients(); !slices.Equal(got, want) {
					t.Errorf("recipients %q, want %q", got, want)
				}
				checkText(t, d, "<a@x.example>", "<d@x.example>", "<f@x.example>")
				if strings.Contains(d.text(), "b@x.example") || strings.Contains(d.text(), "e@x.example") {
					t.Errorf("text names a recipient not reported:\n%s", d.text())
				}
				// A 4.x.x code that persisted until the queue gave up stays (RFC 3463 X.4.7).
				checkFields(t, "per-recipient", d.perRcpt[0], textproto.MIMEHeader{"Action": {"failed"}, "Status": {"4.4.2"}})
			},
		},
		{
			name: "NOTIFY filters delays",
			n: notification(func(n *Notification) {
				n.Kind = Delay
				n.Recipients = []Recipient{rcpt("a@x.example"), rcpt("b@x.example", "NEVER"), rcpt("c@x.example", "SUCCESS"),
					rcpt("d@x.example", "FAILURE"), rcpt("e@x.example", "Delay", "FAILURE")}
			}),
			check: func(t *testing.T, d *dsn) {
				want := []string{"rfc822; a@x.example", "rfc822; e@x.example"}
				if got := d.finalRecipients(); !slices.Equal(got, want) {
					t.Errorf("recipients %q, want %q", got, want)
				}
			},
		},
		{
			name: "nothing to report",
			n: notification(func(n *Notification) {
				n.Recipients = []Recipient{rcpt("a@x.example", "NEVER"), rcpt("b@x.example", "DELAY", "SUCCESS")}
			}),
			wantErr: ErrNothingToReport,
		},
		{
			name:    "no recipients",
			n:       notification(func(n *Notification) { n.Recipients = nil }),
			wantErr: ErrNothingToReport,
		},
		{
			name:    "null sender",
			n:       notification(func(n *Notification) { n.To = "" }),
			wantErr: ErrNullSender,
		},
		{
			name:    "header injection",
			n:       notification(func(n *Notification) { n.To = "alice@example.org\r\nBcc: eve@example.com" }),
			wantErr: errAny,
		},
		{
			// Found by FuzzNotification: a long run of continuation bytes
			// made the text wrap panic (index -1); as a Message-ID or
			// default From, the fold loop forever (a seed of the target),
			// finding no character boundary to split at.
			name:    "invalid UTF-8 reporting MTA",
			n:       notification(func(n *Notification) { n.ReportingMTA = strings.Repeat("\x80", 1000) }),
			wantErr: errAny,
		},
		{
			// Found by FuzzNotification: a U-label hostname (config allows
			// one) made From and Message-ID 8-bit, for a DSN that a caller
			// sends without SMTPUTF8 when the sender is ASCII.
			name: "internationalized reporting MTA as its A-label",
			n:    notification(func(n *Notification) { n.From, n.MessageID, n.ReportingMTA = "", "", "mx.bücher.example" }),
			check: func(t *testing.T, d *dsn) {
				if from, err := d.hdr.AddressList("From"); err != nil || from[0].Address != "postmaster@mx.xn--bcher-kva.example" {
					t.Errorf("From %q: %v", d.hdr.Get("From"), err)
				}
				if v := d.hdr.Get("Message-Id"); !strings.HasSuffix(v, "@mx.xn--bcher-kva.example>") {
					t.Errorf("Message-ID %q", v)
				}
				checkFields(t, "per-message", d.perMsg, textproto.MIMEHeader{"Reporting-Mta": {"dns; mx.xn--bcher-kva.example"}})
				checkParts(t, d, []part{{}, {ct: "message/delivery-status", cte: "7bit"}, {}})
			},
		},
		{
			name:    "Message-ID not ASCII",
			n:       notification(func(n *Notification) { n.MessageID = "<ü@mx.example.org>" }),
			wantErr: errAny,
		},
		{
			name:    "invalid UTF-8 sender",
			n:       notification(func(n *Notification) { n.To = "al\xffice@example.org" }),
			wantErr: errAny,
		},
		{
			name:    "no reporting MTA",
			n:       notification(func(n *Notification) { n.ReportingMTA = "" }),
			wantErr: errAny,
		},
		{
			name:    "unknown kind",
			n:       notification(func(n *Notification) { n.Kind = 7 }),
			wantErr: errAny,
		},
		{
			name:    "original unreadable",
			n:       notification(func(n *Notification) { n.Original = iotest.ErrReader(readErr) }),
			wantErr: readErr,
		},
		{
			name: "non-ASCII subject and 8-bit original",
			n:    notification(func(n *Notification) { n.Original = strings.NewReader(utf8Msg) }),
			check: func(t *testing.T, d *dsn) {
				raw := d.hdr.Get("Subject")
				if !isASCII(raw) || !strings.Contains(raw, "=?utf-8?") {
					t.Errorf("Subject not RFC 2047-encoded: %q", raw)
				}
				got, err := new(mime.WordDecoder).DecodeHeader(raw)
				want := "Delivery Status Notification (Failure): Grüße aus Köln – Tagesordnung für das Treffen der Arbeitsgruppe am Freitag"
				if err != nil || got != want {
					t.Errorf("Subject decodes to %q (%v), want %q", got, err, want)
				}
				checkParts(t, d, []part{{}, {ct: "message/delivery-status"}, {ct: "message/global", cte: "base64", body: []byte(utf8Msg)}})
				if v := d.hdr.Get("In-Reply-To"); v != "<u1@example.org>" {
					t.Errorf("In-Reply-To %q", v)
				}
			},
		},
		{
			name: "8-bit headers returned as message/global-headers",
			n: notification(func(n *Notification) {
				n.Original = strings.NewReader(utf8Msg)
				n.Return = "HDRS"
			}),
			check: func(t *testing.T, d *dsn) {
				hdr, _, _ := strings.Cut(utf8Msg, "\r\n\r\n")
				checkParts(t, d, []part{{}, {}, {ct: "message/global-headers", cte: "base64", body: []byte(hdr + "\r\n")}})
			},
		},
		{
			name: "RFC 2047 subject of the original",
			n: notification(func(n *Notification) {
				n.Original = strings.NewReader("Subject: =?iso-8859-1?q?Gr=FC=DFe?=\r\n =?utf-8?q?_und_mehr?=\r\n\r\nx\r\n")
			}),
			check: func(t *testing.T, d *dsn) {
				got, err := new(mime.WordDecoder).DecodeHeader(d.hdr.Get("Subject"))
				if want := "Delivery Status Notification (Failure): Grüße und mehr"; err != nil || got != want {
					t.Errorf("Subject decodes to %q (%v), want %q", got, err, want)
				}
				checkParts(t, d, []part{{}, {}, {ct: "message/rfc822"}})
			},
		},
		{
			name: "original without Message-ID",
			n: notification(func(n *Notification) {
				n.Original = strings.NewReader("From: alice@example.org\r\nSubject: hi\r\n\r\nbody\r\n")
			}),
			check: func(t *testing.T, d *dsn) {
				for _, k := range []string{"In-Reply-To", "References"} {
					if v, ok := d.hdr[k]; ok {
						t.Errorf("%s: %q", k, v)
					}
				}
				if v := d.hdr.Get("Subject"); v != "Delivery Status Notification (Failure): hi" {
					t.Errorf("Subject %q", v)
				}
			},
		},
		{
			name: "original with References but without Message-ID",
			n: notification(func(n *Notification) {
				n.Original = strings.NewReader("In-Reply-To: <p@example.org>\r\n\r\nbody\r\n")
			}),
			check: func(t *testing.T, d *dsn) {
				if _, ok := d.hdr["In-Reply-To"]; ok {
					t.Errorf("In-Reply-To %q", d.hdr.Get("In-Reply-To"))
				}
				if v := d.hdr.Get("References"); v != "<p@example.org>" {
					t.Errorf("References %q", v)
				}
				if v := d.hdr.Get("Subject"); v != "Delivery Status Notification (Failure)" {
					t.Errorf("Subject %q", v)
				}
			},
		},
		{
			name: "long References are shortened",
			n: notification(func(n *Notification) {
				n.Original = strings.NewReader("Message-ID: <last@example.org>\r\nReferences: " + strings.Join(manyRefs, "\r\n ") + "\r\n\r\nx\r\n")
			}),
			check: func(t *testing.T, d *dsn) {
				refs := strings.Fields(d.hdr.Get("References"))
				want := append(append([]string{manyRefs[0]}, manyRefs[len(manyRefs)-maxRefs+2:]...), "<last@example.org>")
				if !slices.Equal(refs, want) {
					t.Errorf("References %q, want %q", refs, want)
				}
			},
		},
		{
			name: "huge original truncated to headers",
			n:    notification(func(n *Notification) { n.Original = strings.NewReader(huge) }),
			check: func(t *testing.T, d *dsn) {
				if len(huge) <= MaxReturn {
					t.Fatalf("original of %d bytes is not huge", len(huge))
				}
				checkParts(t, d, []part{{}, {}, {ct: "text/rfc822-headers", cte: "7bit", body: []byte(origHeader)}})
				checkText(t, d, "larger than 256 KiB: only its headers are attached.")
				if v := d.hdr.Get("In-Reply-To"); v != "<m1@example.org>" {
					t.Errorf("In-Reply-To %q", v)
				}
			},
		},
		{
			name: "malformed original",
			n: notification(func(n *Notification) {
				n.Original = strings.NewReader("garbage without colon\nSubject: hi\n  there\nMessage-Id: x@y.example\n: no name\nbody without blank line\x00\xff")
			}),
			check: func(t *testing.T, d *dsn) {
				if v := d.hdr.Get("In-Reply-To"); v != "<x@y.example>" {
					t.Errorf("In-Reply-To %q", v)
				}
				if v := d.hdr.Get("Subject"); v != "Delivery Status Notification (Failure): hi there" {
					t.Errorf("Subject %q", v)
				}
				checkParts(t, d, []part{{}, {}, {ct: "message/global", cte: "base64"}})
			},
		},
		{
			name: "non-ASCII recipient and sender",
			n: notification(func(n *Notification) {
				n.To = "jörg@example.org"
				n.Recipients[0].Address = "bjørn@example.net"
				n.Recipients[0].ORcpt = "utf-8;bjørn@example.net"
				n.Recipients[0].Result.Text = "Postfach unbekannt"
			}),
			check: func(t *testing.T, d *dsn) {
				checkParts(t, d, []part{
					{ct: "text/plain; charset=utf-8", cte: "quoted-printable"},
					{ct: "message/global-delivery-status", cte: "quoted-printable"},
					{ct: "message/rfc822"},
				})
				checkFields(t, "per-recipient", d.perRcpt[0], textproto.MIMEHeader{
					"Original-Recipient": {"utf-8; bjørn@example.net"},
					"Final-Recipient":    {"utf-8; bjørn@example.net"},
				})
				if to, err := d.hdr.AddressList("To"); err != nil || to[0].Address != "jörg@example.org" {
					t.Errorf("To %q: %v", d.hdr.Get("To"), err)
				}
				checkText(t, d, "<bjørn@example.net>")
			},
		},
		{
			name: "defaults without a reply",
			n: notification(func(n *Notification) {
				n.From, n.MessageID, n.EnvelopeID, n.Arrival = "", "", "", time.Time{}
				n.Recipients = []Recipient{
					{Recipient: sdk.Recipient{Address: "a@x.example"}, Result: sdk.RecipientResult{Text: "transport smarthost unavailable"}},
					{Recipient: sdk.Recipient{Address: "b@x.example"}, Result: sdk.RecipientResult{Code: 554, RemoteIP: "2001:db8::1"}},
					{Recipient: sdk.Recipient{Address: "c@x.example"}, Result: sdk.RecipientResult{Code: 250, EnhancedCode: "2.0.0", RemoteIP: "192.0.2.1"}},
				}
			}),
			check: func(t *testing.T, d *dsn) {
				if from, err := d.hdr.AddressList("From"); err != nil || from[0].Address != "postmaster@mx.example.org" {
					t.Errorf("From %q: %v", d.hdr.Get("From"), err)
				}
				if v := d.hdr.Get("Message-Id"); !regexp.MustCompile(`^<[0-9a-f]{32}@mx\.example\.org>$`).MatchString(v) {
					t.Errorf("Message-ID %q", v)
				}
				for _, k := range []string{"Original-Envelope-Id", "Arrival-Date"} {
					if v, ok := d.perMsg[k]; ok {
						t.Errorf("%s: %q", k, v)
					}
				}
				if len(d.perRcpt) != 3 {
					t.Fatalf("%d recipients", len(d.perRcpt))
				}
				checkFields(t, "a", d.perRcpt[0], textproto.MIMEHeader{"Status": {"5.0.0"}})
				for _, k := range []string{"Diagnostic-Code", "Remote-Mta", "Last-Attempt-Date", "Original-Recipient"} {
					if v, ok := d.perRcpt[0][k]; ok {
						t.Errorf("a: %s: %q", k, v)
					}
				}
				checkFields(t, "b", d.perRcpt[1], textproto.MIMEHeader{"Status": {"5.0.0"}, "Diagnostic-Code": {"smtp; 554"}, "Remote-Mta": {"dns; [IPv6:2001:db8::1]"}})
				checkFields(t, "c", d.perRcpt[2], textproto.MIMEHeader{"Status": {"5.0.0"}, "Remote-Mta": {"dns; [192.0.2.1]"}})
				checkText(t, d, "Delivery failed: transport smarthost unavailable", "forward this report to your mail administrator")
			},
		},
		{
			name: "delay keeps a delay status",
			n: notification(func(n *Notification) {
				n.Kind = Delay
				n.Recipients[0].Result.EnhancedCode = "5.1.1"
			}),
			check: func(t *testing.T, d *dsn) {
				checkFields(t, "per-recipient", d.perRcpt[0], textproto.MIMEHeader{"Status": {"4.0.0"}, "Action": {"delayed"}})
			},
		},
		{
			name: "long diagnostic text is folded",
			n: notification(func(n *Notification) {
				n.Recipients[0].Result.Text = strings.Repeat("x", 2500) + strings.Repeat(" word", 300) + "\r\nsecond line"
			}),
			check: func(t *testing.T, d *dsn) {
				// Lines are checked by parse; the words stay in order.
				v := d.perRcpt[0].Get("Diagnostic-Code")
				if !strings.HasPrefix(v, "smtp; 550 5.1.1 xxxx") || !strings.HasSuffix(v, "word word second line") {
					t.Errorf("Diagnostic-Code %.60q...%q", v, v[max(0, len(v)-40):])
				}
				checkText(t, d, "word word second line")
			},
		},
		{
			name: "no original",
			n:    notification(func(n *Notification) { n.Original = nil }),
			check: func(t *testing.T, d *dsn) {
				checkParts(t, d, []part{{ct: "text/plain; charset=utf-8"}, {ct: "message/delivery-status"}})
				if _, ok := d.hdr["In-Reply-To"]; ok {
					t.Errorf("In-Reply-To without an original")
				}
				if strings.Contains(d.text(), "attached") {
					t.Errorf("text mentions an attachment:\n%s", d.text())
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Compose(tc.n)
			if tc.wantErr != nil {
				if err == nil || tc.wantErr != errAny && !errors.Is(err, tc.wantErr) {
					t.Fatalf("error %v, want %v", err, tc.wantErr)
				}
				if out != nil {
					t.Errorf("output with an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Compose: %v", err)
			}
			d := parse(t, out)
			tc.check(t, d)
			if t.Failed() {
				t.Logf("DSN:\n%s", out)
			}
		})
	}
}

var errAny = errors.New("any error")

// checkParts compares the parts with want; empty fields of want are not compared.
func checkParts(t *testing.T, d *dsn, want []part) {
	t.Helper()
	if len(d.parts) != len(want) {
		t.Fatalf("%d parts, want %d", len(d.parts), len(want))
	}
	for i, w := range want {
		p := d.parts[i]
		if w.ct != "" && p.ct != w.ct {
			t.Errorf("part %d: Content-Type %q, want %q", i+1, p.ct, w.ct)
		}
		if w.cte != "" && p.cte != w.cte {
			t.Errorf("part %d: Content-Transfer-Encoding %q, want %q", i+1, p.cte, w.cte)
		}
		if w.body != nil && !bytes.Equal(p.body, w.body) {
			t.Errorf("part %d: body\n%q\nwant\n%q", i+1, p.body, w.body)
		}
	}
}

func checkFields(t *testing.T, what string, h, want textproto.MIMEHeader) {
	t.Helper()
	for k, v := range want {
		if got := h.Values(k); !slices.Equal(got, v) {
			t.Errorf("%s: %s %q, want %q", what, k, got, v)
		}
	}
}

// checkText checks that the human-readable part, unwrapped, holds each of want.
func checkText(t *testing.T, d *dsn, want ...string) {
	t.Helper()
	text := strings.Join(strings.Fields(d.text()), " ")
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("text lacks %q:\n%s", w, d.text())
		}
	}
}
