package queue

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
)

func TestFilter(t *testing.T) {
	now := time.Now()
	m := MsgInfo{ID: "a1", Account: "alice", From: "alice@example.org", Queued: now.Add(-2 * time.Hour), Recipients: []Rcpt{
		{Recipient: sdk.Recipient{Address: "x@Remote.example"}, State: Delivered},
		{Recipient: sdk.Recipient{Address: "y@other.example"}, State: Pending, NextAttempt: now.Add(10 * time.Minute)},
	}}
	route := func(_ MsgInfo, r Rcpt) string { return "smarthost" }
	for _, tc := range []struct {
		f    Filter
		want bool
	}{
		{Filter{}, true},
		{Filter{IDs: []string{"b2", "a1"}}, true},
		{Filter{IDs: []string{"b2"}}, false},
		{Filter{Account: "bob"}, false},
		{Filter{From: "@EXAMPLE.org"}, true},
		{Filter{From: "bob@example.org"}, false},
		{Filter{To: "x@remote.EXAMPLE"}, true},
		{Filter{To: "@nowhere.example"}, false},
		{Filter{Older: time.Hour}, true},
		{Filter{Older: 3 * time.Hour}, false},
		{Filter{Newer: time.Hour}, false},
		{Filter{State: "pending"}, true},
		{Filter{State: "pending", To: "x@remote.example"}, false}, // That one is delivered.
		{Filter{NextBefore: 15 * time.Minute}, true},
		{Filter{NextBefore: 5 * time.Minute}, false},
		{Filter{Transport: "smarthost"}, true},
		{Filter{Transport: "direct"}, false},
		{Filter{State: "delivered"}, true},
		{Filter{State: "delivered", To: "@other.example"}, false},
		{Filter{State: "failed"}, false},
		{Filter{State: "delivering"}, false},
	} {
		if got := tc.f.Match(m, now, route); got != tc.want {
			t.Errorf("%+v: %v, want %v", tc.f, got, tc.want)
		}
	}
	if (Filter{State: "held"}).Match(m, now, route) {
		t.Error("held matches a message with none held")
	}
	m.Delivering = []string{"other.example"}
	m.Recipients[1].Domain = "other.example"
	if !(Filter{State: "delivering"}).Match(m, now, route) || (Filter{State: "delivering", To: "@remote.example"}).Match(m, now, route) {
		t.Error("delivering does not match the recipient being delivered, or matches another")
	}
	for _, f := range []Filter{{From: "nope"}, {To: "@"}, {State: "deferred"}, {Older: -time.Second}} {
		if f.Check() == nil {
			t.Errorf("%+v: no error", f)
		}
	}
	if !(Filter{}).Empty() || (Filter{Account: "a"}).Empty() {
		t.Error("Empty")
	}
}

// TestSelectByDomain: a recipient filter reads the messages by their
// recipients' domains, in any form, and the count is of all queued.
func TestSelectByDomain(t *testing.T) {
	q := openQueue(t, t.TempDir(), Options{})
	a := add(t, q, "a\r\n", "x@a.example", "y@bücher.example")
	add(t, q, "b\r\n", "z@b.example")
	add(t, q, "c\r\n", "x@other.example")
	if m := stored(t, q, a); len(m.Domains) != 2 || m.Domains[1] != "xn--bcher-kva.example" {
		t.Errorf("domains %q", m.Domains)
	}
	for _, tc := range []struct {
		to   string
		want []string
	}{
		{"@xn--bcher-kva.example", []string{a}},
		{"y@BÜCHER.example", []string{a}},
		{"x@a.example", []string{a}},
		{"z@a.example", nil},
		{"@nowhere.example", nil},
	} {
		l, total, err := q.Select(context.Background(), Filter{To: tc.to}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range l {
			got = append(got, m.ID)
		}
		if !slices.Equal(got, tc.want) || total != 3 {
			t.Errorf("to %s: %v of %d, want %v of 3", tc.to, got, total, tc.want)
		}
	}
}
