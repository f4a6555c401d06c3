package imapd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/store"
)

// goIMAPMaxSize is go-imap's count of command bytes (outside literals)
// that it reads before failing: what follows them it read, unfixed, as the
// next command.
const goIMAPMaxSize = 50*1024 + 1

// overflow returns prefix padded with unit to goIMAPMaxSize counted bytes
// (counted bytes before prefix included), then the command that must never
// run.
func overflow(counted int, prefix, unit, injected string) string {
	n := goIMAPMaxSize - counted - len(prefix)
	pad := strings.Repeat(unit, n/len(unit)+1)[:n]
	return prefix + pad + injected
}

// readUntil reads response lines until one starts with prefix or the
// connection closes; it returns them, and whether it closed.
func (r *raw) readUntil(prefix string) (lines []string, closed bool) {
	r.t.Helper()
	r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		l, err := r.r.ReadString('\n')
		if l != "" {
			lines = append(lines, strings.TrimSuffix(l, "\r\n"))
		}
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) {
			return lines, true
		} else if err != nil {
			r.t.Fatalf("reading responses: %v after %q", err, lines)
		}
		if strings.HasPrefix(l, prefix) {
			return lines, false
		}
	}
}

// noMailbox fails the test if alice has the mailbox name.
func (ts *testServer) noMailbox(t *testing.T, name string) {
	t.Helper()
	_, err := ts.account(t, "alice").Mailbox(context.Background(), name)
	if !errors.Is(err, store.ErrNoMailbox) {
		t.Errorf("mailbox %s: %v, want it not created", name, err)
	}
}

func noServerBug(t *testing.T, lines []string) {
	t.Helper()
	for _, l := range lines {
		if strings.Contains(l, "SERVERBUG") {
			t.Errorf("response %q", l)
		}
	}
}

