package smtpd

import (
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-smtp"
)

// Limits of RFC 5321 §4.5.3.1. Those of RFC 3461 on ENVID and ORCPT, on
// the values as sent, are go-smtp's (third_party/go-smtp).
const (
	maxLocalPart = 64  // Octets; RFC 5321 §4.5.3.1.1.
	maxDomain    = 255 // Octets; RFC 5321 §4.5.3.1.2.
	maxLabel     = 63  // Octets; RFC 1035 §2.3.4.
)

// Replies to addresses and parameters go-smtp parsed but did not check.
var (
	// RFC 5321 §2.3.8: CR and LF occur only together, as line ends.
	errAddrBareCR = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Bare CR or LF in command"}
	// RFC 3463 X.6.0: other or undefined media error; NUL is no text.
	errAddrNUL = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "NUL in command"}
	// RFC 6531 §3.5: non-ASCII addresses need SMTPUTF8.
	errAddrNonASCII = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7}, Message: "Non-ASCII address without SMTPUTF8"}
	// RFC 5321 §4.1.1.11: ESMTP parameters need EHLO.
	errParamsAfterHELO = &smtp.SMTPError{Code: 555, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "MAIL/RCPT parameters need EHLO"}
	errORcptInvalid    = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "Malformed ORCPT"}
	// RFC 5321 §4.5.1 requires a postmaster; a server without accounts has
	// nobody to deliver to.
	errNoPostmaster = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No postmaster here"}
	// A HELO or EHLO name with a NUL or bare CR would go back into the reply.
	errBadHelo = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Invalid HELO/EHLO domain"}
)

// checkAddress checks a MAIL FROM (sender) or RCPT TO address as go-smtp
// parsed it: quotes and backslashes of the local part removed. Its parser
// takes any byte but space, tab and '>' in the domain and any but specials
// in the local part, so NUL, bare CR, non-ASCII bytes and over-long parts
// get through it. The null reverse-path "" is valid.
func checkAddress(addr string, sender, smtputf8 bool) *smtp.SMTPError {
	syntax := &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient address syntax"}
	if sender {
		syntax = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Bad sender address syntax"}
	}
	ascii := true
	for i := 0; i < len(addr); i++ {
		switch c := addr[i]; {
		case c == 0:
			return errAddrNUL
		case c == '\r' || c == '\n':
			return errAddrBareCR
		case c < ' ' || c == 0x7f:
			return syntax // RFC 5321 §4.1.2 has no controls.
		case c >= 0x80:
			ascii = false
		}
	}
	if !ascii {
		if !smtputf8 {
			return errAddrNonASCII
		}
		if !utf8.ValidString(addr) {
			return syntax // RFC 6531 §3.3: UTF-8 (RFC 3629).
		}
	}
	if addr == "" {
		return nil
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return nil // go-smtp requires a domain; "postmaster" has none.
	}
	local, domain := addr[:at], addr[at+1:]
	if len(local) > maxLocalPart || len(domain) > maxDomain || !validDomain(domain) {
		return syntax
	}
	return nil
}

// validDomain reports whether d is a domain of dot-separated labels of
// letters, digits, hyphens or non-ASCII (U-labels, RFC 6531 §3.3), or an
// address literal in brackets (RFC 5321 §4.1.3, not parsed further).
func validDomain(d string) bool {
	if strings.HasPrefix(d, "[") {
		return len(d) > 2 && strings.HasSuffix(d, "]") && !strings.ContainsAny(d[1:len(d)-1], "[]\\")
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > maxLabel {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c >= 0x80) {
				return false
			}
		}
	}
	return true
}

// mailHasParams reports whether MAIL FROM carried ESMTP parameters, as far as
// go-smtp's options show them (SIZE=0 does not show).
func mailHasParams(o *smtp.MailOptions) bool {
	return o.Size != 0 || o.UTF8 || o.RequireTLS || o.Body != "" || o.Return != "" || o.EnvelopeID != "" || o.Auth != nil
}

// rcptHasParams is mailHasParams for RCPT TO.
func rcptHasParams(o *smtp.RcptOptions) bool {
	return len(o.Notify) > 0 || o.OriginalRecipientType != "" || o.OriginalRecipient != "" ||
		!o.RequireRecipientValidSince.IsZero() || o.DeliverBy != nil || o.MTPriority != nil
}

// checkORcpt checks the ORCPT address go-smtp decoded from xtext: valid
// UTF-8 without controls.
func checkORcpt(addr string) *smtp.SMTPError {
	if !utf8.ValidString(addr) || strings.ContainsFunc(addr, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return errORcptInvalid
	}
	return nil
}

// checkHelo refuses a HELO or EHLO name go-smtp would echo with a NUL, CR or
// other control character in it.
func checkHelo(name string) *smtp.SMTPError {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < ' ' || c == 0x7f {
			return errBadHelo
		}
	}
	return nil
}
