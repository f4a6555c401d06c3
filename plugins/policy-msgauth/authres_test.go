package policymsgauth

import (
	"fmt"
	"strings"
	"testing"
)

// parsedResult is a resinfo as a reader of the field sees it.
type parsedResult struct {
	method, value, reason string
	props                 map[string]string
}

// arParser reads an unfolded Authentication-Results value strictly by the
// grammar of RFC 8601 §2.2, independently of the formatter under test.
type arParser struct {
	s string
	i int
}

func (p *arParser) errorf(format string, args ...any) error {
	return fmt.Errorf("at %d of %q: %s", p.i, p.s, fmt.Sprintf(format, args...))
}

// cfws skips white space and comments (RFC 5322 §3.2.2).
func (p *arParser) cfws() error {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t':
			p.i++
		case '(':
			depth := 0
			for {
				if p.i >= len(p.s) {
					return p.errorf("unterminated comment")
				}
				c := p.s[p.i]
				p.i++
				switch c {
				case '\\':
					p.i++
				case '(':
					depth++
				case ')':
					depth--
				}
				if depth == 0 {
					break
				}
			}
		default:
			return nil
		}
	}
	return nil
}

func (p *arParser) peek(c byte) bool { return p.i < len(p.s) && p.s[p.i] == c }

func (p *arParser) expect(c byte) error {
	if !p.peek(c) {
		return p.errorf("want %q", c)
	}
	p.i++
	return nil
}

// keyword is letters, digits and hyphens (RFC 8601 §2.2, RFC 5321 Keyword).
func (p *arParser) keyword() (string, error) {
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			break
		}
		p.i++
	}
	if p.i == start {
		return "", p.errorf("want a keyword")
	}
	return p.s[start:p.i], nil
}

// value is a token or a quoted-string (RFC 2045 §5.1); with addr, also a
// [local-part] "@" domain-name (the pvalue of RFC 8601 §2.2).
func (p *arParser) value(addr bool) (string, error) {
	if p.peek('"') {
		p.i++
		var b strings.Builder
		for {
			if p.i >= len(p.s) {
				return "", p.errorf("unterminated quoted-string")
			}
			c := p.s[p.i]
			p.i++
			switch c {
			case '"':
				return b.String(), nil
			case '\\':
				if p.i >= len(p.s) {
					return "", p.errorf("quoted-pair at the end")
				}
				c = p.s[p.i]
				p.i++
			}
			b.WriteByte(c)
		}
	}
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c <= ' ' || c >= 0x7f || c == ';' || c == '(' || !addr && strings.IndexByte(tspecials, c) >= 0 {
			break
		}
		p.i++
	}
	v := p.s[start:p.i]
	if isToken(v) {
		return v, nil
	}
	if local, domain, ok := strings.Cut(v, "@"); addr && ok && (local == "" || isDotAtom(local)) && isDomainName(domain) {
		return v, nil
	}
	p.i = start
	return "", p.errorf("want a value")
}

