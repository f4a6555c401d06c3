package connlimit

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/core/internal/testcert"
)

func reply(r Reason) string { return "421 4.7.0 test refused: " + r.String() + "\r\n" }

// serve listens on 127.0.0.1 through g with lim and keeps every connection
// it accepts open; accepted receives them.
func serve(t *testing.T, g *Gate, lim Limits, tlsConfig *tls.Config) (*Listener, chan net.Conn) {
	t.Helper()
	nl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := g.Listener(nl, lim, Refusal{TLS: tlsConfig, Reply: reply}, nil)
	t.Cleanup(func() { l.Close() })
	accepted := make(chan net.Conn, 1000)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	return l, accepted
}

// dialFrom connects to addr from the local address ip (any of 127/8 is
// loopback on Linux).
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", ip, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readLine reads what the server says before closing: a refusal, or
// nothing within wait.
func readLine(c net.Conn, wait time.Duration) string {
	c.SetReadDeadline(time.Now().Add(wait))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}

// TestSlowlorisPerIP: 200 connections from one address that never finish a
// line get 20 slots; the rest are refused with the reply, and another
// address is still served.
func TestSlowlorisPerIP(t *testing.T) {
	l, accepted := serve(t, NewGate(2000), Limits{MaxPerIP: 20}, nil)
	addr := l.Addr().String()
	clients := make([]net.Conn, 200)
	for i := range clients {
		clients[i] = dialFrom(t, "127.0.0.1", addr)
		clients[i].Write([]byte("E")) // A byte of a line that never ends.
	}
	var refused int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			if line := readLine(c, time.Second); line != "" {
				if line != reply(ReasonPerIP) {
					t.Errorf("refusal %q", line)
				}
				mu.Lock()
				refused++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if refused != 180 || len(accepted) != 20 {
		t.Fatalf("%d accepted, %d refused; want 20 and 180", len(accepted), refused)
	}
	var held []net.Conn
	for range 20 {
		held = append(held, <-accepted)
	}

	other := dialFrom(t, "127.0.0.2", addr)
	select {
	case c := <-accepted:
		if got := c.RemoteAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.2" {
			t.Fatalf("accepted %s", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("another address was not served")
	}
	other.Close()

	// A closed connection gives its slot back.
	held[0].Close()
	dialFrom(t, "127.0.0.1", addr)
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("a freed slot was not given to the next connection")
	}
}

// TestTotal: the Gate caps two listeners together, and a listener its own.
func TestTotal(t *testing.T) {
	g := NewGate(3)
	l1, acc1 := serve(t, g, Limits{}, nil)
	l2, acc2 := serve(t, g, Limits{MaxConnections: 1}, nil)
	var held []net.Conn
	for range 2 {
		dialFrom(t, "127.0.0.1", l1.Addr().String())
		held = append(held, <-acc1)
	}
	dialFrom(t, "127.0.0.1", l2.Addr().String())
	<-acc2
	if g.Open() != 3 {
		t.Fatalf("open %d, want 3", g.Open())
	}
	if line := readLine(dialFrom(t, "127.0.0.1", l1.Addr().String()), 5*time.Second); line != reply(ReasonTotal) {
		t.Fatalf("over the total: %q", line)
	}
	// Free one of l1: l2 is still at its own cap.
	held[0].Close()
	if line := readLine(dialFrom(t, "127.0.0.1", l2.Addr().String()), 5*time.Second); line != reply(ReasonListener) {
		t.Fatalf("over the listener's cap: %q", line)
	}
}

func TestExempt(t *testing.T) {
	l, accepted := serve(t, NewGate(0), Limits{MaxPerIP: 1, RatePerIP: 1, Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/24")}}, nil)
	for range 5 {
		dialFrom(t, "127.0.0.1", l.Addr().String())
		<-accepted
	}
	dialFrom(t, "127.0.1.1", l.Addr().String())
	<-accepted
	if line := readLine(dialFrom(t, "127.0.1.1", l.Addr().String()), 5*time.Second); line != reply(ReasonPerIP) {
		t.Fatalf("not exempt: %q", line)
	}
}

// TestRate runs the bucket on a clock of the test's.
func TestRate(t *testing.T) {
	l := NewGate(0).Listener(nil, Limits{RatePerIP: 6}, Refusal{}, nil)
	now := time.Unix(1e9, 0)
	l.now = func() time.Time { return now }
	ip := netip.MustParseAddr("192.0.2.1")
	var keys []netip.Prefix
	for i := range 6 {
		k, r := l.admit(ip)
		if r != 0 {
			t.Fatalf("connection %d refused: %v", i, r)
		}
		keys = append(keys, k)
	}
	if _, r := l.admit(ip); r != ReasonRate {
		t.Fatalf("7th connection: %v, want %v", r, ReasonRate)
	}
	k, r := l.admit(netip.MustParseAddr("192.0.2.2"))
	if r != 0 {
		t.Fatalf("another client: %v", r)
	}
	keys = append(keys, k)
	now = now.Add(10 * time.Second) // One token: 6 a minute.
	k, r = l.admit(ip)
	if r != 0 {
		t.Fatalf("after 10 s: %v", r)
	}
	keys = append(keys, k)
	if _, r := l.admit(ip); r != ReasonRate {
		t.Fatalf("second after 10 s: %v", r)
	}
	for _, k := range keys {
		l.release(k)
	}
	// The clients' buckets refill within a minute; then they are forgotten.
	now = now.Add(2 * time.Minute)
	l.admit(netip.MustParseAddr("192.0.2.3"))
	if n := l.Clients(); n != 1 {
		t.Fatalf("%d clients kept after the sweep, want 1", n)
	}
}

// TestIPv6Key: IPv6 clients count by /64, IPv4-mapped ones as IPv4.
func TestIPv6Key(t *testing.T) {
	for _, c := range []struct{ a, b string }{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::2"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"fe80::1%eth0", "fe80::2"},
	} {
		if ka, kb := Key(netip.MustParseAddr(c.a)), Key(netip.MustParseAddr(c.b)); ka != kb {
			t.Errorf("%s → %s, %s → %s: want one client", c.a, ka, c.b, kb)
		}
	}
	if Key(netip.MustParseAddr("2001:db8:1:2::1")) == Key(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Error("two /64s counted as one")
	}
	if Key(netip.MustParseAddr("192.0.2.1")) == Key(netip.MustParseAddr("192.0.2.2")) {
		t.Error("two IPv4 addresses counted as one")
	}
}

// TestTLSRefusal: on an implicit-TLS listener the refusal comes after the
// handshake; clients that never handshake neither hold up Accept nor take
// more than maxRefusing goroutines.
func TestTLSRefusal(t *testing.T) {
	l, accepted := serve(t, NewGate(0), Limits{MaxConnections: 1}, serverTLS(t))
	addr := l.Addr().String()
	held := dialFrom(t, "127.0.0.1", addr)
	first := <-accepted

	for range 3 * maxRefusing {
		dialFrom(t, "127.0.0.1", addr) // Silent: no ClientHello.
	}
	tc := tls.Client(dialFrom(t, "127.0.0.1", addr), &tls.Config{InsecureSkipVerify: true})
	if line := readLine(tc, 10*time.Second); line != reply(ReasonListener) && line != "" {
		t.Fatalf("over TLS: %q", line)
	}

	first.Close()
	held.Close()
	start := time.Now()
	dialFrom(t, "127.0.0.1", addr)
	select {
	case <-accepted:
	case <-time.After(3 * time.Second):
		t.Fatal("Accept held up by refusals in progress")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("accepted after %v", d)
	}
	if n := len(l.refusing); n > maxRefusing {
		t.Fatalf("%d refusals in progress", n)
	}
}

// TestTLSRefusalReply: one client over the cap, alone, reads the refusal
// over TLS.
func TestTLSRefusalReply(t *testing.T) {
	l, accepted := serve(t, NewGate(0), Limits{MaxConnections: 1}, serverTLS(t))
	addr := l.Addr().String()
	dialFrom(t, "127.0.0.1", addr)
	<-accepted
	tc := tls.Client(dialFrom(t, "127.0.0.1", addr), &tls.Config{InsecureSkipVerify: true})
	if line := readLine(tc, 5*time.Second); line != reply(ReasonListener) {
		t.Fatalf("over TLS: %q", line)
	}
}

var cert = testcert.Once("test")

func serverTLS(t *testing.T) *tls.Config { return cert(t).ServerConfig() }
