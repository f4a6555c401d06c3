package smtpclient

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// MailOptions are the parameters of MAIL FROM. Those of extensions the
// server does not offer are left out, except the ones the message requires
// (SMTPUTF8, REQUIRETLS, BODY=BINARYMIME): check Extension before asking
// for them, since no downgrade is done here.
type MailOptions struct {
	// Size is the message size in bytes, sent as SIZE (RFC 1870 §4) if
	// positive and the server offers SIZE.
	Size int64
	// Body is "7BIT" or "8BITMIME", sent as BODY if the server offers
	// 8BITMIME (RFC 6152 §2), or "BINARYMIME", always sent (RFC 3030 §3;
	// send the message with Bdat). Case-insensitive; other values are not sent.
	Body string
	// SMTPUTF8 asks for SMTPUTF8 (RFC 6531 §3.4).
	SMTPUTF8 bool
	// RequireTLS asks for REQUIRETLS (RFC 8689 §4.1).
	RequireTLS bool
	// DSNReturn is "FULL" or "HDRS", sent as RET if the server offers DSN
	// (RFC 3461 §4.3).
	DSNReturn string
	// EnvelopeID is sent xtext-encoded as ENVID if the server offers DSN
	// and it is printable ASCII (RFC 3461 §4.4).
	EnvelopeID string
}

// RcptOptions are the parameters of RCPT TO, sent if the server offers DSN.
type RcptOptions struct {
	// Notify is "NEVER" alone or some of "SUCCESS", "FAILURE", "DELAY"
	// (RFC 3461 §4.1). Any other value leaves NOTIFY out.
	Notify []string
	// ORcpt is the original recipient as "type;address" with the address
	// decoded, e.g. "rfc822;a@example.org", sent as ORCPT (RFC 3461 §4.2)
	// encoded as xtext, or as utf-8-addr-xtext for type "utf-8" (RFC 6533
	// §3). Other types and malformed values leave ORCPT out.
	ORcpt string
}

// Mail sends MAIL FROM (RFC 5321 §4.1.1.2) with from as the reverse path
// ("" for the null sender) and the parameters of opts, which may be nil. An
// address that would break the command line is refused with
// ErrInvalidAddress and nothing is sent.
func (c *Client) Mail(from string, opts *MailOptions) (Reply, error) {
	if !ValidPath(from) {
		return Reply{}, ErrInvalidAddress
	}
	c.deadline(c.timeouts.Command)
	bw := c.bw
	bw.WriteString("MAIL FROM:<")
	bw.WriteString(from)
	bw.WriteByte('>')
	if opts != nil {
		_, sizeOK := c.ext["SIZE"]
		if sizeOK && opts.Size > 0 {
			bw.WriteString(" SIZE=")
			bw.Write(strconv.AppendInt(c.num[:0], opts.Size, 10))
		}
		_, eightBit := c.ext["8BITMIME"]
		switch {
		case strings.EqualFold(opts.Body, "7BIT") && eightBit:
			bw.WriteString(" BODY=7BIT")
		case strings.EqualFold(opts.Body, "8BITMIME") && eightBit:
			bw.WriteString(" BODY=8BITMIME")
		case strings.EqualFold(opts.Body, "BINARYMIME"):
			bw.WriteString(" BODY=BINARYMIME")
		}
		if opts.SMTPUTF8 {
			bw.WriteString(" SMTPUTF8")
		}
		if opts.RequireTLS {
			bw.WriteString(" REQUIRETLS")
		}
		if _, ok := c.ext["DSN"]; ok {
			switch {
			case strings.EqualFold(opts.DSNReturn, "FULL"):
				bw.WriteString(" RET=FULL")
			case strings.EqualFold(opts.DSNReturn, "HDRS"):
				bw.WriteString(" RET=HDRS")
			}
			if id := opts.EnvelopeID; id != "" && isPrintableASCII(id) {
				bw.WriteString(" ENVID=")
				c.writeXtext(id)
			}
		}
	}
	bw.WriteString("\r\n")
	return c.flushRead()
}

