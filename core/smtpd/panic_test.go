package smtpd

import (
	"context"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/guard"
	"github.com/switchyard-mta/switchyard/core/queue"
)

// panickingQueue is a fake queue whose Add panics.
type panickingQueue struct{ *fakeQueue }

func (q panickingQueue) Add(ctx context.Context, env queue.Envelope, s *queue.Spool) (string, error) {
	panic("queue bug")
}

// panickingLocal is a fake local delivery whose quota check panics.
type panickingLocal struct{ fakeLocal }

func (*panickingLocal) OverQuota(ctx context.Context, account string, size int64) bool {
	panic("quota bug")
}

// panickingAccounts is fakeAccounts whose login lookup panics.
type panickingAccounts struct{ fakeAccounts }

func (panickingAccounts) AccountByLogin(login string) (string, bool) { panic("login bug") }

// A panic in a session callback fails that command with 4xx, is logged with
// its stack and counted; the session and the server go on.
func TestPanicRecovered(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   string
		modify func(*Config)
		steps  []step
	}{
		{"queue in DATA", config.KindSMTP, func(c *Config) { c.Queue = panickingQueue{c.Queue.(*fakeQueue)} }, []step{
			{ehlo, 250, ""}, {mailOK, 250, ""}, {rcptOK, 250, ""}, {"DATA\r\n", 354, ""}, {"Subject: x\r\n\r\nbody\r\n.\r\n", 451, "4.3.0"}}},
		{"queue in BDAT", config.KindSMTP, func(c *Config) { c.Queue = panickingQueue{c.Queue.(*fakeQueue)} }, []step{
			{ehlo, 250, ""}, {mailOK, 250, ""}, {rcptOK, 250, ""}, {"BDAT 14 LAST\r\nSubject: y\r\n\r\n", 451, "4.3.0"}}},
		{"local in RCPT", config.KindSMTP, func(c *Config) { c.Local = &panickingLocal{} }, []step{
			{ehlo, 250, ""}, {mailOK, 250, ""}, {"RCPT TO:<alice@example.org>\r\n", 451, "4.3.0"}, {rcptOK, 250, ""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, tc.kind, func(c *Config) { relayLoopback(c); tc.modify(c) })
			before := guard.Panics()
			converse(t, ts, append(tc.steps, step{"NOOP\r\n", 250, ""}))
			checkPanicLogged(t, ts, before)
			// The server serves others.
			converse(t, ts, []step{{ehlo, 250, ""}, {mailOK, 250, ""}})
		})
	}
}

// A panic in AUTH fails it with 454 4.7.0 (RFC 4954 §6).
func TestPanicRecoveredAuth(t *testing.T) {
	ts := startServer(t, config.KindSubmissions, func(c *Config) { c.Accounts = panickingAccounts{} })
	before := guard.Panics()
	c, err := smtp.DialTLS(ts.addr, clientTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wantCode(t, c.Auth(sasl.NewPlainClient("", "alice", "secret")), 454, "4.7.0")
	if err := c.Noop(); err != nil {
		t.Fatalf("NOOP after panic: %v", err)
	}
	checkPanicLogged(t, ts, before)
}

func checkPanicLogged(t *testing.T, ts *testServer, before int64) {
	t.Helper()
	if n := guard.Panics() - before; n < 1 {
		t.Errorf("%d panics counted", n)
	}
	logs := ts.logs.String()
	if !strings.Contains(logs, `msg="panic recovered" listener=`) || !strings.Contains(logs, "stack=") || !strings.Contains(logs, "bug") {
		t.Errorf("panic not logged with its stack:\n%s", logs)
	}
}
