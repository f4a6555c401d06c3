package server

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/switchyard-mta/switchyard/core/guard"
)

// A panic in a plugin callback fails the call with guard.ErrPanic.
func TestHostRecovers(t *testing.T) {
	h := &host{log: slog.New(slog.DiscardHandler)} // No configuration: Secret panics.
	if _, err := h.Secret(context.Background(), "alice@example.org", "SCRAM-SHA-256"); !errors.Is(err, guard.ErrPanic) {
		t.Fatalf("got %v, want guard.ErrPanic", err)
	}
}