// Rcpt sends RCPT TO (RFC 5321 §4.1.1.3) for the address to, with the
// parameters of opts, which may be nil. An address that would break the
// command line is refused with ErrInvalidAddress and nothing is sent.
func (c *Client) Rcpt(to string, opts *RcptOptions) (Reply, error) {
	if !ValidPath(to) || to == "" {
		return Reply{}, ErrInvalidAddress
	}
	c.deadline(c.timeouts.Command)
	bw := c.bw
	bw.WriteString("RCPT TO:<")
	bw.WriteString(to)
	bw.WriteByte('>')
	if _, ok := c.ext["DSN"]; ok && opts != nil {
		c.writeNotify(opts.Notify)
		c.writeORcpt(opts.ORcpt)
	}
	bw.WriteString("\r\n")
	return c.flushRead()
}

// notifyKeywords are the values of NOTIFY, in the order of their bits.
var notifyKeywords = [...]string{"NEVER", "SUCCESS", "FAILURE", "DELAY"}

// writeNotify writes " NOTIFY=..." for values if they are a valid set:
// upper case, without duplicates, in their order.
func (c *Client) writeNotify(values []string) {
	var seen uint8
	for _, v := range values {
		i := 0
		for i < len(notifyKeywords) && !strings.EqualFold(v, notifyKeywords[i]) {
			i++
		}
		if i == len(notifyKeywords) {
			return
		}
		seen |= 1 << i
	}
	if seen == 0 || seen&1 != 0 && seen != 1 {
		return // None, or NEVER with others.
	}
	c.bw.WriteString(" NOTIFY=")
	var written uint8
	for _, v := range values {
		for i, k := range notifyKeywords {
			if strings.EqualFold(v, k) && written&(1<<i) == 0 {
				if written != 0 {
					c.bw.WriteByte(',')
				}
				written |= 1 << i
				c.bw.WriteString(k)
			}
		}
	}
}

// writeORcpt writes " ORCPT=..." for v, given as "type;address".
func (c *Client) writeORcpt(v string) {
	typ, addr, ok := strings.Cut(v, ";")
	if !ok || addr == "" {
		return
	}
	switch {
	case strings.EqualFold(typ, "rfc822") && isPrintableASCII(addr):
		c.bw.WriteString(" ORCPT=rfc822;")
		c.writeXtext(addr)
	case strings.EqualFold(typ, "utf-8") && utf8.ValidString(addr):
		c.bw.WriteString(" ORCPT=utf-8;")
		c.writeUTF8AddrXtext(addr)
	}
}

const hexDigits = "0123456789ABCDEF"

// writeXtext writes s as xtext (RFC 3461 §4): "+", "=" and characters
// outside "!"-"~" become "+" and two upper-case hex digits.
func (c *Client) writeXtext(s string) {
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b < '!' || b > '~' || b == '+' || b == '=' {
			c.bw.WriteByte('+')
			c.bw.WriteByte(hexDigits[b>>4])
			c.bw.WriteByte(hexDigits[b&0xf])
		} else {
			c.bw.WriteByte(b)
		}
	}
}

// writeUTF8AddrXtext writes s as utf-8-addr-xtext (RFC 6533 §3): "+", "=",
// "\" and characters outside "!"-"~" become "\x{HEX}" of their code point.
func (c *Client) writeUTF8AddrXtext(s string) {
	for _, r := range s {
		if r < '!' || r > '~' || r == '+' || r == '=' || r == '\\' {
			c.bw.WriteString(`\x{`)
			hex := strconv.AppendUint(c.num[:0], uint64(r), 16)
			for i, d := range hex {
				if d >= 'a' {
					hex[i] = d - 'a' + 'A'
				}
			}
			c.bw.Write(hex)
			c.bw.WriteByte('}')
		} else {
			c.bw.WriteRune(r)
		}
	}
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// ValidPath reports whether an address can go in a MAIL or RCPT command:
// no control characters and no angle brackets, which would break the
// command line (RFC 5321 §4.1.2). Mail and Rcpt refuse others.
func ValidPath(addr string) bool {
	for _, c := range addr {
		if c < ' ' || c == 0x7f || c == '<' || c == '>' {
			return false
		}
	}
	return true
}