// parseAR checks that field is one well-formed Authentication-Results
// header field, and returns its authserv-id and results.
func parseAR(field string) (string, []parsedResult, error) {
	rest, ok := strings.CutPrefix(field, "Authentication-Results:")
	if !ok || !strings.HasSuffix(field, "\r\n") {
		return "", nil, fmt.Errorf("not a field ending in CRLF: %q", field)
	}
	lines := strings.Split(strings.TrimSuffix(field, "\r\n"), "\r\n")
	for i, l := range lines {
		if len(l) > 998 { // RFC 5322 §2.1.1.
			return "", nil, fmt.Errorf("line %d longer than 998: %q", i, l)
		}
		if i > 0 && (l == "" || l[0] != ' ' && l[0] != '\t' || strings.Trim(l, " \t") == "") {
			return "", nil, fmt.Errorf("line %d is not a continuation: %q", i, l)
		}
		for _, c := range []byte(l) {
			if (c < ' ' || c >= 0x7f) && c != '\t' {
				return "", nil, fmt.Errorf("line %d has octet %#x: %q", i, c, l)
			}
		}
	}
	p := &arParser{s: strings.ReplaceAll(strings.TrimSuffix(rest, "\r\n"), "\r\n", "")}
	if err := p.cfws(); err != nil {
		return "", nil, err
	}
	id, err := p.value(false)
	if err != nil {
		return "", nil, err
	}
	var results []parsedResult
	for {
		if err := p.cfws(); err != nil {
			return "", nil, err
		}
		if p.i == len(p.s) {
			break
		}
		if err := p.expect(';'); err != nil {
			return "", nil, err
		}
		if err := p.cfws(); err != nil {
			return "", nil, err
		}
		method, err := p.keyword()
		if err != nil {
			return "", nil, err
		}
		if method == "none" && len(results) == 0 {
			continue
		}
		r := parsedResult{method: method, props: map[string]string{}}
		if err := p.cfws(); err != nil {
			return "", nil, err
		}
		if err := p.expect('='); err != nil {
			return "", nil, err
		}
		if err := p.cfws(); err != nil {
			return "", nil, err
		}
		if r.value, err = p.keyword(); err != nil {
			return "", nil, err
		}
		for {
			if err := p.cfws(); err != nil {
				return "", nil, err
			}
			if p.i == len(p.s) || p.peek(';') {
				break
			}
			name, err := p.keyword()
			if err != nil {
				return "", nil, err
			}
			if name != "reason" {
				if err := p.expect('.'); err != nil {
					return "", nil, err
				}
				property, err := p.keyword()
				if err != nil {
					return "", nil, err
				}
				name += "." + property
			} else if len(r.props) > 0 {
				return "", nil, p.errorf("reason after properties")
			}
			if err := p.cfws(); err != nil {
				return "", nil, err
			}
			if err := p.expect('='); err != nil {
				return "", nil, err
			}
			if err := p.cfws(); err != nil {
				return "", nil, err
			}
			v, err := p.value(name != "reason")
			if err != nil {
				return "", nil, err
			}
			if name == "reason" {
				r.reason = v
			} else {
				r.props[name] = v
			}
		}
		results = append(results, r)
	}
	return id, results, nil
}

func TestFormatResults(t *testing.T) {
	long := strings.Repeat("x", 300)
	results := []result{
		{method: "spf", value: "pass", props: []prop{{"smtp.mailfrom", "example.com"}}},
		{method: "spf", value: "none", props: []prop{{"smtp.helo", "[192.0.2.1]"}}},
		{method: "dkim", value: "fail", reason: "body hash did not verify", props: []prop{
			{"header.d", "example.com"}, {"header.s", "sel"}, {"header.a", "rsa-sha256"}, {"header.b", "ab+/cd=="},
		}},
		// Values a peer chose: a header injection, quotes, backslashes,
		// non-ASCII, and a very long one.
		{method: "dkim", value: "permerror", reason: "evil\r\nX-Injected: yes", props: []prop{
			{"header.d", "a\"b\\c"}, {"header.s", "sél"}, {"header.a", long}, {"header.b", ""},
		}},
		{method: "dmarc", value: "fail", comment: "p=reject dis=reject", props: []prop{{"header.from", "example.com"}}},
		{method: "iprev", value: "pass", comment: "mail.example.com (x)", props: []prop{{"policy.iprev", "2001:db8::1"}}},
		{method: "spf", value: "pass", props: []prop{{"smtp.mailfrom", "postmaster@mail.example.com"}}},
	}
	f := formatResults("mx.example.org", results)
	id, got, err := parseAR(f)
	if err != nil {
		t.Fatalf("%v\n%s", err, f)
	}
	if id != "mx.example.org" || len(got) != len(results) {
		t.Fatalf("id %q, %d results:\n%s", id, len(got), f)
	}
	for _, l := range strings.Split(strings.TrimSuffix(f, "\r\n"), "\r\n") {
		if len(l) >= 78 && !strings.Contains(l, long[:maxValueLen]) {
			t.Errorf("line of %d characters: %q", len(l), l)
		}
	}
	if strings.Contains(f, "\r\nX-Injected") {
		t.Errorf("header injected:\n%s", f)
	}
	for i, want := range []map[string]string{
		{"smtp.mailfrom": "example.com"},
		{"smtp.helo": "[192.0.2.1]"},
		{"header.d": "example.com", "header.s": "sel", "header.a": "rsa-sha256", "header.b": "ab+/cd=="},
		{"header.d": `a"b\c`, "header.s": "s??l", "header.a": long[:maxValueLen]},
		{"header.from": "example.com"},
		{"policy.iprev": "2001:db8::1"},
		{"smtp.mailfrom": "postmaster@mail.example.com"},
	} {
		if fmt.Sprint(got[i].props) != fmt.Sprint(want) {
			t.Errorf("result %d: props %v, want %v", i, got[i].props, want)
		}
	}
	if got[2].reason != "body hash did not verify" || got[3].reason != "evil??X-Injected: yes" {
		t.Errorf("reasons %q, %q", got[2].reason, got[3].reason)
	}
	if !strings.Contains(f, "dmarc=fail (p=reject dis=reject) header.from=example.com") || !strings.Contains(f, `(mail.example.com \(x\))`) {
		t.Errorf("comments:\n%s", f)
	}

	if f := formatResults("mx.example.org", nil); f != "Authentication-Results: mx.example.org; none\r\n" {
		t.Errorf("no results: %q", f)
	}
	if _, _, err := parseAR(formatResults("mx.example.org", nil)); err != nil {
		t.Error(err)
	}
}

