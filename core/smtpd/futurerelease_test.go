package smtpd

import (
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/core/config"
)

// FUTURERELEASE is advertised on submission listeners configured for it,
// with the longest hold and the latest release time, and nowhere else.
func TestFutureReleaseAdvertised(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   string
		modify func(*Config)
		want   bool
	}{
		{"submission", config.KindSubmission, futureRelease, true},
		{"submission without FutureRelease", config.KindSubmission, func(cfg *Config) { cfg.Auth = quickPasswords{} }, false},
		{"MX", config.KindSMTP, futureRelease, false},
	} {
		ts := startServer(t, tc.kind, tc.modify)
		var c *smtp.Client
		if tc.kind == config.KindSMTP {
			nc, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			c = smtp.NewClient(nc)
			defer c.Close()
			if err := c.Hello("client.test"); err != nil {
				t.Fatal(err)
			}
		} else {
			c = dialStartTLS(t, ts.addr)
		}
		ok, param := c.Extension("FUTURERELEASE")
		if ok != tc.want {
			t.Errorf("%s: FUTURERELEASE %v %q, want %v", tc.name, ok, param, tc.want)
		}
		if !ok {
			continue
		}
		secs, latest, _ := strings.Cut(param, " ")
		lt, err := time.Parse(time.RFC3339, latest)
		if secs != "604800" || err != nil || time.Until(lt) < 7*24*time.Hour-time.Minute || time.Until(lt) > 7*24*time.Hour {
			t.Errorf("FUTURERELEASE %q: want 604800 and now + 7 days (%v)", param, err)
		}
	}
}

// A hold reaches the queue as the envelope's release, is logged with the
// transaction, holds local recipients too, and does not outlive its
// transaction.
func TestFutureReleaseQueued(t *testing.T) {
	local := &fakeLocal{}
	ts := startServer(t, config.KindSubmission, func(cfg *Config) {
		futureRelease(cfg)
		cfg.Local = local
	})
	data := []step{{"DATA\r\n", 354, ""}, {"Subject: later\r\n\r\nbody\r\n.\r\n", 250, ""}}
	start := time.Now()
	converseSubmission(t, ts, true, append([]step{
		{"MAIL FROM:<alice@example.org> HOLDFOR=60\r\n", 250, ""},
		{"RCPT TO:<carol@remote.example>\r\n", 250, ""},
		{"RCPT TO:<bob@example.org>\r\n", 250, ""},
	}, data...))
	end := time.Now()
	// Held, then RSET: the next transaction is not.
	converseSubmission(t, ts, true, append([]step{
		{"MAIL FROM:<alice@example.org> HOLDFOR=60\r\n", 250, ""},
		{"RSET\r\n", 250, ""},
		{"MAIL FROM:<alice@example.org>\r\n", 250, ""},
		{"RCPT TO:<carol@remote.example>\r\n", 250, ""},
	}, data...))
	// HOLDFOR=0 is no hold: local delivery at once.
	converseSubmission(t, ts, true, append([]step{
		{"MAIL FROM:<alice@example.org> HOLDFOR=0\r\n", 250, ""},
		{"RCPT TO:<bob@example.org>\r\n", 250, ""},
	}, data...))

	msgs := ts.queue.messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages queued, want 2", len(msgs))
	}
	held := msgs[0].env
	if r := held.ReleaseAt; r.Before(start.Add(time.Minute)) || r.After(end.Add(time.Minute)) {
		t.Errorf("release %v, want a minute after %v", r, start)
	}
	if len(held.Recipients) != 2 || held.Recipients[0].Address != "carol@remote.example" || held.Recipients[1].Address != "bob@example.org" {
		t.Errorf("held recipients %+v, want carol and bob, queued", held.Recipients)
	}
	if r := msgs[1].env.ReleaseAt; !r.IsZero() {
		t.Errorf("release %v after RSET, want none", r)
	}
	local.mu.Lock()
	delivered := len(local.delivered)
	local.mu.Unlock()
	if delivered != 1 {
		t.Errorf("%d local deliveries, want 1 (HOLDFOR=0 only)", delivered)
	}
	logs := ts.logs.String()
	if !regexp.MustCompile(`msg=transaction .* code=250 .*queueid=Q1 release=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n`).MatchString(logs) {
		t.Errorf("no transaction line with the release in:\n%s", logs)
	}
	if regexp.MustCompile(`queueid=Q2 release=`).MatchString(logs) {
		t.Errorf("release logged after RSET:\n%s", logs)
	}
}
