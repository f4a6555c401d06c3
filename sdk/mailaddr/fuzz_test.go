package mailaddr

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseDomain: a parsed domain is in canonical form and both of its
// forms parse back to it; a refused name is never accepted in a wrapper.
func FuzzParseDomain(f *testing.F) {
	for _, s := range []string{"example.org", "Bücher.example.", "xn--bcher-kva.example", "faß.de", "xn--zz", "a..b", "\xff", "ＥＸＡＭＰＬＥ.org"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDomain(s)
		if err != nil {
			if _, aerr := ParseAddress("x@" + s); aerr == nil && !strings.HasPrefix(s, "[") && !strings.Contains(s, "@") {
				t.Fatalf("domain %q refused but accepted in an address", s)
			}
			return
		}
		if d.ASCII == "" || len(d.ASCII) > MaxDomain || strings.ToLower(d.ASCII) != d.ASCII || strings.HasSuffix(d.ASCII, ".") {
			t.Fatalf("%q: ASCII form %q", s, d.ASCII)
		}
		for i := 0; i < len(d.ASCII); i++ {
			if d.ASCII[i] >= 0x80 {
				t.Fatalf("%q: ASCII form %q not ASCII", s, d.ASCII)
			}
		}
		if !utf8.ValidString(d.Unicode) {
			t.Fatalf("%q: Unicode form %q", s, d.Unicode)
		}
		for _, form := range []string{d.ASCII, d.Unicode, d.ASCII + "."} {
			if e, err := ParseDomain(form); err != nil || e != d {
				t.Fatalf("%q: form %q parses to %+v, %v; want %+v", s, form, e, err, d)
			}
		}
		if a, err := ParseAddress("x@" + s); !strings.Contains(s, "@") && (err != nil || a.Domain != d) {
			t.Fatalf("x@%q: %+v, %v", s, a, err)
		}
	})
}
