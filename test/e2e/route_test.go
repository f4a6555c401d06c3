package e2e

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// TestRoutes: one transport-submission plugin serves several transports,
// each relaying to its own sink. Account routes beat domain routes beat
// global routes; to_domains with a leading dot matches the domain and its
// subdomains, without one only the domain; from_domains matches the
// sender; minimum_attempts moves later attempts to another transport; with
// no match and no "direct" transport the message stays queued with an error
// naming the missing transport.
func TestRoutes(t *testing.T) {
	t.Parallel()
	sinks := map[string]*mtatest.Sink{}
	for _, name := range []string{"account", "domain", "global", "sub", "from", "later"} {
		sinks[name] = startSink(t, nil)
	}
	// "first" refuses everything for now: only later attempts can succeed.
	sinks["first"] = startSink(t, func(string) *smtp.SMTPError {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 5}, Message: "busy"}
	})
	transports := map[string]string{}
	for name, s := range sinks {
		transports[name] = s.Addr
	}
	srv := startServer(t, setup{
		// Undeliverable messages must stay queued for the whole test.
		MaxAttempts: 100,
		Transports:  transports,
		Rest: `
[domains."example.org"]
[[domains."example.org".routes]]
to_domains = ["acct.test", "dom.test"]
transport = "domain"
[domains."other.org"]
[domains."from.test"]

[accounts.alice]
domain = "example.org"
addresses = ["alice@example.org"]
[[accounts.alice.routes]]
to_domains = ["acct.test"]
transport = "account"

[accounts.bob]
domain = "example.org"
addresses = ["bob@example.org"]

[accounts.carol]
domain = "other.org"
addresses = ["carol@other.org", "carol@from.test"]

[[routes]]
to_domains = ["acct.test", "dom.test", "glob.test"]
transport = "global"
[[routes]]
to_domains = [".sub.test"]
transport = "sub"
[[routes]]
to_domains = ["min.test"]
minimum_attempts = 1
transport = "later"
[[routes]]
to_domains = ["min.test"]
transport = "first"
[[routes]]
from_domains = ["from.test"]
transport = "from"
`})

	cases := []struct {
		account, from, to string
		want              string // Sink name; empty: no route, stays queued.
	}{
		{"alice", "alice@example.org", "r1@acct.test", "account"},   // Account beats domain and global.
		{"alice", "alice@example.org", "r2@dom.test", "domain"},     // Account routes do not match: domain.
		{"bob", "bob@example.org", "r3@acct.test", "domain"},        // Domain beats global.
		{"carol", "carol@other.org", "r4@acct.test", "global"},      // Domain without routes: global.
		{"alice", "alice@example.org", "r5@glob.test", "global"},    // Neither account nor domain match.
		{"carol", "carol@other.org", "r6@sub.test", "sub"},          // Leading dot: the domain itself.
		{"carol", "carol@other.org", "r7@a.sub.test", "sub"},        // Leading dot: a subdomain.
		{"carol", "carol@other.org", "r8@b.a.sub.test", "sub"},      // Leading dot: any depth.
		{"carol", "carol@other.org", "r9@SUB.Test", "sub"},          // Case-insensitive.
		{"carol", "carol@from.test", "r10@anywhere.test", "from"},   // from_domains.
		{"alice", "alice@example.org", "r11@min.test", "later"},     // minimum_attempts.
		{"carol", "carol@other.org", "r12@notsub.test", ""},         // ".sub.test" is not a suffix match.
		{"alice", "alice@example.org", "r13@a.acct.test", ""},       // No dot: the domain only.
		{"carol", "carol@other.org", "r14@anywhere.test", ""},       // from_domains does not match.
		{"bob", "bob@example.org", "r15@elsewhere.example.net", ""}, // Nothing matches.
	}
	for i, tc := range cases {
		c := dialAuth(t, srv.Listeners["submission"], false, tc.account, srv.Passwords[tc.account])
		msg := mtatest.MakeMessage(tc.from, tc.to, fmt.Sprintf("route-%d", i), 500)
		if err := send(c, tc.from, []string{tc.to}, msg); err != nil {
			t.Fatalf("%s → %s: %v", tc.from, tc.to, err)
		}
		c.Quit()
	}

	// Where each recipient arrived.
	arrivals := func() map[string][]string {
		m := map[string][]string{}
		for name, s := range sinks {
			for rcpt, n := range received(s) {
				for range n {
					m[strings.ToLower(rcpt)] = append(m[strings.ToLower(rcpt)], name)
				}
			}
		}
		return m
	}
	want := map[string][]string{}
	for _, tc := range cases {
		if tc.want != "" {
			want[strings.ToLower(tc.to)] = []string{tc.want}
		}
	}
	var got map[string][]string
	waitFor(waitShort, func() bool {
		got = arrivals()
		return len(got) >= len(want)
	})
	// Messages without a route get a few attempts meanwhile; none may
	// arrive anywhere.
	time.Sleep(500 * time.Millisecond)
	got = arrivals()
	if !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("arrivals (recipient → sinks):\n got %v\nwant %v", got, want)
	}
	if n := sinks["first"].Attempts("r11@min.test"); n != 1 {
		t.Errorf("first attempt for min.test: %d RCPT TO at the first transport, want 1", n)
	}

	list := mta(t, srv, "queue", "list")
	for _, tc := range cases {
		line := lineWith(list, tc.to)
		switch {
		case tc.want != "" && line != "":
			t.Errorf("%s still queued: %s", tc.to, line)
		case tc.want == "" && !(strings.Contains(line, "pending") && strings.Contains(line, `transport "direct"`)):
			t.Errorf("%s: queue list line %q, want pending with an error naming the transport \"direct\"", tc.to, line)
		}
	}
	if t.Failed() {
		t.Logf("queue list:\n%s", list)
	}
}
