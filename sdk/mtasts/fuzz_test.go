package mtasts

import (
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// recordABNF is the sts-text-record of RFC 8461 §3.1, written out
// independently of ParseRecord, and with the one tolerance ParseRecord
// allows itself: trailing spaces or tabs without a final ";".
var recordABNF = regexp.MustCompile(`^v=STSv1(?:[ \t]*;[ \t]*(?:[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}=[\x21-\x3a\x3c\x3e-\x7e]+))+(?:[ \t]*;)?[ \t]*$`)

// FuzzParseRecord parses fuzzed TXT records. Invariants: an accepted record
// is sts-text-record (§3.1) with an id of 1-32 alphanumerics and
// well-formed extensions; a record of that grammar with exactly one valid
// id field is accepted; a record written back in that form parses to the
// same; rejections wrap ErrRecordSyntax; FindRecord agrees with
// ParseRecord on a single record.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"v=STSv1; id=20160831085700Z;",
		"v=STSv1;id=1",
		"v=STSv1 ; id=abc ; ext=val ;",
		"v=STSv1; id=abc; id=def",
		"v=STSv1; id=",
		"v=STSv1; id=" + strings.Repeat("a", 33),
		"v=STSv1; ext=1",
		"v=STSv1;; id=1",
		"v=STSv10; id=1",
		" v=STSv1; id=1",
		"v=STSv1; id=1; _x=1",
		"v=STSv1; id=1; x=a=b",
		"v=STSv1; id=1; x.y-z=!",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, txt string) {
		r, err := ParseRecord(txt)
		grammar := recordABNF.MatchString(txt)
		if err != nil {
			if !errors.Is(err, ErrRecordSyntax) {
				t.Fatalf("%q: error %v does not wrap ErrRecordSyntax", txt, err)
			}
			if grammar && oneValidID(txt) {
				t.Fatalf("%q: rejected (%v), but it is a valid record with one id", txt, err)
			}
		} else {
			if !grammar {
				t.Fatalf("%q: accepted as %+v, but it is not sts-text-record", txt, r)
			}
			if r.Version != "STSv1" || !validID(r.ID) {
				t.Fatalf("%q: accepted as %+v", txt, r)
			}
			s := "v=STSv1; id=" + r.ID
			for _, e := range r.Extensions {
				if e.Key == "id" || !validExtName(e.Key) || !validExtValue(e.Value) {
					t.Fatalf("%q: bad extension %+v", txt, e)
				}
				s += "; " + e.Key + "=" + e.Value
			}
			if r2, err := ParseRecord(s); err != nil || !reflect.DeepEqual(r, r2) {
				t.Fatalf("%q: parsed as %+v, written %q, reparsed %+v, %v", txt, r, s, r2, err)
			}
		}
		fr, ferr := FindRecord([]string{txt})
		switch {
		case !strings.HasPrefix(txt, "v=STSv1"):
			if !errors.Is(ferr, ErrNoRecord) {
				t.Fatalf("%q: FindRecord: %v, want ErrNoRecord", txt, ferr)
			}
		case err != nil:
			if !errors.Is(ferr, ErrNoRecord) || !errors.Is(ferr, ErrRecordSyntax) {
				t.Fatalf("%q: FindRecord: %v, want ErrNoRecord and ErrRecordSyntax", txt, ferr)
			}
		case ferr != nil || !reflect.DeepEqual(fr, r):
			t.Fatalf("%q: FindRecord: %+v, %v; ParseRecord %+v", txt, fr, ferr, r)
		}
	})
}

var idABNF = regexp.MustCompile(`^[A-Za-z0-9]{1,32}$`)

// oneValidID reports whether exactly one field of a record is "id=" and
// its value is 1-32 alphanumerics.
func oneValidID(txt string) bool {
	n := 0
	for _, f := range strings.Split(txt, ";")[1:] {
		v, ok := strings.CutPrefix(strings.Trim(f, " \t"), "id=")
		if !ok {
			continue
		}
		if !idABNF.MatchString(v) {
			return false
		}
		n++
	}
	return n == 1
}

// mxPatternABNF is ["*."] Domain, the mx value of RFC 8461 §3.2, with
// Domain's LDH labels (RFC 5321 §4.1.2) and an optional trailing dot.
var mxPatternABNF = regexp.MustCompile(`^(?:\*\.)?[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$`)

// policyExtValueABNF is sts-policy-ext-value (§3.2) for valid UTF-8:
// runs of visible characters (sts-policy-vchar: not a control, space or
// DEL) separated by spaces and tabs.
var policyExtValueABNF = regexp.MustCompile(`^[^\x00-\x20\x7f]+(?:[ \t]+[^\x00-\x20\x7f]+)*$`)

