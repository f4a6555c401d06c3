// Package dsn composes delivery status notifications (RFC 3464): a
// multipart/report (RFC 6522) with a human-readable explanation, a
// message/delivery-status part with per-message and per-recipient fields,
// and the original message or its headers, as the SMTP DSN extension asks
// (RFC 3461). Internationalized content gets the message/global types of
// RFC 6533.
//
// The body of a DSN is always 7-bit: a part that would carry 8-bit data,
// bare line feeds or overlong lines is encoded (quoted-printable or base64,
// RFC 6533 §6), so the DSN can be relayed to any MTA. Only the To header can
// hold UTF-8, when the sender's address does (and From, if a caller gives
// one that is not ASCII; the default is at the hostname's A-label); such a
// DSN needs SMTPUTF8 (RFC 6531). A DSN is sent with the null reverse-path, so that it never causes
// another (RFC 3461 §6.2, RFC 5321 §4.5.5).
package dsn

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

var (
	ErrNullSender      = errors.New("dsn: null reverse-path")      // Never a DSN for it (RFC 3461 §6.1); send nothing.
	ErrNothingToReport = errors.New("dsn: no recipient to report") // Every recipient's NOTIFY excludes the event; send nothing.
)

// MaxReturn is the size of the largest original returned in full. RFC 3461
// §4.3 leaves it to the MTA to return only the headers of a large message.
// 256 KiB covers nearly every message of text, with an image or two, and is
// more than Postfix (50 kB) or Exim (100 KiB) return. Beyond that, the
// sender has the message (in Sent) and the DSN only has to identify it: a
// DSN of megabytes would count against the sender's quota and could itself
// exceed a size limit on its way back.
const MaxReturn = 256 << 10

// Kind is the event a DSN reports.
type Kind int

const (
	Failure Kind = iota // Action: failed; delivery stopped (RFC 3464 §2.3.3).
	Delay               // Action: delayed; delivery continues.
)

func (k Kind) String() string {
	switch k {
	case Failure:
		return "Failure"
	case Delay:
		return "Delay"
	default:
		return fmt.Sprintf("Kind(%d)", int(k))
	}
}

// Notification is what a DSN reports.
type Notification struct {
	Kind         Kind
	ReportingMTA string      // Our hostname, for "Reporting-MTA: dns; <host>"; a U-label is used as its A-label. Required.
	From         string      // The DSN's From, named "Mail Delivery Subsystem"; default "postmaster@" + ReportingMTA.
	To           string      // The original envelope sender, the DSN's recipient. Required.
	EnvelopeID   string      // DSN ENVID of the original (RFC 3461 §4.4), for Original-Envelope-Id; may be empty.
	Arrival      time.Time   // Arrival-Date of the original; zero: omitted.
	Recipients   []Recipient // Reported only if their NOTIFY asks for Kind (RFC 3461 §4.1).
	Original     io.Reader   // The original message; nil: no third part, no threading.
	Return       string      // DSN RET (RFC 3461 §4.3): "FULL" (up to MaxReturn, else headers), "HDRS", or empty: FULL for Failure, HDRS for Delay.
	Now          time.Time   // Date of the DSN; zero: time.Now().
	MessageID    string      // Of the DSN, "<id@host>", ASCII without spaces; empty: random, at ReportingMTA.
}

// Recipient is one recipient to report on. A queue.Rcpt r converts as
// Recipient{Recipient: r.Recipient, Result: r.Last, LastAttempt: r.LastAttempt}.
type Recipient struct {
	sdk.Recipient                      // Address is Final-Recipient, ORcpt Original-Recipient (RFC 3464 §2.3.1–2).
	Result         sdk.RecipientResult // The last attempt: Status, Diagnostic-Code (if Code is set) and Remote-MTA.
	LastAttempt    time.Time           // Last-Attempt-Date; zero: omitted.
	WillRetryUntil time.Time           // Will-Retry-Until, with Delay only; zero: omitted.
}

