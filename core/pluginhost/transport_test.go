package pluginhost

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/core/queue"
	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// queueResult runs one attempt of a message to rcpt through a queue whose
// Deliverer is m, with one attempt allowed, and returns the recipient's
// last result, as a DSN would give it.
func queueResult(t *testing.T, m *Manager, l *logs, transport, rcpt string) sdk.RecipientResult {
	t.Helper()
	notices := make(chan queue.Notice, 1)
	q, err := queue.Open(t.Context(), t.TempDir(), queue.Options{Deliverer: m, Router: router(transport), MaxAttempts: 1, Log: l.logger(),
		Notify: func(ctx context.Context, n queue.Notice) error { notices <- n; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	q.Start(t.Context())
	s := q.NewSpool()
	s.Write([]byte("Subject: x\r\n\r\nhi\r\n"))
	if _, err := q.Add(t.Context(), queue.Envelope{From: "a@example.org", Recipients: []sdk.Recipient{{Address: rcpt}}}, s); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-notices:
		return n.Recipients[0].Last
	case <-time.After(10 * time.Second):
		t.Fatal("no failure notice")
	}
	return sdk.RecipientResult{}
}

type router string

func (r router) Route(account string, from, to mailaddr.Domain, attempts int) string {
	return string(r)
}

// deliveryErr returns the err of the queue's delivery log line of rcpt.
func deliveryErr(t *testing.T, l *logs, rcpt string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if recs := l.find("delivery", map[string]any{"to": rcpt}); len(recs) == 1 {
			s, _ := recs[0]["err"].(string)
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no delivery line for %s", rcpt)
	return ""
}

// A plugin's Deliver error is the plugin failing the attempt, not the
// plugin being down: before, the SDK sent it as Unavailable, and the
// sender's DSN read "pluginhost: plugin unavailable: transport ... rpc
// error: code = Unavailable desc = ...". The sender gets a sentence; the
// log the detail.
func TestDeliverPluginError(t *testing.T) {
	var l logs
	m := start(t, Options{Config: testConfig(t, map[string]any{"fail_with": "smarthost said no: 421 too busy"}), Log: l.logger()})
	_, err := m.Deliver(t.Context(), "relay", request("a@good.example"))
	var de *DeliverError
	if !errors.As(err, &de) || de.Kind != DeliverFailed || errors.Is(err, ErrUnavailable) || de.Plugin != "echo" || de.Transport != "relay" {
		t.Fatalf("deliver: %#v, want DeliverFailed, not ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "smarthost said no: 421 too busy") {
		t.Errorf("error %q lacks the plugin's text", err)
	}
	r := queueResult(t, m, &l, "relay", "b@good.example")
	if r.Status != sdk.StatusTemporary || r.Text != "delivery failed temporarily at the sending server; it will be retried" {
		t.Errorf("recipient result %+v", r)
	}
	if e := deliveryErr(t, &l, "b@good.example"); !strings.Contains(e, "smarthost said no: 421 too busy") || !strings.Contains(e, "plugin echo") {
		t.Errorf("delivery log err %q lacks the detail", e)
	}
}

// A plugin that is down: the unavailable text; an unknown transport: its own.
func TestDeliverUnavailableAndNoTransport(t *testing.T) {
	var l logs
	m := start(t, Options{Config: testConfig(t, nil), Log: l.logger()})
	r := queueResult(t, m, &l, "nope", "n@good.example")
	if r.Text != `no route for this destination is configured on the server (transport "nope"); delivery will be retried` {
		t.Errorf("no transport: %+v", r)
	}
	if e := deliveryErr(t, &l, "n@good.example"); !strings.Contains(e, `transport "nope" is not configured`) {
		t.Errorf("no transport: log err %q", e)
	}

	m.Close()
	_, err := m.Deliver(t.Context(), "relay", request("a@good.example"))
	var de *DeliverError
	if !errors.As(err, &de) || de.Kind != DeliverUnavailable || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("deliver after Close: %v", err)
	}
	r = queueResult(t, m, &l, "relay", "d@good.example")
	if r.Text != "the outgoing mail service is temporarily unavailable; delivery will be retried" {
		t.Errorf("plugin down: %+v", r)
	}
	if e := deliveryErr(t, &l, "d@good.example"); !strings.Contains(e, "plugin echo stopped") {
		t.Errorf("plugin down: log err %q", e)
	}
}

// A process that exits mid-Deliver is unavailable, not a failed attempt.
func TestDeliverCrashUnavailable(t *testing.T) {
	m := start(t, Options{Config: testConfig(t, map[string]any{"crash_on": "boom@example.org"})})
	_, err := m.Deliver(t.Context(), "relay", request("boom@example.org"))
	var de *DeliverError
	if !errors.As(err, &de) || de.Kind != DeliverUnavailable {
		t.Errorf("crash mid-Deliver: %v, want DeliverUnavailable", err)
	}
}