func TestAuthservID(t *testing.T) {
	for _, tc := range []struct {
		v, want string
		ok      bool
	}{
		{" mx.example.org; spf=pass", "mx.example.org", true},
		{"mx.example.org;spf=pass", "mx.example.org", true},
		{" mx.example.org 1; none", "mx.example.org", true},
		{" (comment (nested) \\) ) MX.example.org;", "MX.example.org", true},
		{` "mx.example.org"; none`, "mx.example.org", true},
		{` "mx.ex\"ample"; none`, `mx.ex"ample`, true},
		{`	mx.example.org(c); none`, "mx.example.org", true},
		{` "unterminated`, "", false},
		{" (unterminated comment mx.example.org", "", false},
		{"  ", "", false},
		{"; spf=pass", "", false},
	} {
		id, ok := authservID(tc.v)
		if id != tc.want || ok != tc.ok {
			t.Errorf("authservID(%q) = %q, %v; want %q, %v", tc.v, id, ok, tc.want, tc.ok)
		}
	}
}

func TestParseDMARC(t *testing.T) {
	for _, tc := range []struct {
		txt     string
		want    string // fmt of the record; "" for none
		isDMARC bool
		err     bool
	}{
		{"v=DMARC1; p=reject", "p=reject sp= adkim=r aspf=r pct=100", true, false},
		{"v=DMARC1;p=quarantine;sp=none;adkim=s;aspf=s;pct=20", "p=quarantine sp=none adkim=s aspf=s pct=20", true, false},
		{"V = DMARC1 ; P = Reject ; ADKIM = S", "p=reject sp= adkim=s aspf=r pct=100", true, false},
		{"v=DMARC1; p=none; pct=101; adkim=x; aspf=; foo=bar", "p=none sp= adkim=r aspf=r pct=100", true, false},
		{"v=DMARC1; p=reject; pct=+5", "p=reject sp= adkim=r aspf=r pct=100", true, false},
		{"v=DMARC1; p=reject; p=none", "p=reject sp= adkim=r aspf=r pct=100", true, false}, // First wins.
		{"v=DMARC1; p=reject; pct=0", "p=reject sp= adkim=r aspf=r pct=0", true, false},
		// RFC 7489 §6.6.3 step 6: no valid p, a valid rua: p=none.
		{"v=DMARC1; p=bogus; rua=mailto:d@example.com", "p=none sp= adkim=r aspf=r pct=100", true, false},
		{"v=DMARC1; rua=mailto:d@example.com", "p=none sp= adkim=r aspf=r pct=100", true, false},
		{"v=DMARC1; p=reject; sp=bogus; rua=mailto:d@example.com!10m", "p=none sp= adkim=r aspf=r pct=100", true, false},
		{"v=DMARC1; p=bogus", "", true, true},
		{"v=DMARC1; p=reject; sp=bogus; rua=nourl", "", true, true},
		{"v=DMARC1", "", true, true},
		{"v=dmarc1; p=reject", "", false, false},
		{"p=reject; v=DMARC1", "", false, false},
		{"v=spf1 -all", "", false, false},
		{"", "", false, false},
	} {
		rec, isDMARC, err := parseDMARC(tc.txt)
		got := ""
		if rec != nil {
			got = fmt.Sprintf("p=%s sp=%s adkim=%c aspf=%c pct=%d", rec.p, rec.sp, rec.adkim, rec.aspf, rec.pct)
		}
		if got != tc.want || isDMARC != tc.isDMARC || (err != nil) != tc.err {
			t.Errorf("parseDMARC(%q) = %q, %v, %v; want %q, %v, err %v", tc.txt, got, isDMARC, err, tc.want, tc.isDMARC, tc.err)
		}
	}
}

