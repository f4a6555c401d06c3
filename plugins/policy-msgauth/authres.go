package policymsgauth

import (
	"strings"

	"github.com/switchyard-mta/switchyard/sdk/dnsresolve"
)

const (
	authResultsName = "Authentication-Results"
	authResultsKey  = "authentication-results" // Its field.key.
)

const (
	foldAt      = 76  // Longest line before CRLF when folding (RFC 5322 §2.1.1: 78).
	maxValueLen = 255 // Values are cut to this length: a domain name fits.
)

// result is one resinfo of an Authentication-Results field (RFC 8601 §2.2).
type result struct {
	method  string // "spf", "dkim", "dmarc", "iprev".
	value   string // "pass", "fail", ... (RFC 8601 §2.7).
	comment string // Shown after the result in parentheses; optional.
	reason  string // reason= (RFC 8601 §2.2); optional.
	props   []prop
}

// prop is a propspec: ptype.property=pvalue, e.g. smtp.mailfrom=example.org.
type prop struct {
	name  string // "smtp.mailfrom", "header.d", ...
	value string // Empty: left out.
}

// formatResults returns the Authentication-Results field naming authservID,
// folded to lines of at most 78 characters where its parts allow, each
// ending in CRLF, in US-ASCII. Every value from the peer is a token, a
// domain or an address where the grammar allows one, else a quoted-string
// of printable ASCII (RFC 8601 §2.2, RFC 2045 §5.1).
func formatResults(authservID string, results []result) string {
	var b strings.Builder
	b.WriteString(authResultsName + ": " + value(authservID))
	if len(results) == 0 {
		b.WriteString("; none\r\n")
		return b.String()
	}
	b.WriteString(";")
	for i, r := range results {
		parts := []string{r.method + "=" + r.value}
		if r.comment != "" {
			parts = append(parts, comment(r.comment))
		}
		if r.reason != "" {
			parts = append(parts, "reason="+quoted(r.reason))
		}
		for _, p := range r.props {
			if p.value != "" {
				parts = append(parts, p.name+"="+pvalue(p.value))
			}
		}
		if i < len(results)-1 {
			parts[len(parts)-1] += ";"
		}
		b.WriteString("\r\n\t")
		n := 1 // The tab.
		for j, p := range parts {
			switch {
			case j == 0:
			case n+1+len(p) > foldAt:
				b.WriteString("\r\n\t  ") // Indented under its method.
				n = 3
			default:
				b.WriteString(" ")
				n++
			}
			b.WriteString(p)
			n += len(p)
		}
	}
	b.WriteString("\r\n")
	return b.String()
}

// tspecials may not appear in a token (RFC 2045 §5.1).
const tspecials = `()<>@,;:\"/[]?=`

// isToken reports whether s is a token: printable US-ASCII without space or
// tspecials (RFC 2045 §5.1).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(tspecials, c) >= 0 {
			return false
		}
	}
	return true
}

// cut returns s cut to maxValueLen.
func cut(s string) string {
	if len(s) > maxValueLen {
		return s[:maxValueLen]
	}
	return s
}

// value is a token, or else a quoted-string.
func value(s string) string {
	if s = cut(s); isToken(s) {
		return s
	}
	return quoted(s)
}

// pvalue is a value, a domain-name or local-part@domain-name as the pvalue
// of RFC 8601 §2.2 allows (dot-atom local parts only), or a quoted-string.
func pvalue(s string) string {
	if s = cut(s); isToken(s) {
		return s
	}
	local, domain, ok := strings.Cut(s, "@")
	if ok && (local == "" || isDotAtom(local)) && isDomainName(domain) {
		return s
	}
	return quoted(s)
}

// isDotAtom reports whether s is an ASCII dot-atom (RFC 5322 §3.2.3).
func isDotAtom(s string) bool {
	for _, a := range strings.Split(s, ".") {
		if a == "" {
			return false
		}
		for i := 0; i < len(a); i++ {
			c := a[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0) {
				return false
			}
		}
	}
	return true
}

// asciiDomain returns s in lowercase A-labels without a trailing dot if it
// is a host name (see isDomainName), U-labels converted (RFC 5891 §5).
func asciiDomain(s string) (string, bool) {
	a, err := dnsresolve.ToASCII(s)
	if err != nil || !isDomainName(a) {
		return "", false
	}
	return a, true
}

// isDomainName reports whether s is a host name in ASCII: letter-digit-hyphen
// labels (underscores too, as in DKIM selectors), 1 to 63 octets each, at
// most 253 in all (RFC 1035 §2.3.4).
func isDomainName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// printable returns s with every octet outside printable US-ASCII replaced
// by '?', cut to maxValueLen.
func printable(s string) string {
	b := []byte(cut(s))
	for i, c := range b {
		if c < ' ' || c >= 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}

// The escapes of quoted-strings and comments, built once: a Replacer
// builds its tables on first use, which cost more than the replacing.
var (
	quoteEscaper   = strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	commentEscaper = strings.NewReplacer(`\`, `\\`, `(`, `\(`, `)`, `\)`)
)

// quoted is s as a quoted-string (RFC 5322 §3.2.4) of printable ASCII.
func quoted(s string) string {
	return `"` + quoteEscaper.Replace(printable(s)) + `"`
}

// comment is s as a comment (RFC 5322 §3.2.2) of printable ASCII.
func comment(s string) string {
	return "(" + commentEscaper.Replace(printable(s)) + ")"
}
