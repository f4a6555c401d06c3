package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/net/idna"

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

// Fields a DSN may have: in its header, and in the per-message and
// per-recipient groups of its delivery-status part (RFC 3464 §2.2–2.3).
// Anything else would have been injected by an input.
var (
	topFields = map[string]bool{"Date": true, "From": true, "To": true, "Subject": true, "Message-Id": true,
		"In-Reply-To": true, "References": true, "Auto-Submitted": true, "Mime-Version": true, "Content-Type": true}
	perMsgFields  = map[string]bool{"Original-Envelope-Id": true, "Reporting-Mta": true, "Arrival-Date": true}
	perRcptFields = map[string]bool{"Original-Recipient": true, "Final-Recipient": true, "Action": true, "Status": true,
		"Remote-Mta": true, "Diagnostic-Code": true, "Last-Attempt-Date": true, "Will-Retry-Until": true}
)

// badField says whether Compose must refuse s as a header value it uses
// as it is: a control character or invalid UTF-8.
func badField(s string) bool {
	return !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f })
}

// FuzzNotification composes a DSN with every field of the Notification
// hostile, beside the original: an original with bare CR
// or LF, NUL, 8-bit or overlong lines, no header/body separator; reply texts
// with CRLF injection attempts; odd addresses. The DSN must be refused only
// for the documented reasons, and else be a well-formed 7-bit
// multipart/report whose delivery-status part holds only its own fields,
// whose To is the sender and whose third part is the original, or its
// header section, byte for byte.
func FuzzNotification(f *testing.F) {
	f.Add([]byte(origMsg), "alice@example.org", "bob@example.net", "rfc822;Bob@example.net", "", "env-42", 550, "5.1.1",
		"no such user", "mx.example.net.", "192.0.2.7", "", false, "mx.example.org", "")
	f.Add([]byte(origHeader), "jörg@example.org", "bjørn@example.net", "utf-8;bjørn@example.net", "FAILURE,DELAY", "", 451, "4.4.2",
		"try later\r\nX-Injected: 1", "", "2001:db8::1", "FULL", true, "mx.example.org", "<id@mx.example.org>")
	f.Add([]byte("Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\nMessage-ID: <a@b>\rIn-Reply-To: <c@d>\n\nbody\x00\xff\n"), `"a b"@example.org`, "x@y", "rfc822;", "NEVER", "\x00", 0, "",
		"local\r\n\r\nreason", "", "", "HDRS", false, "mx.example.org", "")
	f.Add([]byte("no separator, no newline "+strings.Repeat("x", 2000)), "a@b", "<>@b", "x;y", "", "", 554, "9.9.9",
		strings.Repeat("long ", 300), strings.Repeat("h", 1200), "", "", false, "mx.example.org", "")
	f.Add([]byte("References: "+strings.Repeat("<r@x> ", 100)+"\r\n\r\n"), "a@b", "c@d", "", "", "", 250, "2.0.0",
		"ok", "", "192.0.2.1", "full", true, strings.Repeat("\x80", 1000), "")
	f.Add([]byte(origMsg), "a@b", "c@d", "", "", "", 550, "", "x", "", "", "", false, "mx.example.org", "<"+strings.Repeat("\x80", 1000)+">")
	f.Fuzz(func(t *testing.T, original []byte, to, addr, orcpt, notify, envid string, code int, enhanced, text, remoteHost, remoteIP, ret string, delay bool, reportingMTA, messageID string) {
		kind := Failure
		if delay {
			kind = Delay
		}
		var nl []string
		if notify != "" {
			nl = strings.Split(notify, ",")
		}
		lastAttempt := time.Date(2026, 3, 3, 12, 0, 0, 0, time.UTC)
		n := Notification{
			Kind:         kind,
			ReportingMTA: reportingMTA,
			To:           to,
			EnvelopeID:   envid,
			Arrival:      arrival,
			Recipients: []Recipient{{
				Recipient:      sdk.Recipient{Address: addr, ORcpt: orcpt, Notify: nl},
				Result:         sdk.RecipientResult{Address: addr, Code: code, EnhancedCode: enhanced, Text: text, RemoteHost: remoteHost, RemoteIP: remoteIP},
				LastAttempt:    lastAttempt,
				WillRetryUntil: lastAttempt.Add(time.Hour),
			}},
			Original:  bytes.NewReader(original),
			Return:    ret,
			Now:       now,
			MessageID: messageID,
		}
		out, err := Compose(n)
		_, idnaErr := idna.Lookup.ToASCII(reportingMTA)
		refused := to == "" || reportingMTA == "" || badField(to) || badField(reportingMTA) ||
			!isASCII(reportingMTA) && idnaErr != nil ||
			strings.ContainsFunc(messageID, func(r rune) bool { return r <= ' ' || r >= 0x7f })
		switch {
		case to == "":
			if !errors.Is(err, ErrNullSender) {
				t.Fatalf("empty To: %v", err)
			}
			return
		case refused:
			if err == nil {
				t.Fatalf("composed with To %q, Reporting-MTA %q, Message-ID %q", to, reportingMTA, messageID)
			}
			return
		case !wants(nl, kind):
			if !errors.Is(err, ErrNothingToReport) {
				t.Fatalf("NOTIFY %q for %v: %v", nl, kind, err)
			}
			return
		case err != nil:
			t.Fatalf("Compose: %v", err)
		}
		if bytes.IndexByte(out, 0) >= 0 {
			t.Fatalf("NUL in the DSN")
		}
		d := parse(t, out) // Lines, 7-bit, multipart, parts decoded, delivery-status groups.
		if d.params["report-type"] != "delivery-status" {
			t.Errorf("report-type %q", d.params["report-type"])
		}
		for k := range d.hdr {
			if !topFields[k] {
				t.Errorf("header field %q", k)
			}
		}
		if ct := d.parts[1].ct; ct != "message/delivery-status" && ct != "message/global-delivery-status" {
			t.Errorf("second part %q", ct)
		}
		if !utf8.Valid(d.parts[0].body) {
			t.Errorf("text part is not UTF-8")
		}
		checkGroup(t, d.perMsg, perMsgFields, "Reporting-Mta")
		if len(d.perRcpt) != 1 {
			t.Fatalf("%d recipient groups, want 1", len(d.perRcpt))
		}
		h := d.perRcpt[0]
		checkGroup(t, h, perRcptFields, "Final-Recipient", "Action", "Status")
		if want := map[Kind]string{Failure: "failed", Delay: "delayed"}[kind]; h.Get("Action") != want {
			t.Errorf("Action %q, want %q", h.Get("Action"), want)
		}
		if s := h.Get("Status"); !statusRe.MatchString(s) || kind == Delay && s[0] != '4' || kind == Failure && s[0] == '2' {
			t.Errorf("Status %q for %v", s, kind)
		}
		if (code != 0) != (h.Get("Diagnostic-Code") != "") {
			t.Errorf("code %d, Diagnostic-Code %q", code, h.Get("Diagnostic-Code"))
		}
		// The To header names the sender, if it is an address at all.
		if a, err := mail.ParseAddress("<" + to + ">"); err == nil && a.Address == to {
			if l, err := d.hdr.AddressList("To"); err != nil || len(l) != 1 || l[0].Address != to {
				t.Errorf("To %q for %q: %v", d.hdr.Get("To"), to, err)
			}
		}
		if strings.HasPrefix(messageID, "<") && d.hdr.Get("Message-Id") != messageID {
			t.Errorf("Message-ID %q, want %q", d.hdr.Get("Message-Id"), messageID)
		}
		checkReturned(t, d, original, strings.EqualFold(ret, "FULL") || kind == Failure && !strings.EqualFold(ret, "HDRS"))
	})
}