// Compose returns a DSN message (RFC 3464, a multipart/report of RFC 6522
// with report-type delivery-status) with CRLF line endings, to be sent
// from the null reverse-path to n.To: with SMTPUTF8 if n.To or n.From is
// not ASCII, else as 7-bit.
//
// It returns ErrNullSender for an empty n.To, and ErrNothingToReport when
// NOTIFY excludes every recipient; in both cases nothing is to be sent. An
// error reading n.Original is returned wrapped: a caller may compose again
// without the original rather than lose the DSN. The headers of the
// original are parsed leniently: a malformed original still gets a DSN.
func Compose(n Notification) ([]byte, error) {
	if n.To == "" {
		return nil, ErrNullSender
	}
	if n.Kind != Failure && n.Kind != Delay {
		return nil, fmt.Errorf("dsn: unknown kind %d", int(n.Kind))
	}
	if n.ReportingMTA == "" {
		return nil, errors.New("dsn: reporting MTA required")
	}
	// These become header fields as they are: a line break would inject
	// more, and invalid UTF-8 is no header text (RFC 6532 §3.2) nor can
	// it be folded or wrapped at a character.
	for _, s := range []string{n.To, n.From, n.ReportingMTA, n.MessageID} {
		if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return nil, fmt.Errorf("dsn: control character in %q", s)
		}
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("dsn: invalid UTF-8 in %q", s)
		}
	}
	if strings.ContainsFunc(n.MessageID, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
		return nil, fmt.Errorf("dsn: Message-ID %q is not ASCII without spaces", n.MessageID) // RFC 5322 §3.6.4
	}
	if !isASCII(n.ReportingMTA) {
		// An internationalized hostname as its A-label (RFC 5890 §2.3.2.1):
		// in From, Message-ID and Reporting-MTA it keeps the DSN 7-bit.
		d, err := mailaddr.ParseDomain(n.ReportingMTA)
		if err != nil {
			return nil, fmt.Errorf("dsn: reporting MTA: %w", err)
		}
		n.ReportingMTA = d.ASCII
	}
	if n.From == "" {
		n.From = "postmaster@" + n.ReportingMTA
	}
	var rcpts []Recipient
	for _, r := range n.Recipients {
		if wants(r.Notify, n.Kind) {
			rcpts = append(rcpts, r)
		}
	}
	if len(rcpts) == 0 {
		return nil, ErrNothingToReport
	}
	if n.Now.IsZero() {
		n.Now = time.Now()
	}
	if n.MessageID == "" {
		n.MessageID = "<" + randomID() + "@" + n.ReportingMTA + ">"
	} else if !strings.HasPrefix(n.MessageID, "<") {
		n.MessageID = "<" + n.MessageID + ">"
	}
	full := strings.EqualFold(n.Return, "FULL") || n.Kind == Failure && !strings.EqualFold(n.Return, "HDRS")
	var orig *original
	if n.Original != nil {
		var err error
		if orig, err = readOriginal(n.Original, full); err != nil {
			return nil, err
		}
	}

	var b bytes.Buffer
	writeField(&b, "Date", n.Now.Format(time.RFC1123Z))
	writeField(&b, "From", (&mail.Address{Name: "Mail Delivery Subsystem", Address: n.From}).String())
	writeField(&b, "To", (&mail.Address{Address: n.To}).String())
	writeField(&b, "Subject", subject(n.Kind, orig))
	writeField(&b, "Message-ID", n.MessageID)
	if orig != nil {
		// RFC 5322 §3.6.4: the parent's Message-ID, appended to its References.
		if orig.messageID != "" {
			writeField(&b, "In-Reply-To", orig.messageID)
		}
		if refs := orig.references(); len(refs) > 0 {
			writeField(&b, "References", strings.Join(refs, " "))
		}
	}
	writeField(&b, "Auto-Submitted", "auto-replied") // RFC 3834 §5; RFC 3464 §2 asks for no reply.
	writeField(&b, "MIME-Version", "1.0")
	mp := multipart.NewWriter(&b)
	writeField(&b, "Content-Type", `multipart/report; report-type=delivery-status; boundary="`+mp.Boundary()+`"`)
	b.WriteString("\r\n")

	if err := writeText(mp, explain(n, rcpts, orig)); err != nil {
		return nil, err
	}
	if err := writeStatus(mp, n, rcpts); err != nil {
		return nil, err
	}
	if orig != nil && len(orig.content) > 0 {
		if err := writeOriginal(mp, orig); err != nil {
			return nil, err
		}
	}
	if err := mp.Close(); err != nil {
		return nil, fmt.Errorf("dsn: %w", err)
	}
	return b.Bytes(), nil
}

