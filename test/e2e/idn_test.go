package e2e

import (
	"net"
	"net/textproto"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/core/store"
)

// TestIDNLocalDomain: a local domain configured in U-labels receives mail
// addressed in A-labels (without SMTPUTF8 for an ASCII localpart) and in
// U-labels (with SMTPUTF8), on the MX listener, as local mail, never as
// relaying.
func TestIDNLocalDomain(t *testing.T) {
	t.Parallel()
	srv := startServer(t, setup{Rest: `
[domains."bücher.example"]
[accounts.joerg]
domain = "bücher.example"
addresses = ["jörg@bücher.example", "info@bücher.example"]
`})
	nc, err := net.DialTimeout("tcp", srv.Listeners["mx"], 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(waitShort))
	r := &rawConn{t: t, nc: nc, tp: textproto.NewConn(nc)}
	r.expect(220)
	r.cmd(250, "EHLO sender.example")
	for _, tx := range []struct{ mail, rcpt string }{
		{"MAIL FROM:<a@sender.example>", "RCPT TO:<info@xn--bcher-kva.example>"},
		{"MAIL FROM:<a@sender.example>", "RCPT TO:<INFO@XN--BCHER-KVA.EXAMPLE>"},
		{"MAIL FROM:<a@sender.example> SMTPUTF8", "RCPT TO:<jörg@xn--bcher-kva.example>"},
		{"MAIL FROM:<a@sender.example> SMTPUTF8", "RCPT TO:<jörg@bücher.example>"},
	} {
		r.cmd(250, "%s", tx.mail)
		r.cmd(250, "%s", tx.rcpt)
		r.cmd(354, "DATA")
		r.cmd(250, "Subject: %s\r\n\r\nhi\r\n.", tx.rcpt)
	}
	r.cmd(221, "QUIT")
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if msgs := inbox(t, srv, map[string]store.AccountConfig{"joerg": {}}, "joerg"); len(msgs) != 4 {
		t.Fatalf("%d messages in joerg's Inbox, want 4", len(msgs))
	}
}
