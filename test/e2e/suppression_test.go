package e2e

import (
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// TestSuppression: a delivery refused with 550 5.1.1 puts the address on
// the sender's suppression list, and her next message to it (with a +tag
// too) is refused at RCPT with 550 5.7.1; bob's is not. The operator lists,
// removes and adds entries with mta suppression, running server or not.
func TestSuppression(t *testing.T) {
	t.Parallel()
	sink := startSink(t, func(rcpt string) *smtp.SMTPError {
		if strings.HasPrefix(rcpt, "gone@") {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	})
	srv := startServer(t, setup{Transports: map[string]string{"smarthost": sink.Addr}, Rest: defaultRest + `
[[routes]]
to_domains = ["remote.example"]
transport = "smarthost"
`})
	c := dialAuth(t, srv.Listeners["submission"], false, "alice@example.org", srv.Passwords["alice"])
	if err := send(c, "alice@example.org", []string{"gone@remote.example"}, []byte("Subject: first\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	if !waitFor(waitShort, func() bool {
		return logHas(srv, `msg="recipient suppressed" .*account=alice rcpt=gone@remote.example reason="550 5.1.1 no such user`)
	}) {
		t.Fatalf("no suppression after the 5.1.1 failure:\n%s", srv.Log())
	}
	for _, rcpt := range []string{"gone@remote.example", "gone+news@REMOTE.example"} {
		if err := c.Mail("alice@example.org", nil); err != nil {
			t.Fatal(err)
		}
		err := c.Rcpt(rcpt, nil)
		wantCode(t, "RCPT "+rcpt, err, 550, smtp.EnhancedCode{5, 7, 1})
		if err == nil || !strings.Contains(err.Error(), "suppression list") {
			t.Errorf("RCPT %s: %v, want the suppression list named", rcpt, err)
		}
		c.Reset()
	}
	cb := dialAuth(t, srv.Listeners["submission"], false, "bob@example.org", srv.Passwords["bob"])
	if err := cb.Mail("bob@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := cb.Rcpt("gone@remote.example", nil); err != nil {
		t.Errorf("bob's RCPT to alice's suppressed address: %v", err)
	}

	out := mta(t, srv, "suppression", "list", "alice")
	if !strings.Contains(out, "gone@remote.example") || !strings.Contains(out, "failure") || !strings.Contains(out, "5.1.1") {
		t.Errorf("suppression list:\n%s", out)
	}
	mta(t, srv, "suppression", "rm", "alice", "gone@remote.example")
	if err := c.Mail("alice@example.org", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("gone@remote.example", nil); err != nil {
		t.Errorf("RCPT after rm: %v", err)
	}
	c.Reset()
	mta(t, srv, "suppression", "add", "alice", "spamtrap@remote.example", "a", "known", "trap")
	if out := mta(t, srv, "suppression", "list"); !strings.Contains(out, "spamtrap@remote.example") || !strings.Contains(out, "operator") || !strings.Contains(out, "a known trap") {
		t.Errorf("after add:\n%s", out)
	}
	for _, args := range [][]string{{"add", "nobody", "x@remote.example"}, {"add", "alice", "not-an-address"}, {"rm", "alice", "never@remote.example"}, {"list", "nobody"}} {
		if _, errOut, code := srv.MTA("", []string{"suppression", args[0]}, args[1:]...); code != 2 {
			t.Errorf("mta suppression %q: exit %d, want 2\n%s", args, code, errOut)
		}
	}
}
