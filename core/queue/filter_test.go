package queue

import (
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
