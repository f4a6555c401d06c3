package mtasts

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
)

// Record is a parsed _mta-sts TXT record (RFC 8461 §3.1).
type Record struct {
	Version    string // Always "STSv1".
	ID         string // 1-32 alphanumerics; a change announces a new policy.
	Extensions []Extension
}

// LookupTXTFunc returns the TXT records at name (absolute, with a trailing
// dot), each with its strings concatenated. A name without TXT records
// yields no records and a nil error, or an error wrapping ErrNoRecord, or a
// *net.DNSError with IsNotFound; any other error counts as temporary.
type LookupTXTFunc func(ctx context.Context, name string) ([]string, error)

// ParseRecord parses one TXT record:
// "v=STSv1; id=20160831085700Z;" (§3.1). Errors wrap ErrRecordSyntax.
func ParseRecord(txt string) (*Record, error) {
	fields := strings.Split(txt, ";")
	// A trailing ";" is allowed (§3.1), leaving one empty field.
	if n := len(fields); n > 1 && strings.TrimRight(fields[n-1], " \t") == "" {
		fields = fields[:n-1]
	}
	// The version comes first, without leading space (§3.1: sts-text-record).
	if strings.TrimRight(fields[0], " \t") != "v=STSv1" {
		return nil, fmt.Errorf("%w: record must start with v=STSv1: %q", ErrRecordSyntax, txt)
	}
	r := &Record{Version: "STSv1"}
	for _, f := range fields[1:] {
		f = strings.Trim(f, " \t")
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("%w: field %q is not key=value", ErrRecordSyntax, f)
		}
		switch {
		case k == "id":
			if r.ID != "" {
				return nil, fmt.Errorf("%w: duplicate id", ErrRecordSyntax)
			}
			if !validID(v) {
				return nil, fmt.Errorf("%w: id %q is not 1-32 alphanumerics", ErrRecordSyntax, v)
			}
			r.ID = v
		case validExtName(k) && validExtValue(v):
			r.Extensions = append(r.Extensions, Extension{Key: k, Value: v})
		default:
			return nil, fmt.Errorf("%w: bad extension field %q", ErrRecordSyntax, f)
		}
	}
	if r.ID == "" {
		return nil, fmt.Errorf("%w: missing id", ErrRecordSyntax)
	}
	return r, nil
}

// FindRecord picks the MTA-STS record among the TXT records of
// _mta-sts.<domain>: records not starting with "v=STSv1" are ignored, and
// exactly one must remain and parse (§3.1). Otherwise the error wraps
// ErrNoRecord (and ErrRecordSyntax for a malformed one).
func FindRecord(txts []string) (*Record, error) {
	var found []string
	for _, t := range txts {
		if strings.HasPrefix(t, "v=STSv1") {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return nil, ErrNoRecord
	case 1:
	default:
		return nil, fmt.Errorf("%w: %d records start with v=STSv1", ErrNoRecord, len(found))
	}
	r, err := ParseRecord(found[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoRecord, err)
	}
	return r, nil
}

// LookupRecord looks up and parses the TXT record at _mta-sts.<domain>
// (§3.1). Errors wrap ErrNoRecord or ErrTemporary.
func LookupRecord(ctx context.Context, lookupTXT LookupTXTFunc, domain string) (*Record, error) {
	name := "_mta-sts." + strings.TrimSuffix(domain, ".") + "."
	txts, err := lookupTXT(ctx, name)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.Is(err, ErrNoRecord) || errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return nil, fmt.Errorf("%w: %s: %v", ErrNoRecord, name, err)
		}
		return nil, fmt.Errorf("%w: txt %s: %w", ErrTemporary, name, err)
	}
	r, err := FindRecord(txts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return r, nil
}

// validID reports whether s is 1*32(ALPHA / DIGIT) (§3.1).
func validID(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for _, c := range []byte(s) {
		if !isAlnum(c) {
			return false
		}
	}
	return true
}

// validExtName reports whether s is (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_"
// / "-" / "."), the extension name of §3.1 and §3.2.
func validExtName(s string) bool {
	if len(s) == 0 || len(s) > 32 || !isAlnum(s[0]) {
		return false
	}
	for _, c := range []byte(s[1:]) {
		if !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// validExtValue reports whether s is 1*(%x21-3A / %x3C / %x3E-7E): visible
// characters except "=" and ";" (§3.1).
func validExtValue(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < 0x21 || c > 0x7e || c == '=' || c == ';' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
