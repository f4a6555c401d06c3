package main

import "testing"

func TestParams(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{xtext("a+b=c d\xc3"), "a+2Bb+3Dc+20d+C3"},
		{orcpt("rfc822;b+x@example.net"), "rfc822;b+2Bx@example.net"},
		{orcpt("RFC822;dörte@example.net"), ""},
		{orcpt("UTF-8;dörte+x@example.net"), `utf-8;d\x{F6}rte\x{2B}x@example.net`},
		{orcpt("x400;whatever"), ""},
		{orcpt("no type"), ""},
		{notify([]string{"success", "FAILURE", "SUCCESS"}), "SUCCESS,FAILURE"},
		{notify([]string{"NEVER"}), "NEVER"},
		{notify([]string{"NEVER", "DELAY"}), ""},
		{notify([]string{"SOMETIMES"}), ""},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestSelectMechanism(t *testing.T) {
	for _, tc := range []struct {
		configured []string
		offered    string
		want       string // "" for none.
	}{
		{nil, "LOGIN PLAIN", "PLAIN"},
		{nil, "CRAM-MD5 login", "LOGIN"},
		{nil, "CRAM-MD5", ""},
		{[]string{"LOGIN", "PLAIN"}, "PLAIN LOGIN", "LOGIN"},
		{[]string{"LOGIN"}, "PLAIN", ""},
	} {
		m, ok := selectMechanism(tc.configured, tc.offered)
		if ok != (tc.want != "") || m.name != tc.want {
			t.Errorf("%v of %q: got %q %v, want %q", tc.configured, tc.offered, m.name, ok, tc.want)
		}
	}
}
