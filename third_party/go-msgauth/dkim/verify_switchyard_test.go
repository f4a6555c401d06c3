package dkim

import (
	"regexp"
	"testing"
)

// refSigRegex is how upstream removed the signature, the reference for
// Switchyard's scan.
var refSigRegex = regexp.MustCompile(`(b\s*=)[^;]+`)

// FuzzRemoveSignature checks removeSignature against the regexp it replaced.
func FuzzRemoveSignature(f *testing.F) {
	for _, s := range []string{
		"v=1; a=rsa-sha256; d=example.org; s=s1; bh=abc=; b=SIG\r\n SIG==",
		"b=", "b=;", "b =x", "b\t\r\n =x;b=y", "bb=x", "ab=x; b = y ; c=z", "b=x;b=;b=y", "", "b", "b\f=x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := removeSignature(s), refSigRegex.ReplaceAllString(s, "$1"); got != want {
			t.Fatalf("removeSignature(%q) = %q, regexp gives %q", s, got, want)
		}
	})
}

func BenchmarkRemoveSignature(b *testing.B) {
	s := "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=relay.test; s=bench; t=1765000000;\r\n" +
		" h=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=;\r\n" +
		" b=Qk9HVVMgU0lHTkFUVVJFIERBVEEgRk9SIFRIRSBCRU5DSE1BUksgT05MWSBOT1QgUkVBTCBBVCBBTEwgMTIzNDU2Nzg5MA=="
	for _, c := range []struct {
		name string
		f    func(string) string
	}{
		{"patched", removeSignature},
		{"reference", func(s string) string { return refSigRegex.ReplaceAllString(s, "$1") }},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				c.f(s)
			}
		})
	}
}
