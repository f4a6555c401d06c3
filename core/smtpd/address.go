package smtpd

import (
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// Replies to addresses and parameters go-smtp parsed but did not check.
var (
	// RFC 5321 §2.3.8: CR and LF occur only together, as line ends.
	errAddrBareCR = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Bare CR or LF in command"}
	// RFC 3463 X.6.0: other or undefined media error; NUL is no text.
	errAddrNUL = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "NUL in command"}
	// RFC 6531 §3.5: non-ASCII addresses need SMTPUTF8.
	errAddrNonASCII = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7}, Message: "Non-ASCII address without SMTPUTF8"}
	errSenderSyntax = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Bad sender address syntax"}
	errRcptSyntax   = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient address syntax"}
	errORcptInvalid = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "Malformed ORCPT"}
	// RFC 5321 §4.5.1 requires a postmaster; a server without accounts has
	// nobody to deliver to.
	errNoPostmaster = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No postmaster here"}
	// A HELO or EHLO name with a NUL or bare CR would go back into the reply.
	errBadHelo = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Invalid HELO/EHLO domain"}
)

// checkAddress checks a MAIL FROM (sender) or RCPT TO address as go-smtp
// parsed it, quotes and backslashes of the local part removed, and parses
// it: the one place an envelope address becomes a mailaddr.Address. Its
// parser takes any byte but space, tab and '>' in the domain and any but
// specials in the local part, so NUL, bare CR, non-ASCII bytes, over-long
// parts and names that are no domain get through it. The null
// reverse-path "" is valid, and the zero Address.
func checkAddress(addr string, sender, smtputf8 bool) (mailaddr.Address, *smtp.SMTPError) {
	syntax := errRcptSyntax
	if sender {
		syntax = errSenderSyntax
	}
	ascii := true
	for i := 0; i < len(addr); i++ {
		switch c := addr[i]; {
		case c == 0:
			return mailaddr.Address{}, errAddrNUL
		case c == '\r' || c == '\n':
			return mailaddr.Address{}, errAddrBareCR
		case c < ' ' || c == 0x7f:
			return mailaddr.Address{}, syntax // RFC 5321 §4.1.2 has no controls.
		case c >= 0x80:
			ascii = false
		}
	}
	if !ascii {
		if !smtputf8 {
			return mailaddr.Address{}, errAddrNonASCII
		}
		if !utf8.ValidString(addr) {
			return mailaddr.Address{}, syntax // RFC 6531 §3.3: UTF-8 (RFC 3629).
		}
	}
	if addr == "" {
		return mailaddr.Address{}, nil
	}
	// RFC 5321 §4.1.2 and §4.5.3.1; a U-label domain must be valid IDNA
	// (RFC 6531 §3.3, RFC 5891), an A-label one the encoding of a U-label.
	a, err := mailaddr.ParseAddress(addr)
	if err != nil {
		return mailaddr.Address{}, syntax
	}
	return a, nil
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