func TestAuthorDomain(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   string
		err    error
	}{
		{"From: Alice <alice@Example.COM>\r\n", "example.com", nil},
		{"From: alice@example.com (Alice)\r\n", "example.com", nil},
		{"from:\r\n alice@example.com\r\n", "example.com", nil},
		{"From: =?windows-1252?q?Andr=E9?= <andre@example.com>\r\n", "example.com", nil},
		{"From: =?utf-8?q?=C3=A9?= <x@bücher.example>\r\n", "xn--bcher-kva.example", nil},
		{"From: \"Bank, Inc.\" <x@bank.example>\r\n", "bank.example", nil},
		{"To: x@example.com\r\n", "", errNoFrom},
		{"From: a@example.com\r\nFrom: b@example.net\r\n", "", errMultipleFrom},
		{"From: a@example.com, b@example.net\r\n", "", errFromAddresses},
		{"From: undisclosed:;\r\n", "", errFromAddresses},
		{"From: not an address\r\n", "", errFromSyntax},
		{"From: a@[192.0.2.1]\r\n", "", errFromDomain},
	} {
		got, err := authorDomain(parseHeader([]byte(tc.header + "\r\nbody\r\n")).fields)
		if got != tc.want || err != tc.err {
			t.Errorf("%q: %q, %v; want %q, %v", tc.header, got, err, tc.want, tc.err)
		}
	}
}

func TestParseHeader(t *testing.T) {
	msg := "From: a@example.com\r\n" +
		"Subject: one\r\n two\r\n\tthree\r\n" +
		"no colon here\r\n" +
		" Authentication-Results : x; none\n" + // Continues "no colon here".
		"X-LF: bare\n lf\n" +
		"Empty:\r\n" +
		"\r\n" +
		"Body: not a field\r\n"
	h := parseHeader([]byte(msg))
	var got []string
	for _, f := range h.fields {
		got = append(got, f.name+"|"+f.value)
	}
	want := []string{
		"From| a@example.com",
		"Subject| one two\tthree",
		"no colon here| Authentication-Results : x; none",
		"X-LF| bare lf",
		"Empty|",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("fields\n%q, want\n%q", got, want)
	}
	if !h.complete || h.size != strings.Index(msg, "Body:") {
		t.Errorf("complete %v, size %d", h.complete, h.size)
	}
	if h := parseHeader([]byte("From: a\r\n b")); h.complete || len(h.fields) != 1 || h.fields[0].value != " a b" || h.size != 11 {
		t.Errorf("no empty line: %+v", h)
	}
	if h := parseHeader([]byte(" x\r\ny: z\r\n")); len(h.fields) != 2 || h.fields[0].name != "x" {
		t.Errorf("leading continuation: %+v", h)
	}
	// Lines × octets: 1 × 21 for From, 3 × 28 for Subject.
	if h := parseHeader([]byte("From: a@example.com\r\nSubject: one\r\n two\r\n\tthree\r\n\r\n")); h.foldCost != 21+3*28 {
		t.Errorf("fold cost %d", h.foldCost)
	}
}
