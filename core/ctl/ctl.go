// Package ctl is the control socket of a running server: a Unix socket in the
// data directory through which `mta` commands that read or change data reach
// the process that holds the databases open (bstore allows one process per
// file). When no server runs, the commands open the data directly.
//
// The protocol is one request per connection: the client sends it as JSON;
// the server streams the command's output in frames as it is written, then
// ends with a result frame (see writeFrame).
package ctl

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/switchyard-mta/switchyard/core/guard"
)

// SocketName is the control socket's file name in the data directory.
const SocketName = "ctl.sock"

// Request is one command, e.g. Args ["queue", "list"].
type Request struct {
	Args  []string `json:"args"`
	Stdin []byte   `json:"stdin,omitempty"`
}

// result ends a response: how the command ended.
type result struct {
	Error string `json:"error,omitempty"`
	Usage bool   `json:"usage,omitempty"`
}

// Frame kinds. A frame is its kind, its payload's length as 4 bytes big
// endian, and the payload: output as written, or the result as JSON.
const (
	frameOutput byte = 'o'
	frameResult byte = 'r'
	// maxFrame bounds a frame's payload; the server writes at most
	// frameSize, the client refuses more than maxFrame.
	frameSize = 64 << 10
	maxFrame  = 1 << 20
)

// writeFrame writes one frame to w.
func writeFrame(w io.Writer, kind byte, p []byte) error {
	var h [5]byte
	h[0] = kind
	binary.BigEndian.PutUint32(h[1:], uint32(len(p)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(p)
	return err
}

// outputFrames writes each Write as output frames of at most frameSize.
type outputFrames struct{ w io.Writer }

func (o outputFrames) Write(p []byte) (int, error) {
	for n := 0; n < len(p); {
		k := min(len(p)-n, frameSize)
		if err := writeFrame(o.w, frameOutput, p[n:n+k]); err != nil {
			return n, err
		}
		n += k
	}
	return len(p), nil
}

// Handler runs a command, writing its output to out.
type Handler func(ctx context.Context, req Request, out io.Writer) error

// UsageError is a command error caused by its input (exit status 2).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Server serves a Handler on the control socket.
type Server struct {
	ln  net.Listener
	h   Handler
	log *slog.Logger
}

// Listen creates the socket at path (mode 0600) and serves h on it until
// Close. A stale socket left by a killed server is replaced; a live one is
// an error.
func Listen(path string, h Handler, log *slog.Logger) (*Server, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another server is running", path)
	}
	os.Remove(path)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	s := &Server{ln: ln, h: h, log: log}
	go s.serve()
	return s, nil
}

// Close stops serving and removes the socket.
func (s *Server) Close() error {
	return s.ln.Close() // Removes the socket file (net.UnixListener unlinks on Close).
}

func (s *Server) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.handle(c)
	}
}

func (s *Server) handle(c net.Conn) {
	defer c.Close()
	var req Request
	if err := json.NewDecoder(io.LimitReader(c, 1<<20)).Decode(&req); err != nil {
		s.log.Warn("control request unreadable", slog.Any("err", err))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// A client that stops reading stalls only this command, and no longer
	// than its time limit. Small writes are gathered into large frames.
	c.SetWriteDeadline(time.Now().Add(5 * time.Minute))
	out := bufio.NewWriterSize(outputFrames{c}, frameSize)
	err := s.call(ctx, req, out)
	var res result
	if err != nil {
		res.Error = err.Error()
		var ue *UsageError
		res.Usage = errors.As(err, &ue)
	}
	s.log.Info("control command", slog.String("command", strings.Join(req.Args, " ")), slog.Bool("ok", err == nil))
	b, _ := json.Marshal(res)
	if out.Flush() == nil {
		writeFrame(c, frameResult, b)
	}
}

// call runs the handler; a panic in it fails the command, not the server.
func (s *Server) call(ctx context.Context, req Request, out io.Writer) (err error) {
	defer guard.Recover(s.log, "control command", &err)
	return s.h(ctx, req, out)
}

// ErrNotRunning is returned by Call when no server listens on the socket.
var ErrNotRunning = errors.New("ctl: no server running")

// Running reports whether a server listens on the control socket at path.
func Running(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Call runs req on the server listening at path and writes its output to
// out. It returns ErrNotRunning if there is none, the command's error
// otherwise (a *UsageError for input errors).
func Call(ctx context.Context, path string, req Request, out io.Writer) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return ErrNotRunning
		}
		return fmt.Errorf("control socket: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	r := bufio.NewReaderSize(c, frameSize+5)
	for {
		var h [5]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return fmt.Errorf("control socket: response cut short: %w", err)
		}
		n := binary.BigEndian.Uint32(h[1:])
		if n > maxFrame {
			return fmt.Errorf("control socket: frame of %d bytes", n)
		}
		switch h[0] {
		case frameOutput:
			if _, err := io.CopyN(out, r, int64(n)); err != nil {
				return fmt.Errorf("control socket: reading output: %w", err)
			}
		case frameResult:
			var res result
			b := make([]byte, n)
			if _, err := io.ReadFull(r, b); err != nil {
				return fmt.Errorf("control socket: response cut short: %w", err)
			}
			if err := json.Unmarshal(b, &res); err != nil {
				return fmt.Errorf("control socket: reading result: %w", err)
			}
			switch {
			case res.Error == "":
				return nil
			case res.Usage:
				return &UsageError{Msg: res.Error}
			default:
				return errors.New(res.Error)
			}
		default:
			return fmt.Errorf("control socket: unknown frame kind %q", h[0])
		}
	}
}
