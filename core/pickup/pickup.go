// Package pickup is local submission, as Postfix's sendmail/pickup: `mta
// sendmail` hands a message to the running server through a Unix socket
// that every local user may connect to, without a password. The server
// learns who sent it from the socket's peer credentials (SO_PEERCRED): a
// user's messages come from USER@hostname; root and the server's own user
// may name any sender. The message is queued as submission queues it; the
// reply carries the queue id once the message is durable.
//
// The protocol is one JSON request and one JSON response per connection.
package pickup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/switchyard-mta/switchyard/core/guard"
	"github.com/switchyard-mta/switchyard/core/queue"
	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// SocketPath is where the socket is in a data directory: in a directory of
// its own that everyone may enter, as the data directory must then be (mode
// 0711: enter, not list).
func SocketPath(dataDir string) string {
	return filepath.Join(dataDir, "public", "submit.sock")
}

// Request is one message to submit.
type Request struct {
	// From is the envelope sender; empty: USER@hostname of the submitting
	// user. Only trusted users may name another.
	From    string   `json:"from,omitempty"`
	To      []string `json:"to"`
	Message []byte   `json:"message"` // With CRLF line ends.
}

type response struct {
	ID    string `json:"id,omitempty"`
	Error string `json:"error,omitempty"`
	Usage bool   `json:"usage,omitempty"` // The request was at fault.
}

// UsageError is a refusal of the request itself (sendmail's exit status 2).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// ErrNotRunning is returned by Submit when no server listens.
var ErrNotRunning = errors.New("pickup: no server running")

// Queue is where submitted messages go (*queue.Queue).
type Queue interface {
	NewSpool() *queue.Spool
	Add(ctx context.Context, env queue.Envelope, s *queue.Spool) (id string, err error)
}

// Config configures a Server.
type Config struct {
	Hostname       string // Senders are USER@Hostname; the Received header names it.
	MaxMessageSize int64
	Queue          Queue
	// AccountOf returns the account an address belongs to, for routing by
	// the sender's account as submission does. Nil: none.
	AccountOf func(addr mailaddr.Address) (string, bool)
	Log       *slog.Logger
}

// Server serves the pickup socket.
type Server struct {
	cfg     Config
	ln      *net.UnixListener
	trusted map[uint32]bool // Uids that may name any sender.
}

// Listen creates the socket at path (mode 0666 in a 0755 directory) and
// serves it until Close. A stale socket is replaced.
func Listen(path string, cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if err := os.Chmod(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("pickup socket: %w", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, err
	}
	s := &Server{cfg: cfg, ln: ln, trusted: map[uint32]bool{0: true, uint32(os.Getuid()): true}}
	go s.serve()
	return s, nil
}

// Close stops serving and removes the socket.
func (s *Server) Close() error { return s.ln.Close() }

func (s *Server) serve() {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		go s.handle(c)
	}
}

const requestTimeout = 5 * time.Minute

func (s *Server) handle(c *net.UnixConn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(requestTimeout))
	resp := response{}
	id, err := s.submit(c)
	if err != nil {
		resp.Error = err.Error()
		var ue *UsageError
		resp.Usage = errors.As(err, &ue)
	}
	resp.ID = id
	json.NewEncoder(c).Encode(resp)
}

