package smtptest

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// Script is an SMTP server on loopback that answers each command line as
// a function says, for what Server will not do. After a reply beginning
// with 354 it reads the message up to the line "." and answers
// "250 2.0.0 queued".
type Script struct {
	// Addr is the host:port it listens on.
	Addr string
	// Messages receives each message sent after a 354 reply, when its end
	// arrives or the connection ends before it. Unread, it holds 64;
	// later ones are dropped.
	Messages <-chan RawMessage

	l     net.Listener
	mu    sync.Mutex
	conns map[net.Conn]bool
}

// RawMessage is a message as a Script received it.
type RawMessage struct {
	Data  []byte // As on the wire: dot-stuffed, CRLF line ends, without the final ".".
	Ended bool   // The line "." arrived; false if the connection ended first.
}

// ScriptTimeout ends a Script's connection, whatever its state.
const ScriptTimeout = 10 * time.Second

// NewScript starts a server that greets with greeting (e.g. "220 ready")
// and answers each command line, without CRLF, with reply(cmd): one or
// more lines, joined by CRLF without the last; "" closes the connection.
// reply may block, to test timeouts; calls run on the connections'
// goroutines. The server is closed when the test ends.
func NewScript(t testing.TB, greeting string, reply func(cmd string) string) *Script {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtptest: %v", err)
	}
	msgs := make(chan RawMessage, 64)
	s := &Script{Addr: l.Addr().String(), Messages: msgs, l: l, conns: map[net.Conn]bool{}}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = true
			s.mu.Unlock()
			go func() {
				s.serve(c, greeting, reply, msgs)
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
		}
	}()
	t.Cleanup(s.Close)
	return s
}

// Close stops the server and closes its connections. NewScript has it
// called at the end of the test.
func (s *Script) Close() {
	s.l.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

func (s *Script) serve(c net.Conn, greeting string, reply func(string) string, msgs chan<- RawMessage) {
	c.SetDeadline(time.Now().Add(ScriptTimeout))
	br := bufio.NewReader(c)
	// A line ends with CRLF only: a bare LF or CR stays in it, as a
	// client must not send them (RFC 5321 §2.3.8).
	readLine := func() (string, error) {
		var line string
		for !strings.HasSuffix(line, "\r\n") {
			part, err := br.ReadString('\n')
			if err != nil {
				return "", err
			}
			line += part
		}
		return strings.TrimSuffix(line, "\r\n"), nil
	}
	send := func(m RawMessage) {
		select {
		case msgs <- m:
		default:
		}
	}
	io.WriteString(c, greeting+"\r\n")
	for {
		line, err := readLine()
		if err != nil {
			return
		}
		r := reply(line)
		if r == "" {
			return
		}
		io.WriteString(c, r+"\r\n")
		if !strings.HasPrefix(r, "354") {
			continue
		}
		var data []byte
		for {
			line, err := readLine()
			if err != nil {
				send(RawMessage{Data: data})
				return
			}
			if line == "." {
				send(RawMessage{Data: data, Ended: true})
				io.WriteString(c, "250 2.0.0 queued\r\n")
				break
			}
			data = append(data, line+"\r\n"...)
		}
	}
}
