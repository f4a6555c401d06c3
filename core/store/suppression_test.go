package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSuppressions(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	now := time.Now()
	if added, err := s.AddSuppression(ctx, "alice", "Gone@Example.NET", "550 5.1.1 no such user", true, now); err != nil || !added {
		t.Fatalf("add: %v %v", added, err)
	}
	if added, err := s.AddSuppression(ctx, "alice", "Gone@example.NET", "again", false, now); err != nil || added {
		t.Errorf("adding again: %v %v, want not added", added, err)
	}
	for addr, want := range map[string]bool{
		"Gone@example.net":           true,
		"Gone+news@EXAMPLE.net":      true,
		"gone@example.net":           false, // The localpart compares exactly.
		"Gone@sub.example.net":       false,
		"not an address":             false,
		"Gone@xn--bcher-kva.example": false,
	} {
		sup, err := s.Suppressed(ctx, "alice", addr)
		if err != nil || (sup != nil) != want {
			t.Errorf("Suppressed(alice, %q) = %+v, %v; want %v", addr, sup, err, want)
		}
	}
	if sup, _ := s.Suppressed(ctx, "bob", "Gone@example.net"); sup != nil {
		t.Error("alice's entry applies to bob")
	}
	s.AddSuppression(ctx, "bob", "x@bücher.example", "by hand", false, now)
	if sup, _ := s.Suppressed(ctx, "bob", "x@xn--bcher-kva.example"); sup == nil || sup.Auto || sup.Reason != "by hand" {
		t.Errorf("IDN entry: %+v", sup)
	}
	if l, err := s.Suppressions(ctx, ""); err != nil || len(l) != 2 || l[0].Account != "alice" || !l[0].Auto {
		t.Errorf("all: %v %+v", err, l)
	}
	if l, _ := s.Suppressions(ctx, "bob"); len(l) != 1 {
		t.Errorf("bob's: %+v", l)
	}
	if err := s.RemoveSuppression(ctx, "alice", "gone+x@example.net"); err == nil {
		t.Error("removed another localpart's entry")
	}
	if err := s.RemoveSuppression(ctx, "alice", "Gone+x@example.net"); err != nil {
		t.Errorf("remove: %v", err)
	}
	if err := s.RemoveSuppression(ctx, "alice", "Gone@example.net"); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove twice: %v", err)
	}
	if _, err := s.AddSuppression(ctx, "alice", "@nope", "", false, now); !errors.Is(err, ErrBadAddress) {
		t.Errorf("bad address: %v", err)
	}
}
