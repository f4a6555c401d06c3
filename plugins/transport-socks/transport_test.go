package transportsocks

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/direct/directtest"
	"github.com/switchyard-mta/switchyard/sdk/hostrpc"
	"github.com/switchyard-mta/switchyard/sdk/plugintest"
)

// socksServer is a minimal SOCKS5 proxy (RFC 1928) supporting CONNECT, with
// no authentication or, if user is set, username/password (RFC 1929). It
// records the destinations it connected to and what clients sent.
type socksServer struct {
	addr       string
	user, pass string

	mu    sync.Mutex
	dests []string
	sent  bytes.Buffer
	conns map[net.Conn]bool // Open client connections, closed at the end.
}

func newSOCKS(t *testing.T, user, pass string) *socksServer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &socksServer{addr: l.Addr().String(), user: user, pass: pass, conns: map[net.Conn]bool{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = true
			s.mu.Unlock()
			wg.Go(func() {
				s.serve(c)
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			})
		}
	})
	return s
}

func (s *socksServer) destinations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.dests)
}

func (s *socksServer) clientBytes() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent.String()
}

// Write records bytes from a client.
func (s *socksServer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent.Write(p)
}

func (s *socksServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	read := func(n int) []byte {
		b := make([]byte, n)
		if _, err := io.ReadFull(c, b); err != nil {
			return nil
		}
		return b
	}
	// RFC 1928 §3: VER NMETHODS METHODS; the server picks one method.
	h := read(2)
	if h == nil || h[0] != 5 {
		return
	}
	methods := read(int(h[1]))
	want := byte(0)
	if s.user != "" {
		want = 2
	}
	if !slices.Contains(methods, want) {
		c.Write([]byte{5, 0xff})
		return
	}
	c.Write([]byte{5, want})
	if want == 2 {
		// RFC 1929 §2: VER ULEN UNAME PLEN PASSWD, answered VER STATUS.
		v := read(2)
		if v == nil {
			return
		}
		user := read(int(v[1]))
		pl := read(1)
		if pl == nil {
			return
		}
		pass := read(int(pl[0]))
		if string(user) != s.user || string(pass) != s.pass {
			c.Write([]byte{1, 1})
			return
		}
		c.Write([]byte{1, 0})
	}
	// RFC 1928 §4: VER CMD RSV ATYP DST.ADDR DST.PORT.
	req := read(4)
	if req == nil || req[1] != 1 {
		c.Write([]byte{5, 7, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	var host string
	switch req[3] {
	case 1:
		host = net.IP(read(4)).String()
	case 4:
		host = net.IP(read(16)).String()
	case 3:
		n := read(1)
		if n == nil {
			return
		}
		host = string(read(int(n[0])))
	default:
		c.Write([]byte{5, 8, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	p := read(2)
	if p == nil {
		return
	}
	dest := net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(p))))
	s.mu.Lock()
	s.dests = append(s.dests, dest)
	s.mu.Unlock()
	up, err := net.DialTimeout("tcp", dest, 5*time.Second)
	if err != nil {
		c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0}) // Connection refused.
		return
	}
	defer up.Close()
	c.Write([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 0})
	c.SetDeadline(time.Time{})
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, io.TeeReader(c, s)); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
}

// env is a test DNS, receivers and an MTA-STS server, with the plugin
// connected over gRPC.
type env struct {
	port, stsPort    int
	dns              *directtest.DNS
	dane, bad, plain *directtest.Receiver
	sts              *directtest.Receiver
	dir, dataDir     string
	client           hostrpc.Client
	ctx              context.Context
}