// wants says whether a recipient's NOTIFY asks for a DSN of kind k (RFC
// 3461 §4.1). Without NOTIFY, failures and delays are reported, the
// behaviour the RFC suggests for the default.
func wants(notify []string, k Kind) bool {
	if len(notify) == 0 {
		return true
	}
	want := "FAILURE"
	if k == Delay {
		want = "DELAY"
	}
	for _, v := range notify {
		if strings.EqualFold(v, want) {
			return true
		}
	}
	return false // NEVER, or a list without this event.
}

func randomID() string {
	var p [16]byte
	_, _ = rand.Read(p[:]) // Never fails (crypto/rand).
	return hex.EncodeToString(p[:])
}

// subject is "Delivery Status Notification (Kind)", then the original
// subject, RFC 2047-encoded if not ASCII.
func subject(k Kind, orig *original) string {
	s := "Delivery Status Notification (" + k.String() + ")"
	if orig == nil || orig.subject == "" {
		return s
	}
	return s + ": " + mime.QEncoding.Encode("utf-8", orig.subject)
}

// writeText writes the human-readable part (RFC 6522 §3): 7-bit if it is,
// else quoted-printable.
func writeText(mp *multipart.Writer, text string) error {
	h := textproto.MIMEHeader{"Content-Type": {"text/plain; charset=utf-8"}}
	return writePart(mp, h, []byte(text), isASCII(text))
}

