package mailaddr

import (
	"errors"
	"strings"
	"testing"
)

func TestParseDomain(t *testing.T) {
	for _, tc := range []struct{ in, ascii, unicode string }{
		{"example.org", "example.org", "example.org"},
		{"Example.ORG.", "example.org", "example.org"},
		{"bücher.example", "xn--bcher-kva.example", "bücher.example"},
		{"BÜCHER.example.", "xn--bcher-kva.example", "bücher.example"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example", "bücher.example"},
		{"XN--BCHER-KVA.Example", "xn--bcher-kva.example", "bücher.example"},
		{"bu\u0308cher.example", "xn--bcher-kva.example", "bücher.example"}, // NFD in, NFC out.
		{"faß.de", "xn--fa-hia.de", "faß.de"},                               // Non-transitional (RFC 5891).
		{"a-b.c1", "a-b.c1", "a-b.c1"},
	} {
		d, err := ParseDomain(tc.in)
		if err != nil || d.ASCII != tc.ascii || d.Unicode != tc.unicode {
			t.Errorf("ParseDomain(%q) = %+v, %v; want %s %s", tc.in, d, err, tc.ascii, tc.unicode)
		}
	}
	a, _ := ParseDomain("bücher.example")
	b, _ := ParseDomain("xn--bcher-kva.example.")
	if a != b {
		t.Errorf("%+v != %+v", a, b)
	}
	for _, in := range []string{
		"", ".", "..", ".example", "a..b", "-a.example", "a-.example", "a_b.example",
		"a b.example", "a\x00b", "exa\rmple", "[127.0.0.1]", "xn--zz.example", "xn--.example",
		"\xff.example", strings.Repeat("a", 64) + ".example", strings.Repeat("a.", 128) + "a",
		"xn--bcher-kva.example..",
	} {
		if d, err := ParseDomain(in); err == nil || !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseDomain(%q) = %+v, %v; want ErrInvalid", in, d, err)
		}
	}
}

func TestParseAddress(t *testing.T) {
	a, err := ParseAddress("Alice@BÜCHER.example")
	if err != nil || a.Localpart != "Alice" || a.Domain.ASCII != "xn--bcher-kva.example" || a.String() != "Alice@bücher.example" || a.Key() != "Alice@xn--bcher-kva.example" {
		t.Errorf("%+v %v", a, err)
	}
	l, err := ParseAddress("postmaster@[192.0.2.1]")
	if err != nil || l.Literal != "[192.0.2.1]" || !l.Domain.IsZero() || l.String() != "postmaster@[192.0.2.1]" {
		t.Errorf("%+v %v", l, err)
	}
	q, err := ParseAddress("a@b@example.org")
	if err != nil || q.Localpart != "a@b" {
		t.Errorf("%+v %v", q, err)
	}
	for _, in := range []string{"", "@", "a@", "@example.org", "a@[]", "a@[1", "a@-x.example", strings.Repeat("x", 65) + "@example.org", "a@b..c"} {
		if _, err := ParseAddress(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseAddress(%q) = %v", in, err)
		}
	}
}
