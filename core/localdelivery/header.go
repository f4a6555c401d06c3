package localdelivery

import (
	"strings"
)

// header returns the fields final delivery puts at the top of a message,
// with CRLF: "Return-Path: <from>" (RFC 5321 §4.4; "<>" for the null
// reverse-path), then "Delivered-To: addr" per recipient address, in order,
// each address once (ignoring case). A Return-Path the message already
// has stays below ours: ours is the one that counts (RFC 5321 §4.4 has
// only the final delivery add one).
func header(from string, addrs []string) string {
	var b strings.Builder
	b.WriteString("Return-Path: <")
	b.WriteString(mailbox(from))
	b.WriteString(">\r\n")
	var seen []string
	for _, a := range addrs {
		m := mailbox(a)
		if m == "" || containsFold(seen, m) {
			continue
		}
		seen = append(seen, m)
		b.WriteString("Delivered-To: ")
		b.WriteString(m)
		b.WriteString("\r\n")
	}
	return b.String()
}

func containsFold(l []string, s string) bool {
	for _, x := range l {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// mailbox formats addr, as the SMTP listener parsed it (quotes and
// backslashes of the local part removed), as a Mailbox of RFC 5321 §4.1.2:
// a local part that is not a Dot-string becomes a Quoted-string. Control
// characters, which the listener refuses, are dropped: they would end the
// header field.
func mailbox(addr string) string {
	addr = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, addr)
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return addr // The null reverse-path, or "postmaster".
	}
	local, domain := addr[:at], addr[at:]
	if isDotString(local) {
		return addr
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range local {
		if r == '"' || r == '\\' {
			b.WriteByte('\\') // quoted-pairSMTP
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String() + domain
}

// isDotString reports whether s is a Dot-string (RFC 5321 §4.1.2): atoms
// of atext (RFC 5322 §3.2.3, with UTF-8 by RFC 6531 §3.3) joined by dots.
func isDotString(s string) bool {
	if s == "" {
		return false
	}
	for atom := range strings.SplitSeq(s, ".") {
		if atom == "" {
			return false
		}
		for _, r := range atom {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r >= 0x80 || strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)) {
				return false
			}
		}
	}
	return true
}
