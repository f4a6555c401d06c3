package queue

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
)

// TestHistory: every attempt is stored as it starts, visible as
// delivering (the message too, to List and the delivering filter), and
// again with its results when it ends; a message that leaves the queue is
// retired with them when its account keeps retired messages, and its
// attempts go with it when not.
func TestHistory(t *testing.T) {
	ctx := context.Background()
	gate := make(chan struct{})
	d := &fakeDeliverer{fn: func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
		if req.Attempt == 1 {
			<-gate
			return sdk.ResultAll(req, sdk.StatusTemporary, 451, "4.3.0", "later"), nil
		}
		res := sdk.ResultAll(req, sdk.StatusDelivered, 250, "2.0.0", "ok")
		for i := range res.Recipients {
			res.Recipients[i].RemoteHost, res.Recipients[i].TLS = "mx.example.com", sdk.TLSUse{Version: "TLS1.3", Verification: sdk.VerifyDANE}
		}
		return res, nil
	}}
	keep := func(account string) time.Duration {
		if account == "alice" {
			return time.Hour
		}
		return 0
	}
	q := openQueue(t, t.TempDir(), Options{Deliverer: d, KeepRetired: keep})
	q.Start(ctx)
	id, err := q.Add(ctx, Envelope{Account: "alice", From: "alice@example.org", Recipients: rcpts("a@example.com", "b@example.com")},
		spool(t, q, "Message-ID: <m1@example.org>\r\nSubject: report\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first attempt stored as delivering", func() bool {
		h, err := q.History(ctx, id)
		return err == nil && len(h) == 1 && !h[0].Ended
	})
	h, _ := q.History(ctx, id)
	if a := h[0]; a.Transport != "t" || len(a.Results) != 2 || a.Results[1].Address != "b@example.com" || a.Results[0].Code != 0 {
		t.Errorf("delivering record %+v", a)
	}
	m, err := q.Get(ctx, id)
	if err != nil || !m.DeliveringTo(m.Recipients[0]) || !(Filter{State: "delivering"}).Match(m, time.Now(), nil) {
		t.Errorf("Get during the attempt: %+v %v, want delivering", m, err)
	}
	if l, _ := q.List(ctx); len(l) != 1 || !slices.Equal(l[0].Delivering, []string{"example.com"}) {
		t.Errorf("List during the attempt: %+v", l)
	}
	for _, c := range []struct {
		f    Filter
		want int
	}{
		{Filter{State: "delivering"}, 1},
		{Filter{State: "held"}, 0},
		{Filter{IDs: []string{"ffffff", id, "not-an-id"}}, 1}, // Absent and bad IDs select nothing.
		{Filter{IDs: []string{"ffffff"}}, 0},
	} {
		if l, total, err := q.Select(ctx, c.f, nil); err != nil || len(l) != c.want || total != 1 {
			t.Errorf("Select %+v during the attempt: %d of %d (%v), want %d of 1", c.f, len(l), total, err, c.want)
		}
	}
	close(gate)
	waitFor(t, "first attempt ended", func() bool {
		h, _ := q.History(ctx, id)
		return len(h) == 1 && h[0].Ended
	})
	if m, _ := q.Get(ctx, id); len(m.Delivering) != 0 || m.Subject != "report" {
		t.Errorf("after the attempt: %+v", m)
	}
	if l, _, _ := q.Select(ctx, Filter{State: "delivering"}, nil); len(l) != 0 {
		t.Errorf("Select delivering after the attempt: %+v", l)
	}
	q.retry(ctx, id)
	waitEmpty(t, q)

	r, err := q.RetiredMsg(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if r.Account != "alice" || r.MessageID != "<m1@example.org>" || r.Subject != "report" || r.Dropped || len(r.Recipients) != 2 ||
		r.Recipients[0].State != Delivered || r.Expires.Sub(r.Retired) != time.Hour {
		t.Errorf("retired %+v", r)
	}
	h, err = q.History(ctx, id)
	if err != nil || len(h) != 2 {
		t.Fatalf("history %+v %v", h, err)
	}
	if a := h[0]; !a.Ended || a.Results[0].Code != 451 || a.Results[0].EnhancedCode != "4.3.0" || a.Duration <= 0 {
		t.Errorf("first attempt %+v", a)
	}
	if a := h[1]; !a.Ended || a.Start.Before(h[0].Start) || a.Results[1].Code != 250 || a.Results[1].TLS.Verification != sdk.VerifyDANE || a.Results[1].RemoteHost != "mx.example.com" {
		t.Errorf("second attempt %+v", a)
	}
	for _, c := range []struct {
		f    Filter
		want int
	}{
		{Filter{}, 1},
		{Filter{IDs: []string{"ffffff", id, "not-an-id"}}, 1},
		{Filter{IDs: []string{"ffffff"}}, 0},
		{Filter{Account: "alice", State: "delivered"}, 1},
		{Filter{Account: "bob"}, 0},
		{Filter{Transport: "smarthost"}, 0}, // A retired message has no route.
	} {
		l, total, err := q.RetiredList(ctx, c.f)
		if err != nil || len(l) != c.want || total != 1 || c.want == 1 && l[0].ID != r.ID {
			t.Errorf("RetiredList %+v: %d of %d (%v), want %d of 1", c.f, len(l), total, err, c.want)
		}
	}

	// Bob's account keeps none: his message and its attempts go.
	bob, err := q.Add(ctx, Envelope{Account: "bob", Recipients: rcpts("c@example.com")}, spool(t, q, "x\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	waitEmpty(t, q)
	if _, err := q.RetiredMsg(ctx, bob); !errors.Is(err, ErrNotFound) {
		t.Errorf("bob's message retired: %v", err)
	}
	if h, err := q.History(ctx, bob); err != nil || len(h) != 0 {
		t.Errorf("bob's attempts kept: %+v %v", h, err)
	}

	// Expired records are pruned with their attempts.
	if n, err := q.pruneRetired(ctx, time.Now()); err != nil || n != 0 {
		t.Errorf("pruned %d %v before expiry", n, err)
	}
	if n, err := q.pruneRetired(ctx, time.Now().Add(2*time.Hour)); err != nil || n != 1 {
		t.Errorf("pruned %d %v, want 1", n, err)
	}
	if h, _ := q.History(ctx, id); len(h) != 0 {
		t.Errorf("attempts of a pruned message: %+v", h)
	}
	if _, err := q.RetiredMsg(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Errorf("pruned message: %v", err)
	}
}

// TestHistoryInterrupted: an attempt cut short by the end of the process
// stays visible, never ended, after a restart; a dropped message is
// retired as dropped; a new message never takes a retired one's ID.
func TestHistoryInterrupted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	keep := func(string) time.Duration { return time.Hour }
	q := openQueue(t, dir, Options{Deliverer: ctxDeliverer{}, KeepRetired: keep})
	q.Start(ctx)
	id := add(t, q, "x\r\n", "a@example.com")
	waitFor(t, "attempt stored", func() bool { h, _ := q.History(ctx, id); return len(h) == 1 })
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openQueue(t, dir, Options{Deliverer: ctxDeliverer{}, KeepRetired: keep})
	h, err := q.History(ctx, id)
	if err != nil || len(h) != 1 || h[0].Ended {
		t.Fatalf("after restart: %+v %v, want one attempt never ended", h, err)
	}
	if r := stored(t, q, id).Recipients[0]; r.State != Pending || r.Attempts != 0 {
		t.Errorf("recipient %+v: the interrupted attempt counted", r)
	}
	if err := q.Drop(ctx, id); err != nil {
		t.Fatal(err)
	}
	r, err := q.RetiredMsg(ctx, id)
	if err != nil || !r.Dropped {
		t.Errorf("dropped message retired as %+v %v", r, err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openQueue(t, dir, Options{Deliverer: ctxDeliverer{}, KeepRetired: keep})
	if n := q.lastID.Load(); n < r.ID {
		t.Errorf("last ID %d below the retired message's %d", n, r.ID)
	}
	if n := q.lastAttempt.Load(); n != h[0].ID {
		t.Errorf("last attempt ID %d, want %d", n, h[0].ID)
	}
}

// ctxDeliverer blocks until its context ends.
type ctxDeliverer struct{}

func (ctxDeliverer) Deliver(ctx context.Context, _ string, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
