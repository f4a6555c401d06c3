package clientconn

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// listen returns a Listener on 127.0.0.1:0 logging to logs.
func listen(t *testing.T, logs io.Writer) *Listener {
	t.Helper()
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nl.Close() })
	return NewListener(nl, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

// connect dials l and returns both ends, the server's as Accept gave it.
func connect(t *testing.T, l *Listener) (client net.Conn, server *Conn) {
	t.Helper()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	nc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c, ok := nc.(*Conn)
	if !ok {
		t.Fatalf("Accept returned %T", nc)
	}
	return client, c
}

func TestAccept(t *testing.T) {
	logs := &bytes.Buffer{}
	l := listen(t, logs)
	client1, c1 := connect(t, l)
	_, c2 := connect(t, l)
	if want := netip.MustParseAddr("127.0.0.1"); c1.IP != want {
		t.Errorf("IP %v, want %v", c1.IP, want)
	}
	re := regexp.MustCompile(`level=DEBUG msg="connection opened" cid=(\w+) remote=(\S+)\n`)
	m := re.FindAllStringSubmatch(logs.String(), -1)
	if len(m) != 2 {
		t.Fatalf("log:\n%s", logs)
	}
	if m[0][1] == m[1][1] {
		t.Errorf("two connections with cid %s", m[0][1])
	}
	if m[0][2] != client1.LocalAddr().String() {
		t.Errorf("remote %s, want %s", m[0][2], client1.LocalAddr())
	}

	// Connection loggers carry the cid: close logs once, with a duration.
	c2.Log.Info("hello")
	c2.Close()
	c2.Close()
	want := `msg=hello cid=` + m[1][1] + ` remote=`
	if l := logs.String(); !strings.Contains(l, want) || strings.Count(l, `msg="connection closed"`) != 1 ||
		!regexp.MustCompile(`msg="connection closed" cid=`+m[1][1]+` remote=\S+ duration=\S+\n`).MatchString(l) {
		t.Errorf("log:\n%s", l)
	}
}

// After HangupAfterReply, the next write reaches the client and the
// connection closes; before it, writes leave it open.
func TestHangupAfterReply(t *testing.T) {
	logs := &bytes.Buffer{}
	client, c := connect(t, listen(t, logs))
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "250 ok\r\n"); err != nil {
		t.Fatal(err)
	}
	c.HangupAfterReply()
	if _, err := io.WriteString(c, "421 bye\r\n"); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "250 ok\r\n421 bye\r\n" {
		t.Errorf("read %q, %v; want both replies, then EOF", got, err)
	}
	if !strings.Contains(logs.String(), `msg="connection closed"`) {
		t.Errorf("close not logged:\n%s", logs)
	}
}

// An initial read timeout ends a read of a silent client.
func TestInitialReadTimeout(t *testing.T) {
	for _, timeout := range []time.Duration{0, 100 * time.Millisecond} {
		l := listen(t, io.Discard)
		l.InitialReadTimeout = timeout
		client, c := connect(t, l)
		if timeout == 0 {
			// No deadline: the read waits for the client.
			go func() {
				time.Sleep(200 * time.Millisecond)
				client.Write([]byte("x"))
			}()
		}
		start := time.Now()
		_, err := c.Read(make([]byte, 1))
		switch {
		case timeout == 0 && err != nil:
			t.Errorf("no timeout: read: %v", err)
		case timeout > 0 && !errors.Is(err, os.ErrDeadlineExceeded):
			t.Errorf("timeout %v: read: %v, want deadline exceeded", timeout, err)
		case timeout > 0 && time.Since(start) > 2*time.Second:
			t.Errorf("timeout %v: read returned after %v", timeout, time.Since(start))
		}
	}
}

func TestOf(t *testing.T) {
	_, c := connect(t, listen(t, io.Discard))
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	tests := []struct {
		name string
		nc   net.Conn
		want *Conn
	}{
		{"conn", c, c},
		{"tls over conn", tls.Server(c, &tls.Config{}), c},
		{"other", p1, nil},
		{"tls over other", tls.Server(p1, &tls.Config{}), nil},
	}
	for _, tt := range tests {
		got, ok := Of(tt.nc)
		if got != tt.want || ok != (tt.want != nil) {
			t.Errorf("%s: Of = %p, %v; want %p", tt.name, got, ok, tt.want)
		}
	}
}
