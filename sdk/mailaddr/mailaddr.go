// Package mailaddr holds mail domains and addresses in the forms they are
// compared in. Parse a name once where it enters (an SMTP command, a
// configuration file, a queued record) and compare only the parsed values:
// then bücher.example, BÜCHER.EXAMPLE. and xn--bcher-kva.example are one
// domain everywhere.
package mailaddr

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// Limits of RFC 5321 §4.5.3.1 and RFC 1035 §2.3.4, in octets.
const (
	MaxLocalpart = 64
	MaxDomain    = 255
	maxLabel     = 63
)

// ErrInvalid is the error of a name that is not a domain or an address.
var ErrInvalid = errors.New("invalid")

// profile maps and checks as a lookup does (UTS #46 mapping, which folds
// case; STD3 letters, digits and hyphens; the bidi rule), with RFC 5891's
// non-transitional processing, so ß and ς stay themselves.
var profile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false), idna.StrictDomainName(true), idna.ValidateLabels(true))

// Domain is a domain name in both of its forms. Its zero value is no
// domain. Two Domains name the same domain exactly when they are ==.
type Domain struct {
	// ASCII is the name in lower-case A-labels without a trailing dot:
	// the form compared, used as a key and asked of DNS.
	ASCII string
	// Unicode is the name in lower-case U-labels in NFC (RFC 5891 §5.2):
	// the form shown to people. It equals ASCII for a name without
	// internationalized labels.
	Unicode string
}

// ParseDomain parses a domain name written in A-labels, U-labels or both, in
// any case, with or without one trailing dot.
func ParseDomain(s string) (Domain, error) {
	d, reason := parseDomain(s)
	if reason != "" {
		return Domain{}, fmt.Errorf("%w domain name %q: %s", ErrInvalid, s, reason)
	}
	return d, nil
}

// parseDomain is ParseDomain with the reason a name is refused.
func parseDomain(s string) (Domain, string) {
	name := strings.TrimSuffix(s, ".")
	if name == "" || len(name) > MaxDomain {
		return Domain{}, "empty or over 255 octets"
	}
	ascii := true
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		if err := checkLDH(name); err != nil {
			return Domain{}, err.Error()
		}
		// ToLower allocates nothing for a name already in lower case.
		lower := strings.ToLower(name)
		if !strings.Contains(lower, "xn--") {
			return Domain{ASCII: lower, Unicode: lower}, ""
		}
	}
	a, err := profile.ToASCII(name)
	if err != nil {
		return Domain{}, err.Error()
	}
	u, err := profile.ToUnicode(a)
	if err != nil {
		return Domain{}, err.Error()
	}
	// An A-label must be the encoding of its U-label (RFC 5891 §5.4).
	if back, err := profile.ToASCII(u); err != nil || back != a {
		return Domain{}, "an A-label is not the encoding of a valid U-label"
	}
	if err := checkLDH(a); err != nil {
		return Domain{}, err.Error()
	}
	if len(a) > MaxDomain {
		return Domain{}, "over 255 octets in A-labels"
	}
	return Domain{ASCII: a, Unicode: norm.NFC.String(u)}, ""
}

// checkLDH checks dot-separated labels of letters, digits and inner
// hyphens, each at most 63 octets.
func checkLDH(name string) error {
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > maxLabel {
			return errors.New("empty or over-long label")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("label starts or ends with a hyphen")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("character %q", c)
			}
		}
	}
	return nil
}

// IsZero reports whether d is no domain.
func (d Domain) IsZero() bool { return d.ASCII == "" }

// String returns the Unicode form.
func (d Domain) String() string { return d.Unicode }

// Address is a mailbox address: a localpart at a domain or at an address
// literal (RFC 5321 §4.1.3), such as postmaster@[192.0.2.1].
type Address struct {
	// Localpart as sent, unquoted, in NFC (RFC 6530 §10.1). It is
	// compared exactly or, where the receiving domain says so, ignoring
	// case; that choice is the receiver's, not this package's.
	Localpart string
	// Domain is the domain; zero when Literal is set.
	Domain Domain
	// Literal is an address literal with its brackets, as written.
	Literal string
}

// ParseAddress parses localpart@domain, split at the last '@', as an SMTP
// server has it after removing quotes (the localpart is not checked
// further). The domain is a name as ParseDomain takes it or an address
// literal in brackets.
func ParseAddress(s string) (Address, error) {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return Address{}, fmt.Errorf("%w address %q: want localpart@domain", ErrInvalid, s)
	}
	local, domain := s[:at], s[at+1:]
	if len(local) > MaxLocalpart {
		return Address{}, fmt.Errorf("%w address %q: localpart over %d octets", ErrInvalid, s, MaxLocalpart)
	}
	a := Address{Localpart: norm.NFC.String(local)}
	if strings.HasPrefix(domain, "[") {
		if len(domain) <= 2 || !strings.HasSuffix(domain, "]") || strings.ContainsAny(domain[1:len(domain)-1], "[]\\") || len(domain) > MaxDomain {
			return Address{}, fmt.Errorf("%w address %q: bad address literal", ErrInvalid, s)
		}
		a.Literal = domain
		return a, nil
	}
	d, reason := parseDomain(domain)
	if reason != "" {
		return Address{}, fmt.Errorf("%w address %q: domain: %s", ErrInvalid, s, reason)
	}
	a.Domain = d
	return a, nil
}

// String returns the address with its domain in U-labels.
func (a Address) String() string {
	if a.Literal != "" {
		return a.Localpart + "@" + a.Literal
	}
	return a.Localpart + "@" + a.Domain.Unicode
}

// Key returns the address as it is compared when the localpart is exact:
// the localpart at the domain's A-labels.
func (a Address) Key() string {
	if a.Literal != "" {
		return a.Localpart + "@" + a.Literal
	}
	return a.Localpart + "@" + a.Domain.ASCII
}