// A command past the limits is refused whole, its rest skipped to its end,
// literals included, and never read as another command (the injection
// of go-imap beta.8, which went on reading after its 50 KiB): the session
// goes on, or is closed if go-imap already had part of the command.
func TestOverlongCommandNotRun(t *testing.T) {
	const inj = "c CREATE INJ"
	tests := []struct {
		name string
		// send writes the command; r has SELECTed Drafts.
		send func(r *raw)
		// mayClose: the server may end the session instead of answering.
		mayClose bool
	}{
		{"issue line", func(r *raw) {
			r.write("b SEARCH TEXT " + strings.Repeat("A", 51188) + inj)
		}, false},
		{"quoted string", func(r *raw) {
			r.write(overflow(0, `b SEARCH TEXT "`, "A", inj+`"`))
		}, false},
		{"search not not", func(r *raw) {
			r.write(overflow(0, "b SEARCH ", "NOT ", inj))
		}, false},
		{"header fields", func(r *raw) {
			r.write(overflow(0, "b FETCH 1 (BODY.PEEK[HEADER.FIELDS (", "X ", inj+")])"))
		}, false},
		{"after synchronizing literal", func(r *raw) {
			first := "b SEARCH TEXT {5}\r\n"
			io.WriteString(r.nc, first)
			if l := r.line(); !strings.HasPrefix(l, "+") {
				r.t.Fatalf("literal: %s", l)
			}
			r.write("hello" + overflow(len(first), " TEXT ", "A", inj))
		}, true},
		{"after non-synchronizing literal", func(r *raw) {
			first := "b SEARCH TEXT {5+}\r\n"
			r.write(first + "hello" + overflow(len(first), " TEXT ", "A", inj))
		}, true},
		{"announcing non-synchronizing literal", func(r *raw) {
			// The literal is skipped with the line: its lines are no
			// commands either.
			r.write(overflow(0, "b SEARCH TEXT ", "A", " TEXT {17+}") + "\r\n" + "\r\nd CREATE INJ2\r\n")
		}, false},
		{"announcing synchronizing literal", func(r *raw) {
			// The client waits for "+" that never comes: the command
			// ends there.
			r.write(overflow(0, "b SEARCH TEXT ", "A", " TEXT {5}"))
		}, false},
		{"too deeply nested", func(r *raw) {
			r.write("b SEARCH " + strings.Repeat("(", 5000) + "ALL" + strings.Repeat(")", 5000))
		}, false},
		{"buffered literal too big, non-synchronizing", func(r *raw) {
			// go-imap refused the literal, then read its bytes as the
			// mailbox name and commands.
			r.write("b CREATE {5000+}\r\nINJ3\r\n" + inj + "\r\n" + strings.Repeat("x", 5000-len("INJ3\r\n"+inj+"\r\n")))
		}, false},
		{"literal after a parse error", func(r *raw) {
			r.write("b NOOP {14+}\r\n" + inj + "\r\n")
		}, false},
		{"long IDLE line", func(r *raw) {
			r.write("b IDLE")
			if l := r.line(); !strings.HasPrefix(l, "+") {
				r.t.Fatalf("IDLE: %s", l)
			}
			r.write(strings.Repeat("X", 4096) + inj)
		}, false},
	}
	ts := startServer(t, config.KindIMAPS, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ts.rawLogin(t)
			r.ok("SELECT Drafts")
			tt.send(r)
			r.write("z NOOP")
			lines, closed := r.readUntil("z ")
			noServerBug(t, lines)
			for _, l := range lines {
				if strings.HasPrefix(l, "c ") || strings.HasPrefix(l, "d ") {
					t.Errorf("injected command answered: %q", l)
				}
			}
			switch {
			case closed && !tt.mayClose:
				t.Errorf("connection closed, want the session to go on; responses %q", lines)
			case closed:
				if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], "* BYE [") {
					t.Errorf("closed after %q, want BYE with a code", lines)
				}
			case !strings.HasPrefix(lines[len(lines)-1], "z OK"):
				t.Errorf("next command: %q", lines)
			case len(lines) < 2 || !strings.HasPrefix(lines[len(lines)-2], "b BAD [") && !strings.HasPrefix(lines[len(lines)-2], "b NO ["):
				t.Errorf("want b refused with BAD or NO and a code, got %q", lines)
			}
			for _, name := range []string{"INJ", "INJ2", "INJ3"} {
				ts.noMailbox(t, name)
			}
		})
	}
}

// Client errors are answered BAD or NO with a response code, never as
// go-imap's internal error (SERVERBUG).
func TestClientErrorsNotServerBug(t *testing.T) {
	ts := startServer(t, config.KindIMAPS, nil)
	tests := []struct {
		name  string
		login bool
		// run sends the command tagged "b" and returns the tagged reply.
		run  func(r *raw) string
		want string
	}{
		{"authenticate plain not base64", false, func(r *raw) string {
			r.write("b AUTHENTICATE PLAIN !!!")
			return last(r.readUntil("b "))
		}, "b BAD ["},
		{"authenticate response 100 KB", false, func(r *raw) string {
			r.write("b AUTHENTICATE PLAIN")
			if l := r.line(); !strings.HasPrefix(l, "+") {
				r.t.Fatalf("AUTHENTICATE: %s", l)
			}
			r.write(strings.Repeat("QUFB", 25<<10))
			return last(r.readUntil("b "))
		}, "b BAD [TOOBIG]"},
		{"authenticate response malformed PLAIN", false, func(r *raw) string {
			r.write("b AUTHENTICATE PLAIN")
			r.line()
			r.write(b64("no nuls"))
			return last(r.readUntil("b "))
		}, "b BAD ["},
		{"create with NUL", true, func(r *raw) string {
			r.write("b CREATE {3+}\r\na\x00b")
			return last(r.readUntil("b "))
		}, "b "},
		{"fetch 0", true, func(r *raw) string {
			r.ok("SELECT INBOX")
			r.write("b FETCH 0 FLAGS")
			return last(r.readUntil("b "))
		}, "b BAD ["},
		{"search nested 5000 deep", true, func(r *raw) string {
			r.ok("SELECT INBOX")
			r.write("b SEARCH " + strings.Repeat("(", 5000) + "ALL" + strings.Repeat(")", 5000))
			return last(r.readUntil("b "))
		}, "b BAD [LIMIT]"},
		{"search NOT 5000 deep", true, func(r *raw) string {
			r.ok("SELECT INBOX")
			r.write("b SEARCH " + strings.Repeat("NOT ", 5000) + "ALL")
			return last(r.readUntil("b "))
		}, "b BAD [LIMIT]"},
		{"append date not a date", true, func(r *raw) string {
			r.write(`b APPEND INBOX "not a date" {1+}` + "\r\nx")
			return last(r.readUntil("b "))
		}, "b BAD ["},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r *raw
			if tt.login {
				r = ts.rawLogin(t)
			} else {
				r, _ = ts.dialRaw(t)
			}
			res := tt.run(r)
			if strings.Contains(res, "SERVERBUG") || !strings.HasPrefix(res, tt.want) ||
				!strings.HasPrefix(res, "b BAD [") && !strings.HasPrefix(res, "b NO [") {
				t.Fatalf("reply %q, want prefix %q, BAD or NO with a code", res, tt.want)
			}
			if _, res := r.cmd("NOOP"); !strings.HasPrefix(res, "OK") {
				t.Errorf("NOOP after: %s", res)
			}
		})
	}
}