// checkGroup checks that a delivery-status group has only allowed fields,
// each once, and the required ones.
func checkGroup(t *testing.T, h map[string][]string, allowed map[string]bool, required ...string) {
	t.Helper()
	for k, v := range h {
		if !allowed[k] {
			t.Errorf("delivery-status field %q: %q", k, v)
		}
		if len(v) > 1 {
			t.Errorf("delivery-status field %q %d times", k, len(v))
		}
	}
	for _, k := range required {
		if len(h[k]) == 0 {
			t.Errorf("no %s", k)
		}
	}
}

// checkReturned checks the third part against the original: all of it if
// asked and it fits, else a prefix of complete header lines, up to the
// empty line or MaxReturn; no third part if that is empty.
func checkReturned(t *testing.T, d *dsn, original []byte, full bool) {
	t.Helper()
	if len(d.parts) == 2 {
		if full && len(original) > 0 && len(original) <= MaxReturn {
			t.Errorf("original of %d octets not returned", len(original))
		}
		return
	}
	if len(d.parts) != 3 {
		t.Fatalf("%d parts", len(d.parts))
	}
	p := d.parts[2]
	body := p.body
	if full && len(original) <= MaxReturn {
		if p.ct != "message/rfc822" && p.ct != "message/global" {
			t.Errorf("full original as %q", p.ct)
		}
		if !bytes.Equal(body, original) {
			t.Errorf("returned %q, want %q", body, original)
		}
		return
	}
	if p.ct != "text/rfc822-headers" && p.ct != "message/global-headers" {
		t.Errorf("headers as %q", p.ct)
	}
	if !bytes.HasPrefix(original, body) {
		t.Fatalf("returned headers are not a prefix of the original")
	}
	if bytes.HasPrefix(body, []byte("\n")) || bytes.HasPrefix(body, []byte("\r\n")) ||
		bytes.Contains(body, []byte("\n\n")) || bytes.Contains(body, []byte("\n\r\n")) {
		t.Errorf("returned headers hold an empty line: %q", body)
	}
	if rest := original[len(body):]; len(rest) > 0 && !bytes.HasPrefix(rest, []byte("\n")) &&
		!bytes.HasPrefix(rest, []byte("\r\n")) && len(original) <= MaxReturn {
		t.Errorf("returned headers end before the empty line: rest %q", rest[:min(len(rest), 40)])
	}
}

