package mtasts

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Mode is a policy's mode (RFC 8461 §3.2, §5).
type Mode string

// Policy modes (§3.2).
const (
	// ModeEnforce: deliver only to matching MX hosts over PKIX-verified TLS (§5).
	ModeEnforce Mode = "enforce"
	// ModeTesting: report failures (RFC 8460) but deliver anyway (§5).
	ModeTesting Mode = "testing"
	// ModeNone: the domain has no active policy (§3.2, §8.3).
	ModeNone Mode = "none"
)

// MaxMaxAge is the largest max_age a policy may carry, about a year (§3.2).
const MaxMaxAge = 31557600 * time.Second

// Policy is a parsed MTA-STS policy file (§3.2).
type Policy struct {
	Version    string        // Always "STSv1".
	Mode       Mode          // enforce, testing or none.
	MX         []string      // Patterns: a host name or "*." and a domain (§4.1).
	MaxAge     time.Duration // Whole seconds, at most MaxMaxAge.
	Extensions []Extension   // Unknown fields, ignored (§3.2).
}

// Enforce reports whether the policy is in mode enforce: only matching MX
// hosts with PKIX-verified STARTTLS may be used, and failures are temporary
// (§5).
func (p *Policy) Enforce() bool { return p != nil && p.Mode == ModeEnforce }

// Testing reports whether the policy is in mode testing: failures are logged
// or reported, and delivery proceeds (§5).
func (p *Policy) Testing() bool { return p != nil && p.Mode == ModeTesting }

// ParsePolicy parses a policy file: "key: value" lines separated by CRLF or
// LF (§3.2). version, mode and max_age are required and may appear once; mx
// may repeat and is required unless the mode is none. Unknown fields are
// kept as extensions. Errors wrap ErrPolicy and name the line.
func ParsePolicy(body []byte) (*Policy, error) {
	p := &Policy{}
	seen := map[string]bool{}
	for i, line := range bytes.Split(body, []byte("\n")) {
		lineno := i + 1
		s := strings.TrimSuffix(string(line), "\r")
		// Trailing WSP is allowed after a field (§3.2: sts-policy-field *WSP);
		// blank lines are tolerated, notably the one after a final newline.
		s = strings.TrimRight(s, " \t")
		if s == "" {
			continue
		}
		k, v, ok := strings.Cut(s, ":")
		if !ok {
			return nil, fmt.Errorf("%w: line %d: missing colon: %q", ErrPolicy, lineno, s)
		}
		// Field names are case-sensitive (%s in the ABNF of §3.2).
		v = strings.TrimLeft(v, " \t")
		if seen[k] && isKnownField(k) {
			return nil, fmt.Errorf("%w: line %d: duplicate %s", ErrPolicy, lineno, k)
		}
		seen[k] = true
		switch k {
		case "version":
			if v != "STSv1" {
				return nil, fmt.Errorf("%w: line %d: version %q, want STSv1", ErrPolicy, lineno, v)
			}
			p.Version = v
		case "mode":
			switch m := Mode(v); m {
			case ModeEnforce, ModeTesting, ModeNone:
				p.Mode = m
			default:
				return nil, fmt.Errorf("%w: line %d: mode %q, want enforce, testing or none", ErrPolicy, lineno, v)
			}
		case "max_age":
			// 1*10(DIGIT), at most 31557600 (§3.2).
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil || len(v) > 10 {
				return nil, fmt.Errorf("%w: line %d: max_age %q is not 1-10 digits", ErrPolicy, lineno, v)
			}
			if n > uint64(MaxMaxAge/time.Second) {
				return nil, fmt.Errorf("%w: line %d: max_age %d exceeds %d", ErrPolicy, lineno, n, int64(MaxMaxAge/time.Second))
			}
			p.MaxAge = time.Duration(n) * time.Second
		case "mx":
			if !validMXPattern(v) {
				return nil, fmt.Errorf("%w: line %d: bad mx pattern %q", ErrPolicy, lineno, v)
			}
			p.MX = append(p.MX, v)
		default:
			if !validExtName(k) || !validPolicyExtValue(v) {
				return nil, fmt.Errorf("%w: line %d: bad field %q", ErrPolicy, lineno, s)
			}
			p.Extensions = append(p.Extensions, Extension{Key: k, Value: v})
		}
	}
	for _, k := range []string{"version", "mode", "max_age"} {
		if !seen[k] {
			return nil, fmt.Errorf("%w: missing %s", ErrPolicy, k)
		}
	}
	if len(p.MX) == 0 && p.Mode != ModeNone {
		return nil, fmt.Errorf("%w: mode %s without mx", ErrPolicy, p.Mode)
	}
	return p, nil
}

// String formats the policy as a policy file with CRLF line endings (§3.2).
func (p *Policy) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: STSv1\r\nmode: %s\r\n", p.Mode)
	for _, mx := range p.MX {
		fmt.Fprintf(&b, "mx: %s\r\n", mx)
	}
	fmt.Fprintf(&b, "max_age: %d\r\n", int64(p.MaxAge/time.Second))
	for _, e := range p.Extensions {
		fmt.Fprintf(&b, "%s: %s\r\n", e.Key, e.Value)
	}
	return b.String()
}

// MatchMX reports whether host is allowed by one of the policy's mx
// patterns (§4.1): comparison ignores case and a trailing dot, and
// "*.example.com" matches exactly one extra leftmost label, so it matches
// "mx.example.com" but neither "example.com" nor "a.b.example.com". Host
// and patterns are compared as given; pass A-labels for IDNs.
func (p *Policy) MatchMX(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return false
	}
	for _, pat := range p.MX {
		pat = strings.ToLower(strings.TrimSuffix(pat, "."))
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			label, parent, found := strings.Cut(host, ".")
			if found && label != "" && parent == rest {
				return true
			}
			continue
		}
		if host == pat {
			return true
		}
	}
	return false
}

// isKnownField reports whether k is a field of §3.2 that may appear once.
func isKnownField(k string) bool {
	return k == "version" || k == "mode" || k == "max_age"
}

// validPolicyExtValue reports whether s is sts-policy-ext-value (§3.2):
// visible ASCII or UTF-8 characters, spaces and tabs only between them. A
// control character (an ESC for a terminal, a NUL) is refused, so that
// extensions kept for logging are text.
func validPolicyExtValue(s string) bool {
	if s == "" || !utf8.ValidString(s) || isWSP(s[0]) || isWSP(s[len(s)-1]) {
		return false
	}
	for _, c := range []byte(s) {
		if c < 0x21 && !isWSP(c) || c == 0x7f {
			return false
		}
	}
	return true
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

// validMXPattern reports whether s is ["*."] Domain (§3.2): dot-separated
// labels of letters, digits and inner hyphens, with an optional trailing
// dot.
func validMXPattern(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	s = strings.TrimSuffix(s, ".")
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range []byte(l) {
			if !isAlnum(c) && c != '-' {
				return false
			}
		}
	}
	return true
}