func newEnv(t *testing.T) *env {
	ca := directtest.NewCA(t)
	daneCert := (*directtest.CA)(nil).Issue(t, "mx.dane.test")
	otherCert := (*directtest.CA)(nil).Issue(t, "mx.danebad.test")
	stsCert := ca.Issue(t, "mx.sts.test")
	e := &env{dir: t.TempDir(), dataDir: t.TempDir()}
	var ls []net.Listener
	e.port, ls = directtest.Listen(t, "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")
	e.dane = directtest.NewReceiver(t, ls[0], directtest.ReceiverOptions{Cert: &daneCert})
	e.bad = directtest.NewReceiver(t, ls[1], directtest.ReceiverOptions{Cert: &otherCert})
	e.plain = directtest.NewReceiver(t, ls[2], directtest.ReceiverOptions{})
	e.sts = directtest.NewReceiver(t, ls[3], directtest.ReceiverOptions{Cert: &stsCert})
	var sl []net.Listener
	e.stsPort, sl = directtest.Listen(t, "127.0.0.9")
	ps := directtest.NewPolicyServer(t, sl[0], ca.Issue(t, "mta-sts.sts.test"))
	ps.Set("sts.test", "version: STSv1\nmode: enforce\nmx: mx.sts.test\nmax_age: 86400\n")
	tlsa := fmt.Sprintf("_%d._tcp.mx.dane.test.", e.port)
	tlsaBad := fmt.Sprintf("_%d._tcp.mx.danebad.test.", e.port)
	e.dns = directtest.NewDNS(t, []string{
		"dane.test. MX 10 mx.dane.test.",
		"mx.dane.test. A 127.0.0.2",
		tlsa + " TLSA 3 1 1 " + directtest.TLSA311(daneCert),
		"danebad.test. MX 10 mx.danebad.test.",
		"mx.danebad.test. A 127.0.0.3",
		tlsaBad + " TLSA 3 1 1 " + directtest.TLSA311(daneCert), // Not otherCert.
		"plain.test. MX 10 mx.plain.test.",
		"mx.plain.test. A 127.0.0.4",
		"sts.test. MX 10 mx.sts.test.",
		"mx.sts.test. A 127.0.0.5",
		`_mta-sts.sts.test. TXT "v=STSv1; id=1"`,
		"mta-sts.sts.test. A 127.0.0.9",
	}, "dane.test.", "mx.dane.test.", tlsa, "danebad.test.", "mx.danebad.test.", tlsaBad)
	for name, data := range map[string]string{"ca.pem": string(ca.PEM), "pw": "secret\n", "wrong": "wrong\n"} {
		if err := os.WriteFile(filepath.Join(e.dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e.client = plugintest.Connect(t, &sdk.Plugin{Name: "transport-socks", Version: "0.1.0", Transport: newTransport(log)}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	e.ctx = ctx
	return e
}

// configure configures instance with table plus the keys reaching the test
// servers.
func (e *env) configure(instance string, table map[string]any) error {
	full := map[string]any{"resolver": e.dns.Addr, "trust_ad": true, "port": int64(e.port),
		"ca_file": "ca.pem", "mta_sts_port": int64(e.stsPort)}
	for k, v := range table {
		full[k] = v
	}
	return e.client.Configure(e.ctx, &sdk.Configuration{Kind: sdk.KindTransport, Instance: instance,
		KeyPath: "transports." + instance + ".config", Table: full, Hostname: "sender.test", ConfigDir: e.dir, DataDir: e.dataDir})
}

func (e *env) deliver(t *testing.T, instance string, rcpts ...string) []sdk.RecipientResult {
	t.Helper()
	req := &sdk.DeliverRequest{Instance: instance, QueueID: "q1", Attempt: 1, From: "a@sender.test",
		Message: strings.NewReader("Subject: hi\r\n\r\nbody\r\n")}
	for _, r := range rcpts {
		req.Recipients = append(req.Recipients, sdk.Recipient{Address: r})
	}
	res, err := e.client.Transport().Deliver(e.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Recipients) != len(rcpts) {
		t.Fatalf("%d results for %d recipients", len(res.Recipients), len(rcpts))
	}
	return res.Recipients
}

func TestConfigErrors(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		table map[string]any
		key   string
	}{
		{map[string]any{}, "address"},
		{map[string]any{"address": "127.0.0.1"}, "address"},
		{map[string]any{"address": ":1080"}, "address"},
		{map[string]any{"address": "127.0.0.1:socks"}, "address"},
		{map[string]any{"address": "127.0.0.1:70000"}, "address"},
		{map[string]any{"address": "127.0.0.1:1080", "remote_ips": []any{"192.0.2.10", "192.0.2"}}, "remote_ips[1]"},
		{map[string]any{"address": "127.0.0.1:1080", "username": "u", "password_file": "missing"}, "password_file"},
		{map[string]any{"address": "127.0.0.1:1080", "username": "u"}, "password_file"},
		{map[string]any{"address": "127.0.0.1:1080", "password_file": "pw"}, "username"},
		{map[string]any{"address": "127.0.0.1:1080", "remote_hostname": "a.test", "ehlo": "b.test"}, "remote_hostname"},
		{map[string]any{"address": "127.0.0.1:1080", "port": int64(-1)}, "port"},
		{map[string]any{"address": "127.0.0.1:1080", "ca_file": "missing.pem"}, "ca_file"},
		{map[string]any{"address": "127.0.0.1:1080", "bogus": true}, "bogus"},
	} {
		err := e.configure("x", tc.table)
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("config %v: error %v, want one about %s", tc.table, err, tc.key)
		}
	}
	if err := e.configure("x", map[string]any{"address": "127.0.0.1:1080", "remote_ips": []any{"192.0.2.10", "2001:db8::1"},
		"username": "u", "password_file": "pw", "remote_hostname": "out.example.org"}); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

// TestDeliver delivers through the Go proxy with authentication: DANE and
// MTA-STS verified end to end, EHLO from remote_hostname.
func TestDeliver(t *testing.T) {
	e := newEnv(t)
	px := newSOCKS(t, "user", "secret")
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := closed.Addr().String()
	closed.Close()
	for name, table := range map[string]map[string]any{
		"proxied": {"address": px.addr, "username": "user", "password_file": "pw",
			"remote_ips": []any{"192.0.2.10"}, "remote_hostname": "out.example.org"},
		"wrongpw": {"address": px.addr, "username": "user", "password_file": "wrong"},
		"noauth":  {"address": px.addr},
		"down":    {"address": down},
	} {
		if err := e.configure(name, table); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}

	res := e.deliver(t, "proxied", "p@plain.test", "d@dane.test", "b@danebad.test", "s@sts.test")
	want := []struct {
		status sdk.Status
		ip     string
		verif  sdk.Verification
		enh    string
	}{
		{sdk.StatusDelivered, "127.0.0.4", sdk.VerifyNone, "2.0.0"},
		{sdk.StatusDelivered, "127.0.0.2", sdk.VerifyDANE, "2.0.0"},
		{sdk.StatusTemporary, "127.0.0.3", sdk.VerifyNone, "4.7.5"}, // Never plaintext (RFC 7672 §2.2).
		{sdk.StatusDelivered, "127.0.0.5", sdk.VerifyMTASTS, "2.0.0"},
	}
	for i, w := range want {
		r := res[i]
		if r.Status != w.status || r.RemoteIP != w.ip || r.TLS.Verification != w.verif || r.EnhancedCode != w.enh {
			t.Errorf("%s: %v %s %v %s (%s), want %v %s %v %s", r.Address, r.Status, r.RemoteIP, r.TLS.Verification, r.EnhancedCode, r.Text, w.status, w.ip, w.verif, w.enh)
		}
	}
	for _, c := range []struct {
		rv   *directtest.Receiver
		n    int
		tls  bool
		name string
	}{{e.plain, 1, false, "plain"}, {e.dane, 1, true, "dane"}, {e.bad, 0, false, "dane mismatch"}, {e.sts, 1, true, "mta-sts"}} {
		msgs := c.rv.Messages()
		if len(msgs) != c.n {
			t.Errorf("%s receiver: %d messages, want %d", c.name, len(msgs), c.n)
		} else if c.n > 0 && msgs[0].TLS != c.tls {
			t.Errorf("%s receiver: TLS %v, want %v", c.name, msgs[0].TLS, c.tls)
		}
	}
	dests := px.destinations()
	for _, ip := range []string{"127.0.0.4", "127.0.0.2", "127.0.0.3", "127.0.0.5"} {
		if d := net.JoinHostPort(ip, strconv.Itoa(e.port)); !slices.Contains(dests, d) {
			t.Errorf("proxy did not connect to %s: %v", d, dests)
		}
	}
	// RFC 8461 §3.3: the policy fetch goes through the proxy too.
	if d := net.JoinHostPort("127.0.0.9", strconv.Itoa(e.stsPort)); !slices.Contains(dests, d) {
		t.Errorf("MTA-STS policy not fetched through the proxy: %v", dests)
	}
	if sent := px.clientBytes(); !strings.Contains(sent, "EHLO out.example.org\r\n") || strings.Contains(sent, "EHLO sender.test") {
		t.Errorf("EHLO is not remote_hostname; client sent %q", sent)
	}

	for _, instance := range []string{"wrongpw", "noauth", "down"} {
		n := len(px.destinations())
		r := e.deliver(t, instance, "p@plain.test")[0]
		if r.Status != sdk.StatusTemporary {
			t.Errorf("%s: %v (%s), want temporary", instance, r.Status, r.Text)
		}
		if m := len(px.destinations()); m != n {
			t.Errorf("%s: the proxy connected %v", instance, px.destinations()[n:])
		}
	}
	if n := len(e.plain.Messages()); n != 1 {
		t.Errorf("plain receiver: %d messages after failed attempts, want 1", n)
	}
	if _, err := e.client.Transport().Deliver(e.ctx, &sdk.DeliverRequest{Instance: "other"}); err == nil {
		t.Error("unconfigured instance: no error")
	}
}

// TestMicrosocks delivers with DANE through Debian's microsocks.
func TestMicrosocks(t *testing.T) {
	bin, err := exec.LookPath("microsocks")
	if err != nil {
		t.Skip("microsocks not installed (apt-get install microsocks)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "-i", "127.0.0.1", "-p", port)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i == 50 {
			t.Fatalf("microsocks does not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e := newEnv(t)
	if err := e.configure("micro", map[string]any{"address": addr, "remote_hostname": "out.example.org"}); err != nil {
		t.Fatal(err)
	}
	res := e.deliver(t, "micro", "p@plain.test", "d@dane.test")
	for i, w := range []sdk.Verification{sdk.VerifyNone, sdk.VerifyDANE} {
		if r := res[i]; r.Status != sdk.StatusDelivered || r.TLS.Verification != w {
			t.Errorf("%s: %v %v (%s), want delivered with %v", r.Address, r.Status, r.TLS.Verification, r.Text, w)
		}
	}
	if len(e.plain.Messages()) != 1 || len(e.dane.Messages()) != 1 {
		t.Errorf("receivers got %d and %d messages, want 1 each", len(e.plain.Messages()), len(e.dane.Messages()))
	}
}
