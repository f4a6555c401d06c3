package smtpd

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/textproto"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/core/config"
)

const greetingTimeout = 300 * time.Millisecond

func startGreeting(t *testing.T, kind string) *testServer {
	return startServer(t, kind, func(c *Config) { c.GreetingTimeout = greetingTimeout })
}

// dialKind connects as a client of kind would before its first command: TLS
// at once for submissions.
func dialKind(t *testing.T, kind, addr string) net.Conn {
	t.Helper()
	var nc net.Conn
	var err error
	if kind == config.KindSubmissions {
		nc, err = tls.Dial("tcp", addr, clientTLS(t))
	} else {
		nc, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	return nc
}

// A client dribbling a byte at a time, never ending its first line, is cut
// off at the greeting timeout although each byte comes well within
// ReadTimeout (10s).
func TestGreetingTimeoutSlowloris(t *testing.T) {
	for _, kind := range []string{config.KindSMTP, config.KindSubmissions} {
		t.Run(kind, func(t *testing.T) {
			ts := startGreeting(t, kind)
			nc := dialKind(t, kind, ts.addr)
			start := time.Now()
			tc := textproto.NewConn(nc)
			if _, _, err := tc.ReadResponse(220); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				for i := 0; i < 100; i++ {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					if _, err := nc.Write([]byte("E")); err != nil {
						return
					}
				}
			}()
			if _, msg, err := tc.ReadResponse(421); err != nil || !strings.HasPrefix(msg, "4.4.2 "+testHost+" Timeout") {
				t.Fatalf("reply %q, %v; want 421 4.4.2", msg, err)
			}
			// Closed: EOF, or a reset if one of the bytes still dribbling in
			// reached the closed socket first.
			if _, err := tc.ReadLine(); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("after 421: %v, want EOF or a reset", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("cut off after %v", d)
			}
			waitLog(t, ts, "greeting timeout")
		})
	}
}

// On an implicit-TLS listener the handshake counts within the greeting
// timeout: a client that never starts it is closed.
func TestGreetingTimeoutTLSHandshake(t *testing.T) {
	ts := startGreeting(t, config.KindSubmissions)
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := io.ReadAll(nc); err != nil {
		t.Fatalf("read: %v, want EOF", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed after %v", d)
	}
}

// Once the first command line is in, ReadTimeout applies: a client may then
// idle past the greeting timeout.
func TestGreetingTimeoutLifted(t *testing.T) {
	for _, kind := range []string{config.KindSMTP, config.KindSubmissions} {
		for _, first := range []string{"EHLO client.test", "NOOP"} {
			if kind == config.KindSubmissions && first == "NOOP" {
				continue // Under TLS, HELO or EHLO lifts it.
			}
			t.Run(kind+" "+first, func(t *testing.T) {
				ts := startGreeting(t, kind)
				tc := textproto.NewConn(dialKind(t, kind, ts.addr))
				if _, _, err := tc.ReadResponse(220); err != nil {
					t.Fatal(err)
				}
				tc.PrintfLine("%s", first)
				if _, _, err := tc.ReadResponse(250); err != nil {
					t.Fatal(err)
				}
				time.Sleep(2 * greetingTimeout)
				tc.PrintfLine("NOOP")
				if _, msg, err := tc.ReadResponse(250); err != nil {
					t.Fatalf("NOOP after idling: %v %s", err, msg)
				}
			})
		}
	}
}

// waitLog waits a little for the server to log want.
func waitLog(t *testing.T, ts *testServer, want string) {
	t.Helper()
	for range 50 {
		if strings.Contains(ts.logs.String(), want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("log has no %q:\n%s", want, ts.logs.String())
}