func (s *Server) submit(c *net.UnixConn) (id string, err error) {
	defer guard.Recover(s.cfg.Log, "local submission", &err)
	uid, name, err := peer(c)
	if err != nil {
		s.cfg.Log.Warn("pickup: peer credentials", slog.Any("err", err))
		return "", err
	}
	log := s.cfg.Log.With(slog.Int("uid", int(uid)), slog.String("user", name))
	// Base64 makes the message 4/3 as long; the rest is small.
	limit := s.cfg.MaxMessageSize/3*4 + 64<<10
	var req Request
	if err := json.NewDecoder(io.LimitReader(c, limit)).Decode(&req); err != nil {
		log.Info("pickup: request unreadable", slog.Any("err", err))
		return "", &UsageError{Msg: "request unreadable or message too large: " + err.Error()}
	}
	own := name + "@" + s.cfg.Hostname
	from := req.From
	switch {
	case from == "":
		from = own
	case from != own && !s.trusted[uid]:
		return "", &UsageError{Msg: fmt.Sprintf("user %s may send only as %s, not %s", name, own, from)}
	}
	fromAddr, err := checkAddress(from)
	if err != nil {
		return "", &UsageError{Msg: fmt.Sprintf("sender %q: %v", from, err)}
	}
	if len(req.To) == 0 {
		return "", &UsageError{Msg: "no recipients"}
	}
	env := queue.Envelope{From: from}
	if s.cfg.AccountOf != nil {
		env.Account, _ = s.cfg.AccountOf(fromAddr)
	}
	for _, to := range req.To {
		if _, err := checkAddress(to); err != nil {
			return "", &UsageError{Msg: fmt.Sprintf("recipient %q: %v", to, err)}
		}
		env.Recipients = append(env.Recipients, sdk.Recipient{Address: to})
	}
	env.Options.SMTPUTF8 = !isASCII(from) || !allASCII(req.To)
	if int64(len(req.Message)) > s.cfg.MaxMessageSize {
		return "", &UsageError{Msg: fmt.Sprintf("message larger than %d bytes", s.cfg.MaxMessageSize)}
	}
	if err := checkMessage(req.Message); err != nil {
		return "", &UsageError{Msg: err.Error()}
	}

	sp := s.cfg.Queue.NewSpool()
	defer sp.Discard()
	received := fmt.Sprintf("Received: by %s (Switchyard, from userid %d);\r\n\t%s\r\n", s.cfg.Hostname, uid, time.Now().Format(time.RFC1123Z))
	if _, err := io.WriteString(sp, received); err != nil {
		return "", err
	}
	if _, err := sp.Write(req.Message); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err = s.cfg.Queue.Add(ctx, env, sp)
	if err != nil {
		log.Error("pickup: queueing", slog.Any("err", err))
		return "", fmt.Errorf("queueing failed, try again later: %w", err)
	}
	log.Info("local submission", slog.String("queueid", id), slog.String("from", from), slog.Int("rcpts", len(env.Recipients)), slog.Int("size", len(req.Message)))
	return id, nil
}

// peer returns the uid of the process at the other end of c, and its user
// name (the uid in decimal if it has none).
func peer(c *net.UnixConn) (uint32, string, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, "", err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, "", err
	}
	if credErr != nil {
		return 0, "", credErr
	}
	name := strconv.Itoa(int(cred.Uid))
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	return cred.Uid, name, nil
}

// checkAddress accepts a plain local@domain of printable characters, as
// the recipients of a message from a local program are, and parses it.
func checkAddress(a string) (mailaddr.Address, error) {
	switch {
	case !utf8.ValidString(a):
		return mailaddr.Address{}, errors.New("not UTF-8")
	case strings.ContainsFunc(a, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '<' || r == '>' }):
		return mailaddr.Address{}, errors.New("spaces, controls or angle brackets")
	}
	return mailaddr.ParseAddress(a)
}

// checkMessage refuses NUL and CR or LF outside CRLF, as SMTP does.
func checkMessage(m []byte) error {
	if bytes.IndexByte(m, 0) >= 0 {
		return errors.New("NUL in message")
	}
	for i, c := range m {
		if c == '\r' && (i+1 == len(m) || m[i+1] != '\n') || c == '\n' && (i == 0 || m[i-1] != '\r') {
			return errors.New("bare CR or LF in message")
		}
	}
	return nil
}

func isASCII(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r >= 0x80 }) < 0
}

func allASCII(l []string) bool {
	for _, s := range l {
		if !isASCII(s) {
			return false
		}
	}
	return true
}

// Submit hands req to the server at the socket path and returns the queue
// id. It returns ErrNotRunning if no server listens, a *UsageError if the
// server refused the request.
func Submit(ctx context.Context, path string, req Request) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return "", ErrNotRunning
		}
		return "", fmt.Errorf("pickup socket: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	// A server refusing the request early answers and closes while it is
	// still being written: the answer says why.
	werr := json.NewEncoder(c).Encode(req)
	var resp response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		if werr != nil {
			return "", fmt.Errorf("pickup socket: %w", werr)
		}
		return "", fmt.Errorf("pickup socket: reading the reply: %w", err)
	}
	if resp.Error != "" {
		if resp.Usage {
			return "", &UsageError{Msg: resp.Error}
		}
		return "", errors.New(resp.Error)
	}
	return resp.ID, nil
}
