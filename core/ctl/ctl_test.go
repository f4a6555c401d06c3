package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

func TestCall(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	ctx := context.Background()
	if err := Call(ctx, path, Request{Args: []string{"x"}}, io.Discard); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("no server: got %v", err)
	}
	h := func(ctx context.Context, req Request, out io.Writer) error {
		switch req.Args[0] {
		case "echo":
			fmt.Fprintf(out, "%s|%s", strings.Join(req.Args[1:], " "), req.Stdin)
			return nil
		case "bad":
			return &UsageError{Msg: "bad input"}
		case "panic":
			panic("handler failed")
		case "big":
			// Many small writes and one large one: frames of frameSize.
			for i := range 50_000 {
				fmt.Fprintf(out, "%d\n", i)
			}
			out.Write([]byte(strings.Repeat("x", 3*frameSize+1)))
			return errors.New("failed after output")
		}
		return errors.New("failed")
	}
	s, err := Listen(path, h, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := Call(ctx, path, Request{Args: []string{"echo", "a", "b"}, Stdin: []byte("in")}, &out); err != nil || out.String() != "a b|in" {
		t.Fatalf("echo: %q %v", out.String(), err)
	}
	// Output larger than a frame arrives whole, and the error after it.
	var want strings.Builder
	for i := range 50_000 {
		fmt.Fprintf(&want, "%d\n", i)
	}
	want.WriteString(strings.Repeat("x", 3*frameSize+1))
	out.Reset()
	if err := Call(ctx, path, Request{Args: []string{"big"}}, &out); err == nil || err.Error() != "failed after output" || out.String() != want.String() {
		t.Fatalf("big: %d bytes of output (want %d), error %v", out.Len(), want.Len(), err)
	}
	var ue *UsageError
	if err := Call(ctx, path, Request{Args: []string{"bad"}}, io.Discard); !errors.As(err, &ue) {
		t.Fatalf("usage error: got %v", err)
	}
	if err := Call(ctx, path, Request{Args: []string{"other"}}, io.Discard); err == nil || err.Error() != "failed" {
		t.Fatalf("error: got %v", err)
	}
	// A panicking command fails; the server goes on.
	if err := Call(ctx, path, Request{Args: []string{"panic"}}, io.Discard); err == nil || !strings.Contains(err.Error(), "internal error") {
		t.Fatalf("panic: got %v", err)
	}
	if err := Call(ctx, path, Request{Args: []string{"echo", "after"}}, io.Discard); err != nil {
		t.Fatalf("after a panic: %v", err)
	}
	if _, err := Listen(path, h, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("second server on a live socket started")
	}
	s.Close()

	// A stale socket file (server killed) is replaced.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	s, err = Listen(path, h, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	s.Close()
}
