package guard

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestRecover(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	before := Panics()
	work := func() (err error) {
		defer Recover(log, "test unit", &err)
		panic("unit failed")
	}
	err := work()
	if !errors.Is(err, ErrPanic) || !strings.Contains(err.Error(), "test unit") {
		t.Fatalf("err %v, want ErrPanic naming the unit", err)
	}
	if got := Panics() - before; got != 1 {
		t.Fatalf("counted %d panics, want 1", got)
	}
	if s := buf.String(); !strings.Contains(s, "panic recovered") || !strings.Contains(s, "guard_test.go") {
		t.Fatalf("log lacks the message or the stack: %s", s)
	}

	// No panic: err is left alone.
	ok := func() (err error) {
		defer Recover(log, "quiet", &err)
		return errors.New("own error")
	}
	if err := ok(); err == nil || errors.Is(err, ErrPanic) {
		t.Fatalf("err %v, want the function's own", err)
	}
}

func TestGo(t *testing.T) {
	logged := make(chan string, 1)
	Go(slog.New(chanHandler(logged)), "goroutine", func() { panic("boom") })
	if msg := <-logged; msg != "panic recovered" {
		t.Fatalf("logged %q", msg)
	}
}

// chanHandler sends each record's message to its channel.
type chanHandler chan string

func (h chanHandler) Enabled(context.Context, slog.Level) bool      { return true }
func (h chanHandler) Handle(_ context.Context, r slog.Record) error { h <- r.Message; return nil }
func (h chanHandler) WithAttrs([]slog.Attr) slog.Handler            { return h }
func (h chanHandler) WithGroup(string) slog.Handler                 { return h }