// writePart writes a part of text with CRLF lines: as it is (7-bit) if
// plain, else quoted-printable.
func writePart(mp *multipart.Writer, h textproto.MIMEHeader, text []byte, plain bool) error {
	if plain {
		h.Set("Content-Transfer-Encoding", "7bit")
	} else {
		h.Set("Content-Transfer-Encoding", "quoted-printable")
	}
	w, err := mp.CreatePart(h)
	if err != nil {
		return fmt.Errorf("dsn: %w", err)
	}
	if plain {
		_, err = w.Write(text)
	} else {
		qp := quotedprintable.NewWriter(w)
		if _, err = qp.Write(text); err == nil {
			err = qp.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("dsn: %w", err)
	}
	return nil
}

var statusRe = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`) // RFC 3464 §2.3.4, RFC 3463 §2

// status returns the Status of a recipient: its enhanced code if that fits
// the event, else one from its reply code's class, else 5.0.0 or 4.0.0.
// A failure may keep a 4.x.x code: a temporary failure that persisted until
// the queue gave up (RFC 3463 §3.5, X.4.7).
func status(k Kind, res sdk.RecipientResult) string {
	s := res.EnhancedCode
	if !statusRe.MatchString(s) {
		switch {
		case res.Code >= 400 && res.Code < 500:
			s = "4.0.0"
		case res.Code >= 500 && res.Code < 600:
			s = "5.0.0"
		default:
			s = ""
		}
	}
	switch {
	case k == Delay && !strings.HasPrefix(s, "4."):
		return "4.0.0"
	case k == Failure && (s == "" || strings.HasPrefix(s, "2.")):
		return "5.0.0"
	}
	return s
}

// writeStatus writes the message/delivery-status part (RFC 3464 §2.1), or
// message/global-delivery-status if a field is not ASCII (RFC 6533 §6.2).
func writeStatus(mp *multipart.Writer, n Notification, rcpts []Recipient) error {
	var b bytes.Buffer
	// Per-message fields (RFC 3464 §2.2).
	if n.EnvelopeID != "" {
		writeField(&b, "Original-Envelope-Id", clean(n.EnvelopeID))
	}
	writeField(&b, "Reporting-MTA", "dns; "+n.ReportingMTA)
	if !n.Arrival.IsZero() {
		writeField(&b, "Arrival-Date", n.Arrival.Format(time.RFC1123Z))
	}
	// Per-recipient fields (RFC 3464 §2.3), each group after a blank line.
	for _, r := range rcpts {
		b.WriteString("\r\n")
		if typ, addr, ok := strings.Cut(r.ORcpt, ";"); ok && strings.TrimSpace(addr) != "" {
			writeField(&b, "Original-Recipient", clean(strings.TrimSpace(typ))+"; "+clean(strings.TrimSpace(addr)))
		}
		writeField(&b, "Final-Recipient", addrType(r.Address)+"; "+clean(r.Address))
		action := "failed"
		if n.Kind == Delay {
			action = "delayed"
		}
		writeField(&b, "Action", action)
		writeField(&b, "Status", status(n.Kind, r.Result))
		if mta := remoteMTA(r.Result); mta != "" {
			writeField(&b, "Remote-MTA", "dns; "+mta)
		}
		// Only a reply of the remote MTA is a diagnostic code (RFC 3464
		// §2.3.6); a local reason is in the human-readable part.
		if r.Result.Code != 0 {
			writeField(&b, "Diagnostic-Code", "smtp; "+reply(r.Result))
		}
		if !r.LastAttempt.IsZero() {
			writeField(&b, "Last-Attempt-Date", r.LastAttempt.Format(time.RFC1123Z))
		}
		if n.Kind == Delay && !r.WillRetryUntil.IsZero() {
			writeField(&b, "Will-Retry-Until", r.WillRetryUntil.Format(time.RFC1123Z)) // RFC 3464 §2.3.8
		}
	}
	plain := isASCII(b.String())
	ct := "message/delivery-status"
	if !plain {
		ct = "message/global-delivery-status"
	}
	return writePart(mp, textproto.MIMEHeader{"Content-Type": {ct}}, b.Bytes(), plain)
}

// addrType is "rfc822", or "utf-8" for an address that is not ASCII (RFC
// 6533 §3).
func addrType(addr string) string {
	if isASCII(addr) {
		return "rfc822"
	}
	return "utf-8"
}

// remoteMTA is the host that gave the result: its name, else its IP as an
// address literal; empty if unknown.
func remoteMTA(res sdk.RecipientResult) string {
	if h := strings.TrimSuffix(res.RemoteHost, "."); h != "" {
		return clean(h)
	}
	switch {
	case res.RemoteIP == "":
		return ""
	case strings.Contains(res.RemoteIP, ":"):
		return "[IPv6:" + clean(res.RemoteIP) + "]"
	default:
		return "[" + clean(res.RemoteIP) + "]"
	}
}

// reply is the SMTP reply of a result on one line: "550 5.1.1 text".
func reply(res sdk.RecipientResult) string {
	s := fmt.Sprint(res.Code)
	if res.EnhancedCode != "" {
		s += " " + clean(res.EnhancedCode)
	}
	if t := clean(res.Text); t != "" {
		s += " " + t
	}
	return s
}

// writeOriginal writes the third part (RFC 3464 §2, RFC 6522 §3): the
// message as message/rfc822 or its headers as text/rfc822-headers; if they
// are not 7-bit, message/global or message/global-headers in base64 (RFC
// 6533 §6.3, RFC 6532 §3.5), which keeps them byte for byte.
func writeOriginal(mp *multipart.Writer, orig *original) error {
	var ct, cte string
	switch {
	case orig.full && orig.plain:
		ct, cte = "message/rfc822", "7bit"
	case orig.full:
		ct, cte = "message/global", "base64"
	case orig.plain:
		ct, cte = "text/rfc822-headers", "7bit"
	default:
		ct, cte = "message/global-headers", "base64"
	}
	w, err := mp.CreatePart(textproto.MIMEHeader{"Content-Type": {ct}, "Content-Transfer-Encoding": {cte}})
	if err != nil {
		return fmt.Errorf("dsn: %w", err)
	}
	if orig.plain {
		_, err = w.Write(orig.content)
	} else {
		err = writeBase64(w, orig.content)
	}
	if err != nil {
		return fmt.Errorf("dsn: %w", err)
	}
	return nil
}