func last(lines []string, closed bool) string {
	if closed || len(lines) == 0 {
		return fmt.Sprintf("closed after %q", lines)
	}
	return lines[len(lines)-1]
}

// A full disk is the server's limit, not the account's quota.
func TestStoreErrorDiskFull(t *testing.T) {
	s := &session{log: slog.New(slog.DiscardHandler)}
	err := s.storeError("append", fmt.Errorf("store: writing message: %w", &fsError{syscall.ENOSPC}), imap.ResponseCodeTryCreate)
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo || ie.Code != imap.ResponseCodeLimit {
		t.Fatalf("storeError: %v, want NO [LIMIT]", err)
	}
}

// fsError is an error as os.File.Write returns it.
type fsError struct{ errno syscall.Errno }

func (e *fsError) Error() string { return "write /x: " + e.errno.Error() }
func (e *fsError) Unwrap() error { return e.errno }

// A client that sends no complete command line within GreetingTimeout is
// told BYE [UNAVAILABLE] and cut off, even sending a byte now and then; on
// imaps the handshake counts within it.
func TestGreetingTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	for _, kind := range []string{config.KindIMAP, config.KindIMAPS} {
		t.Run(kind, func(t *testing.T) {
			ts := startServer(t, kind, func(c *Config) { c.GreetingTimeout = timeout })
			r, _ := ts.dialRaw(t)
			start := time.Now()
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for _, b := range []byte("a NOOP and more, slowly") {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					if _, err := r.nc.Write([]byte{b}); err != nil {
						return
					}
				}
			}()
			lines := r.expectClosed()
			if d := time.Since(start); d > 3*timeout {
				t.Errorf("closed after %v, want about %v", d, timeout)
			}
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "* BYE [UNAVAILABLE]") {
				t.Errorf("responses %q, want BYE [UNAVAILABLE]", lines)
			}
			if !strings.Contains(ts.logs.String(), "no command line in time") {
				t.Errorf("not logged:\n%s", ts.logs)
			}
		})
	}
	t.Run("imaps handshake", func(t *testing.T) {
		ts := startServer(t, config.KindIMAPS, func(c *Config) { c.GreetingTimeout = timeout })
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		start := time.Now()
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("read: %v, want EOF", err)
		}
		if d := time.Since(start); d > 3*timeout {
			t.Errorf("closed after %v, want about %v", d, timeout)
		}
	})
	t.Run("in time", func(t *testing.T) {
		ts := startServer(t, config.KindIMAP, func(c *Config) { c.GreetingTimeout = timeout })
		r, _ := ts.dialRaw(t)
		r.ok("NOOP")
		time.Sleep(2 * timeout)
		r.starttls()
		r.ok("LOGIN alice secret")
		time.Sleep(2 * timeout)
		r.ok("NOOP")
	})
}

