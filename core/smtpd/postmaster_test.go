package smtpd

import (
	"testing"

	"github.com/switchyard-mta/switchyard/core/config"
)

// PostmasterAddress of the fake accounts is bob's address.
func (fakeAccounts) PostmasterAddress() string { return "bob@example.org" }

// RCPT TO:<Postmaster>, without a domain and in any case, is accepted on
// the MX listener (RFC 5321 §4.5.1) and delivered to the postmaster.
func TestPostmaster(t *testing.T) {
	local := &fakeLocal{}
	ts := startServer(t, config.KindSMTP, func(c *Config) { c.Local = local })
	converse(t, ts, []step{{ehlo, 250, ""}, {mailOK, 250, ""},
		{"RCPT TO:<Postmaster>\r\n", 250, ""}, {"RCPT TO:<POSTMASTER> NOTIFY=NEVER\r\n", 250, ""}, {"RCPT TO:<Postmaster@>\r\n", 501, ""},
		{"DATA\r\n", 354, ""}, {"Subject: x\r\n\r\nhi\r\n.\r\n", 250, "2.0.0"}})
	local.mu.Lock()
	defer local.mu.Unlock()
	if _, ok := local.delivered["bob"]; !ok || len(local.delivered) != 1 {
		t.Fatalf("delivered to %v, want the postmaster bob", local.delivered)
	}
}
