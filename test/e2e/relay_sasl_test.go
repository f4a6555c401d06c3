package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/switchyard-mta/switchyard/core/certs"
	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// authenticatedRE is the line core/smtpd logs for a successful AUTH on a
// submission listener; the group is the mechanism.
var authenticatedRE = regexp.MustCompile(`(?m)^.*msg=authenticated .*listener=submission .*mech=(\S+) .*account=bob$`)

// deliveryLineRE is the queue's line for a delivery through tob with a
// verified certificate.
var deliveryLineRE = regexp.MustCompile(`(?m)^.*msg=delivery .*transport=tob .*status=sent .*tls=pkix `)

// transport-submission relays from server A to server B's submission
// listener over STARTTLS, verifying B's self-signed certificate through
// ca_file and authenticating as bob@b.example; with no mechanisms key it
// uses the strongest mechanism B offers.
//
// Relaying honestly needs a sender bob may use at B: B's submission takes
// only MAIL FROM addresses of the authenticated account (RFC 6409 §6.1),
// and accounts' addresses must be at B's local domains. So the message
// comes from a client in A's relay networks with MAIL FROM bob@b.example,
// as a satellite MTA relays through the user's provider; a user of A
// itself (alice@a.example) is refused by B with 553 5.7.1 and gets a
// failure DSN.
func TestRelaySubmissionSASL(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	tests := []struct {
		name   string
		auth   string // B's [auth] table.
		offers string // B's AUTH offer over TLS.
		want   string // Mechanism A must use.
		// Attributes of auth-scram's success line; nil: no SCRAM.
		scram []string
	}{
		// TLS 1.3, so -PLUS binds with tls-exporter (RFC 9266).
		{"strongest", allMechanismsAuth, allMechanisms, "SCRAM-SHA-256-PLUS",
			[]string{"mechanism=SCRAM-SHA-256-PLUS", "binding=tls-exporter", "login=bob@b.example", "result=success"}},
		// The default offers no -PLUS; the transport, able to bind, says so
		// with GS2 "y", which is no downgrade here (RFC 5802 §6).
		{"default", "", "SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 PLAIN LOGIN", "SCRAM-SHA-256",
			[]string{"mechanism=SCRAM-SHA-256", "login=bob@b.example", "result=success"}},
		{"plain-only", "[auth]\nmechanisms = [\"PLAIN\"]\n", "PLAIN", "PLAIN", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// B's certificate is generated for "localhost": DNS name
			// localhost and IP 127.0.0.1 (core/certs).
			b := startServer(t, setup{Hostname: "localhost", IMAP: true, Rest: fmt.Sprintf(`[plugins.auth-scram]
path = %q
[plugins.auth-crammd5]
path = %q
%s
[domains."b.example"]
[accounts.bob]
domain = "b.example"
addresses = ["bob@b.example"]
`, bin.Plugins["auth-scram"], bin.Plugins["auth-crammd5"], tc.auth)})
			c, err := mtatest.Dial(b.Listeners["submission"], false, true)
			if err != nil {
				t.Fatal(err)
			}
			if ok, list := c.Extension("AUTH"); !ok || list != tc.offers {
				t.Fatalf("B offers AUTH %q, want %q", list, tc.offers)
			}
			c.Close()

			pwFile := filepath.Join(t.TempDir(), "bob.pw")
			if err := os.WriteFile(pwFile, []byte(b.Passwords["bob"]+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			caFile, _ := certs.SelfSignedPaths(filepath.Join(b.Dir, "data"))
			_, port, _ := strings.Cut(b.Listeners["submission"], ":")
			a := startServer(t, setup{Hostname: "mail.a.example", IMAP: true, RelayNetworks: []string{"127.0.0.0/8"}, Rest: fmt.Sprintf(`[transports.tob]
plugin = "transport-submission"
[transports.tob.config]
host = "localhost"
port = %s
tls = "starttls"
username = "bob@b.example"
password_file = %q
ca_file = %q
[[routes]]
to_domains = ["b.example"]
transport = "tob"
[domains."a.example"]
[accounts.alice]
domain = "a.example"
addresses = ["alice@a.example"]
`, port, pwFile, caFile)})

			msg := mtatest.MakeMessage("bob@b.example", "bob@b.example", "relayed-"+tc.name, 3000)
			sendMX(t, a, "bob@b.example", "bob@b.example", msg)

			cb := imapLogin(t, b, "imaps", "bob", b.Passwords["bob"], nil)
			if !waitFor(waitShort, func() bool {
				d, err := cb.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
				return err == nil && deref(d.NumMessages) > 0
			}) {
				t.Fatalf("message not in bob's Inbox on B\nA's log:\n%s", a.Log())
			}
			selectMailbox(t, cb, "INBOX", true)
			// B's Received field (authenticated, over TLS) over A's.
			fields := splitReceived(t, fetchBody(t, cb, imap.SeqSetNum(1)), msg, 2)
			for _, w := range []string{"from mail.a.example ", "by localhost with ESMTPSA (TLS", "for <bob@b.example>"} {
				if !strings.Contains(fields[0], w) {
					t.Errorf("B's Received field lacks %q:\n%s", w, fields[0])
				}
			}
			if !strings.Contains(fields[1], "by mail.a.example with ESMTPS") {
				t.Errorf("A's Received field: %s", fields[1])
			}
			var mechs []string
			for _, m := range authenticatedRE.FindAllStringSubmatch(b.Log(), -1) {
				mechs = append(mechs, m[1])
			}
			if len(mechs) == 0 || slices.ContainsFunc(mechs, func(m string) bool { return m != tc.want }) {
				t.Errorf("B logged AUTH on submission with %v, want %s", mechs, tc.want)
			}
			if scram := logLines(b.Log(), "plugin=auth-scram", "msg=authentication"); tc.scram == nil && len(scram) > 0 {
				t.Errorf("auth-scram ran an exchange: %q", scram)
			} else if tc.scram != nil && len(logLines(b.Log(), append(tc.scram, "plugin=auth-scram")...)) == 0 {
				t.Errorf("auth-scram logged no line with %q: %q", tc.scram, scram)
			}
			// A verified B's certificate (PKIX, through ca_file).
			if !waitFor(waitShort, func() bool { return deliveryLineRE.MatchString(a.Log()) }) {
				t.Errorf("A logged no delivery through tob with tls=pkix")
			}
			waitQueueEmpty(t, a)

			// A sender bob may not use: B refuses it at MAIL, and A
			// returns a failure DSN to alice.
			evA := newIMAPEvents()
			ca := imapLogin(t, a, "imaps", "alice", a.Passwords["alice"], evA.handler())
			selectMailbox(t, ca, "INBOX", false)
			idle, err := ca.Idle()
			if err != nil {
				t.Fatal(err)
			}
			orig := mtatest.MakeMessage("alice@a.example", "bob@b.example", "not-bobs-"+tc.name, 1000)
			c = dialAuth(t, a.Listeners["submission"], false, "alice@a.example", a.Passwords["alice"])
			if err := send(c, "alice@a.example", []string{"bob@b.example"}, orig); err != nil {
				t.Fatalf("alice submitting on A: %v", err)
			}
			c.Quit()
			recv(t, evA.exists, waitShort, "EXISTS on A (the DSN)")
			if err := idle.Close(); err != nil {
				t.Fatal(err)
			}
			if err := idle.Wait(); err != nil {
				t.Fatal(err)
			}
			checkFailureDSN(t, fetchBody(t, ca, imap.SeqSetNum(1)), mustHeader(t, orig, "Message-Id"), "bob@b.example", "5.7.1")
			waitQueueEmpty(t, a)
			if d, err := cb.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait(); err != nil || deref(d.NumMessages) != 1 {
				t.Errorf("bob's Inbox on B: %v messages (%v), want 1", d, err)
			}
		})
	}
}

// logLines returns the lines of log that contain all of words.
func logLines(log string, words ...string) []string {
	var l []string
	for line := range strings.Lines(log) {
		if !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(line, w) }) {
			l = append(l, strings.TrimSuffix(line, "\n"))
		}
	}
	return l
}