// STARTTLS drops what the client sent after the command in plaintext
// (command injection into the TLS session, CVE-2011-0411), and the TLS
// session is not greeted again.
func TestSTARTTLSDropsPipelined(t *testing.T) {
	ts := startServer(t, config.KindIMAP, nil)
	r, _ := ts.dialRaw(t)
	r.write("a STARTTLS\r\nb CREATE INJ")
	if l := r.line(); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("STARTTLS: %s", l)
	}
	tc := tls.Client(r.nc, clientTLS(t))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	r.nc = tc
	r.r.Reset(tc)
	r.ok("LOGIN alice secret")
	if _, res := r.cmd("STARTTLS"); strings.HasPrefix(res, "OK") {
		t.Errorf("second STARTTLS: %s", res)
	}
	ts.noMailbox(t, "INJ")
}

// FuzzCommand sends arbitrary bytes as a client's input to a real server,
// logged in with a mailbox selected unless the input starts with "-", then
// ends its side of the connection. The server must answer without
// SERVERBUG, log no error (a panic included), and close the connection.
// (That hidden commands do not run, the tests above check: here a
// mutation may well make one a command of its own.)
func FuzzCommand(f *testing.F) {
	for _, seed := range []string{
		"a NOOP\r\n",
		"a SEARCH TEXT {5}\r\nhello TEXT \"x\"\r\n",
		"a SEARCH TEXT {5+}\r\nhello\r\n",
		"a APPEND INBOX (\\Seen) {12+}\r\nSubject: x\r\n\r\n",
		"a APPEND INBOX {4000000000+}\r\nc CREATE INJ\r\n",
		"a CREATE {5000+}\r\nc CREATE INJ\r\n",
		"a NOOP {14+}\r\nc CREATE INJ\r\n",
		"a IDLE\r\n" + strings.Repeat("X", 4096) + "c CREATE INJ\r\n",
		"a FETCH 1:* (BODY[HEADER.FIELDS (X Y)] FLAGS)\r\n",
		"a FETCH 0 FLAGS\r\na UID STORE 1 +FLAGS (\\Deleted)\r\n",
		"a SEARCH " + strings.Repeat("(", 200) + "ALL" + strings.Repeat(")", 200) + "\r\n",
		"a SEARCH " + strings.Repeat("NOT ", 200) + "ALL\r\n",
		"-a AUTHENTICATE PLAIN\r\n" + strings.Repeat("QUFB", 2000) + "\r\n",
		"-a AUTHENTICATE PLAIN !!!\r\nb LOGIN alice secret\r\n",
		"-a STARTTLS\r\n",
	} {
		f.Add([]byte(seed))
	}
	ts := startServer(f, config.KindIMAPS, nil)
	ts.deliver(f, "alice", "INBOX", testMsg, store.DeliverOptions{})
	f.Fuzz(func(t *testing.T, input []byte) {
		logged := len(ts.logs.String())
		var r *raw
		if len(input) > 0 && input[0] == '-' {
			r, _ = ts.dialRaw(t)
			input = input[1:]
		} else {
			r = ts.rawLogin(t)
			r.ok("SELECT INBOX")
		}
		tc := r.nc.(*tls.Conn)
		go func() {
			tc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			tc.Write(input)
			tc.CloseWrite()
		}()
		noServerBug(t, r.expectClosed())
		if l := ts.logs.String()[logged:]; strings.Contains(l, "level=ERROR") {
			t.Fatalf("error logged:\n%s", l)
		}
	})
}