// FuzzParsePolicy parses fuzzed policy files and matches a fuzzed host
// against the result. Invariants: an accepted policy has version STSv1, a
// mode of enforce, testing or none, a max_age of whole seconds within
// 0..31557600, mx patterns of ["*."] Domain and at least one unless the
// mode is none, and extensions of the §3.2 grammar; String (the form the
// cache stores) parses back to the same policy; rejections wrap ErrPolicy;
// MatchMX matches only a host a pattern names (§4.1).
func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{
		"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n",
		"version: STSv1\nmode: testing\nmx: mx.example.org.\nmax_age: 86400\n",
		"version: STSv1\nmode: none\nmax_age: 0\n",
		"version: STSv1\nmode: enforce\nmax_age: 86400\n",
		"version: STSv1\nmode: enforce\nmx: mx.example.org\nmax_age: 31557601\n",
		"version: STSv1\nmode: enforce\nmx: mx.example.org\nmax_age: 00000000001\n",
		"version: STSv1\nmode: enforce\nmx: *.*.example.org\nmax_age: 1\n",
		"version: STSv1\nmode: enforce\nmx: -mx.example.org\nmax_age: 1\n",
		"version: STSv1\nmode: Enforce\nmx: mx.example.org\nmax_age: 1\n",
		"version: STSv1\nversion: STSv1\nmode: none\nmax_age: 1\n",
		"version:STSv1\nmode:\tnone \t\nmax_age:1\next-1: a value with spaces\n",
		"version: STSv1\nmode: none\nmax_age: 1\nx: caf\u00e9\n",
		"version: STSv1\nmode: none\nmax_age: 1\nx:\n",
		"version: STSv1\nmode: none\nmax_age: 1\n_x: y\n",
		"mode enforce\n",
		"",
	} {
		f.Add([]byte(s), "mx.example.org")
	}
	f.Add([]byte("version: STSv1\nmode: enforce\nmx: *.example.net\nmax_age: 1\n"), "a.b.example.net.")
	f.Add([]byte("version: STSv1\nmode: enforce\nmx: *.example.net\nmax_age: 1\n"), "A.EXAMPLE.NET.")
	f.Fuzz(func(t *testing.T, body []byte, host string) {
		p, err := ParsePolicy(body)
		if err != nil {
			if !errors.Is(err, ErrPolicy) {
				t.Fatalf("%q: error %v does not wrap ErrPolicy", body, err)
			}
			return
		}
		switch {
		case p.Version != "STSv1":
			t.Fatalf("%q: version %q", body, p.Version)
		case p.Mode != ModeEnforce && p.Mode != ModeTesting && p.Mode != ModeNone:
			t.Fatalf("%q: mode %q", body, p.Mode)
		case p.MaxAge < 0 || p.MaxAge > MaxMaxAge || p.MaxAge%time.Second != 0:
			t.Fatalf("%q: max_age %v", body, p.MaxAge)
		case len(p.MX) == 0 && p.Mode != ModeNone:
			t.Fatalf("%q: mode %s without mx", body, p.Mode)
		}
		for _, mx := range p.MX {
			if !mxPatternABNF.MatchString(mx) || len(strings.TrimSuffix(strings.TrimPrefix(mx, "*."), ".")) > 253 {
				t.Fatalf("%q: mx pattern %q", body, mx)
			}
		}
		for _, e := range p.Extensions {
			if !validExtName(e.Key) || isKnownField(e.Key) || e.Key == "mx" || !utf8.ValidString(e.Value) || !policyExtValueABNF.MatchString(e.Value) {
				t.Fatalf("%q: extension %+v is not sts-policy-ext-name: sts-policy-ext-value", body, e)
			}
		}
		s := p.String()
		if p2, err := ParsePolicy([]byte(s)); err != nil || !reflect.DeepEqual(p, p2) {
			t.Fatalf("%q: parsed as %+v, written %q, reparsed %+v, %v", body, p, s, p2, err)
		}
		if p.MatchMX(host) {
			h := strings.ToLower(strings.TrimSuffix(host, "."))
			named := false
			for _, mx := range p.MX {
				pat := strings.ToLower(strings.TrimSuffix(mx, "."))
				if rest, ok := strings.CutPrefix(pat, "*."); ok {
					i := strings.IndexByte(h, '.')
					named = named || i > 0 && h[i+1:] == rest
				} else {
					named = named || h == pat
				}
			}
			if !named {
				t.Fatalf("host %q matched %q", host, p.MX)
			}
		}
	})
}
