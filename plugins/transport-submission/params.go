package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/switchyard-mta/switchyard/sdk"
)

// mailCommand returns the MAIL command for req, with the parameters of the
// extensions the server offers (ext). The caller has checked that the server
// offers what req requires (SMTPUTF8, REQUIRETLS, BINARYMIME).
func mailCommand(req *sdk.DeliverRequest, ext map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "MAIL FROM:<%s>", req.From)
	if _, ok := ext["SIZE"]; ok && req.Size > 0 {
		fmt.Fprintf(&b, " SIZE=%d", req.Size) // RFC 1870 §4
	}
	// BODY is a parameter of 8BITMIME (RFC 6152 §2); without it the message
	// goes as 7-bit, see deliver.
	if _, ok := ext["8BITMIME"]; ok {
		switch body := strings.ToUpper(req.Options.Body); body {
		case "7BIT", "8BITMIME", "BINARYMIME":
			b.WriteString(" BODY=" + body)
		}
	}
	if req.Options.SMTPUTF8 {
		b.WriteString(" SMTPUTF8") // RFC 6531 §3.4
	}
	if req.Options.RequireTLS {
		b.WriteString(" REQUIRETLS") // RFC 8689 §4.1
	}
	if _, ok := ext["DSN"]; ok {
		// RFC 3461 §4.3, §4.4. Values the core would not have accepted are
		// left out rather than sent malformed.
		if ret := strings.ToUpper(req.Options.DSNReturn); ret == "FULL" || ret == "HDRS" {
			b.WriteString(" RET=" + ret)
		}
		if id := req.Options.EnvelopeID; id != "" && isPrintableASCII(id) {
			b.WriteString(" ENVID=" + xtext(id))
		}
	}
	return b.String()
}

// rcptCommand returns the RCPT command for r, with DSN parameters (RFC 3461
// §4.1, §4.2) if the server offers DSN.
func rcptCommand(r sdk.Recipient, ext map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "RCPT TO:<%s>", r.Address)
	if _, ok := ext["DSN"]; !ok {
		return b.String()
	}
	if n := notify(r.Notify); n != "" {
		b.WriteString(" NOTIFY=" + n)
	}
	if o := orcpt(r.ORcpt); o != "" {
		b.WriteString(" ORCPT=" + o)
	}
	return b.String()
}

// notify returns the NOTIFY value of values, or "" if they are none or not a
// valid set: NEVER alone, or some of SUCCESS, FAILURE, DELAY (RFC 3461 §4.1).
func notify(values []string) string {
	seen := map[string]bool{}
	var out []string
	for _, v := range values {
		v = strings.ToUpper(v)
		switch v {
		case "NEVER", "SUCCESS", "FAILURE", "DELAY":
		default:
			return ""
		}
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	if seen["NEVER"] && len(out) > 1 {
		return ""
	}
	return strings.Join(out, ",")
}

// orcpt encodes an original recipient given as "type;address" with the
// address decoded, e.g. "rfc822;a@example.org": xtext for rfc822 (RFC 3461
// §4.2), utf-8-addr-xtext for utf-8 (RFC 6533 §3). Other types and
// malformed values give "".
func orcpt(v string) string {
	typ, addr, ok := strings.Cut(v, ";")
	if !ok || addr == "" {
		return ""
	}
	switch strings.ToLower(typ) {
	case "rfc822":
		if !isPrintableASCII(addr) {
			return ""
		}
		return "rfc822;" + xtext(addr)
	case "utf-8":
		return "utf-8;" + utf8AddrXtext(addr)
	}
	return ""
}

// xtext encodes s (RFC 3461 §4): "+", "=" and characters outside "!"-"~"
// become "+" and two upper-case hex digits.
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// utf8AddrXtext encodes s (RFC 6533 §3): "+", "=", "\" and characters
// outside "!"-"~" become "\x{HEX}" of their code point.
func utf8AddrXtext(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < '!' || r > '~' || r == '+' || r == '=' || r == '\\' {
			b.WriteString(`\x{` + strings.ToUpper(strconv.FormatInt(int64(r), 16)) + "}")
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// validPath reports whether an address can go in a MAIL or RCPT command:
// no control characters and no angle brackets, which would break the
// command line (RFC 5321 §4.1.2).
func validPath(addr string) bool {
	for _, c := range addr {
		if c < ' ' || c == 0x7f || c == '<' || c == '>' {
			return false
		}
	}
	return true
}