var msgIDRe = regexp.MustCompile(`^<[!-;=?-~]{1,250}>$`) // No "<", ">" inside, no space, ASCII.

// FuzzOriginal feeds arbitrary bytes to the original's parser: its header
// section is a prefix of the message with no empty line, and what it takes
// for the DSN's header (Message-ID, References, Subject) is safe there.
func FuzzOriginal(f *testing.F) {
	f.Add([]byte(origMsg), true)
	f.Add([]byte(origHeader), false)
	f.Add([]byte("Subject: =?iso-8859-1?q?Gr=FC=DFe?=\n =?x-unknown?q?a?=\r\nMessage-ID:x@y\r\n\r\n"), true)
	f.Add([]byte("message-id: <a b@c> <ok@d>\nin-reply-to: <p@q>\n\rreferences:<<x>>\n\n"), false)
	f.Add([]byte("\r\nbody only"), true)
	f.Add([]byte("Subject: \x00\x1b\xff\xfe"+strings.Repeat("é", 300)), true)
	f.Fuzz(func(t *testing.T, data []byte, full bool) {
		o, err := readOriginal(bytes.NewReader(data), full)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case full && len(data) <= MaxReturn:
			if !o.full || !bytes.Equal(o.content, data) {
				t.Errorf("full %v, content %q, want the message", o.full, o.content)
			}
		case !bytes.HasPrefix(data, o.content):
			t.Errorf("header section is not a prefix")
		case bytes.HasPrefix(o.content, []byte("\n")) || bytes.HasPrefix(o.content, []byte("\r\n")) ||
			bytes.Contains(o.content, []byte("\n\n")) || bytes.Contains(o.content, []byte("\n\r\n")):
			t.Errorf("header section holds an empty line: %q", o.content)
		}
		if o.plain != isPlain(o.content) {
			t.Errorf("plain %v", o.plain)
		}
		if o.messageID != "" && !msgIDRe.MatchString(o.messageID) {
			t.Errorf("Message-ID %q", o.messageID)
		}
		refs := o.references()
		if len(refs) > maxRefs {
			t.Errorf("%d references", len(refs))
		}
		for _, id := range append(refs, o.refs...) {
			if !msgIDRe.MatchString(id) {
				t.Errorf("reference %q", id)
			}
		}
		if s := o.subject; !utf8.ValidString(s) || badField(s) || utf8.RuneCountInString(s) > maxSubject+3 ||
			strings.Contains(s, "  ") || s != strings.TrimSpace(s) {
			t.Errorf("subject %q", s)
		}
	})
}
