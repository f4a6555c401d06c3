package notify

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/core/queue"
	"github.com/switchyard-mta/switchyard/sdk"
)

// sent is a message the queue handed to capture.
type sent struct {
	from    string
	to      []string
	utf8    bool
	message string
}

// capture is a Deliverer that delivers everything and keeps what it got.
type capture struct {
	mu   sync.Mutex
	msgs []sent
}

func (c *capture) Deliver(ctx context.Context, transport string, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	b, err := io.ReadAll(req.Message)
	if err != nil {
		return nil, err
	}
	s := sent{from: req.From, utf8: req.Options.SMTPUTF8, message: string(b)}
	for _, r := range req.Recipients {
		s.to = append(s.to, r.Address)
	}
	c.mu.Lock()
	c.msgs = append(c.msgs, s)
	c.mu.Unlock()
	return sdk.ResultAll(req, sdk.StatusDelivered, 250, "2.0.0", "ok"), nil
}

// wait returns the first n messages sent, waiting up to 10 s.
func (c *capture) wait(t *testing.T, n int) []sent {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		l := c.msgs
		c.mu.Unlock()
		if len(l) >= n {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages sent, want %d", len(l), n)
		}
	}
}

// setup returns a started queue, what it sends, and a Notifier queueing
// to it.
func setup(t *testing.T) (*queue.Queue, *capture, *Notifier) {
	t.Helper()
	c := &capture{}
	q, err := queue.Open(context.Background(), t.TempDir(), queue.Options{Deliverer: c, MaxAttempts: 9, BackoffScale: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	q.Start(context.Background())
	return q, c, &Notifier{Hostname: "mx.example.org", Queue: func() *queue.Queue { return q }, Log: slog.New(slog.DiscardHandler)}
}

const original = "From: alice@example.org\r\nSubject: hello\r\nMessage-ID: <m1@example.org>\r\n\r\nthe body\r\n"

func notice(delayed bool, msg *io.SectionReader) queue.Notice {
	now := time.Now()
	return queue.Notice{
		Delayed: delayed,
		QueueID: "abc",
		From:    "alice@example.org",
		Queued:  now.Add(-time.Hour),
		Message: msg,
		Recipients: []queue.Rcpt{{
			Recipient:   sdk.Recipient{Address: "bob@remote.example"},
			State:       queue.Failed,
			Attempts:    5,
			LastAttempt: now,
			NextAttempt: now.Add(4 * time.Hour),
			Last:        sdk.RecipientResult{Status: sdk.StatusPermanent, Code: 550, EnhancedCode: "5.1.1", Text: "no such user", RemoteHost: "mx.remote.example"},
		}},
	}
}

func section(s string) *io.SectionReader {
	return io.NewSectionReader(strings.NewReader(s), 0, int64(len(s)))
}

// A failure is reported to the sender from the null reverse-path, with the
// original message.
func TestFailure(t *testing.T) {
	_, c, nt := setup(t)
	nt.From = "postmaster@example.org"
	if err := nt.Notify(context.Background(), notice(false, section(original))); err != nil {
		t.Fatal(err)
	}
	m := c.wait(t, 1)[0]
	if m.from != "" || len(m.to) != 1 || m.to[0] != "alice@example.org" || m.utf8 {
		t.Fatalf("DSN sent from %q to %v (SMTPUTF8 %v)", m.from, m.to, m.utf8)
	}
	for _, want := range []string{"Action: failed", "Final-Recipient: rfc822; bob@remote.example", "Diagnostic-Code: smtp; 550 5.1.1 no such user", "Reporting-MTA: dns; mx.example.org", `From: "Mail Delivery Subsystem" <postmaster@example.org>`, "In-Reply-To: <m1@example.org>", "message/rfc822", "the body"} {
		if !strings.Contains(m.message, want) {
			t.Errorf("DSN without %q:\n%s", want, m.message)
		}
	}
	if strings.Contains(m.message, "Will-Retry-Until") {
		t.Errorf("failure with Will-Retry-Until:\n%s", m.message)
	}
}

// A delay says until when the queue keeps trying: the last attempt by the
// queue's retry schedule.
func TestDelayWillRetryUntil(t *testing.T) {
	q, c, nt := setup(t)
	n := notice(true, section(original))
	n.Recipients[0].State = queue.Pending
	n.Recipients[0].Last = sdk.RecipientResult{Status: sdk.StatusTemporary, Code: 451, EnhancedCode: "4.4.1", Text: "try later"}
	if err := nt.Notify(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	until := q.RetryUntil(n.Recipients[0])
	if want := n.Recipients[0].NextAttempt.Add(28 * time.Hour); !until.Equal(want) {
		t.Fatalf("RetryUntil %v, want %v", until, want)
	}
	m := c.wait(t, 1)[0]
	for _, want := range []string{"Action: delayed", "Will-Retry-Until: " + until.Format(time.RFC1123Z)} {
		if !strings.Contains(m.message, want) {
			t.Errorf("DSN without %q:\n%s", want, m.message)
		}
	}
}

// brokenReader fails every read.
type brokenReader struct{}

func (brokenReader) ReadAt(p []byte, off int64) (int, error) {
	return 0, errors.New("read /queue/seg/1: input/output error")
}

// An original that cannot be read does not cost the DSN: it goes without.
func TestUnreadableOriginal(t *testing.T) {
	_, c, nt := setup(t)
	if err := nt.Notify(context.Background(), notice(false, io.NewSectionReader(brokenReader{}, 0, 100))); err != nil {
		t.Fatal(err)
	}
	m := c.wait(t, 1)[0]
	if !strings.Contains(m.message, "Action: failed") || strings.Contains(m.message, "message/rfc822") {
		t.Errorf("DSN:\n%s", m.message)
	}
}

// A DSN that cannot be queued is an error, for the queue to call Notify
// again; nothing to send is not.
func TestNotQueued(t *testing.T) {
	q, c, nt := setup(t)
	n := notice(false, nil)
	n.From = ""
	if err := nt.Notify(context.Background(), n); err != nil {
		t.Errorf("null reverse-path: %v", err)
	}
	n = notice(false, nil)
	n.Recipients[0].Notify = []string{"NEVER"}
	if err := nt.Notify(context.Background(), n); err != nil {
		t.Errorf("NOTIFY=NEVER: %v", err)
	}
	q.Close()
	if err := nt.Notify(context.Background(), notice(false, nil)); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("queue closed: %v, want queue.ErrClosed", err)
	}
	if c.msgs != nil {
		t.Errorf("sent %+v", c.msgs)
	}
}
