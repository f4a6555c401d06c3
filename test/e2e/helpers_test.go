// Package e2e tests Switchyard end to end: the real `mta` binary and real
// plugin processes, SMTP clients on loopback sockets, and Go SMTP sinks
// (test/mtatest) standing in for smarthosts.
package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// Timeouts: generous, as tests poll rather than sleep.
const (
	waitLong  = 60 * time.Second // For a stream of messages to arrive.
	waitShort = 20 * time.Second // For one message or one state change.
)

// binaries builds the binaries once per test process.
func binaries(t *testing.T) *mtatest.Binaries {
	t.Helper()
	bin, err := mtatest.Build()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// startSink starts a sink keeping bodies, closed at the end of the test.
func startSink(t *testing.T, reply func(rcpt string) *smtp.SMTPError) *mtatest.Sink {
	t.Helper()
	s, err := mtatest.StartSink(true, reply)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// setup describes a server for serverConfig. The listeners "submission"
// (STARTTLS), "submissions" (implicit TLS) and "mx" (kind smtp) always exist;
// "imap" (STARTTLS) and "imaps" (implicit TLS) with IMAP.
type setup struct {
	Hostname       string            // Default mail.example.org.
	IMAP           bool              // Adds the listeners "imap" and "imaps".
	RelayNetworks  []string          // Of the mx listener.
	Policies       []string          // Of the mx listener; Rest configures them.
	SubmitPolicies []string          // Of the submission listener.
	MaxMessageSize string            // Default: the server's.
	BackoffScale   float64           // Default 0.0001.
	MaxAttempts    int               // Default: the server's.
	KeepRetired    string            // [queue] keep_retired; default: the server's.
	Transports     map[string]string // transport-submission instances: name → smarthost host:port, tls = "none".
	// Rest is appended verbatim: routes, domains, accounts. Default: the
	// domain example.org and the account alice with alice@example.org.
	Rest string
}

// defaultRest is the usual local part of a configuration.
const defaultRest = `
[domains."example.org"]
[accounts.alice]
domain = "example.org"
addresses = ["alice@example.org"]
[accounts.bob]
domain = "example.org"
addresses = ["bob@example.org"]
`

// serverConfig returns mta.toml for s with the given listener addresses;
// the IMAP listeners get ports found free.
func serverConfig(bin *mtatest.Binaries, s setup, submission, submissions, mx string) string {
	var b strings.Builder
	hostname := s.Hostname
	if hostname == "" {
		hostname = "mail.example.org"
	}
	fmt.Fprintf(&b, "hostname = %q\ndata_dir = \"data\"\n[tls]\nself_signed = true\n", hostname)
	if s.MaxMessageSize != "" {
		fmt.Fprintf(&b, "[limits]\nmax_message_size = %q\n", s.MaxMessageSize)
	}
	scale := s.BackoffScale
	if scale == 0 {
		scale = 0.0001
	}
	fmt.Fprintf(&b, "[queue]\nbackoff_scale = %g\n", scale)
	if s.MaxAttempts > 0 {
		fmt.Fprintf(&b, "max_attempts = %d\n", s.MaxAttempts)
	}
	if s.KeepRetired != "" {
		fmt.Fprintf(&b, "keep_retired = %q\n", s.KeepRetired)
	}
	fmt.Fprintf(&b, "[[listeners]]\nname = \"submission\"\nkind = \"submission\"\naddress = %q\n", submission)
	if len(s.SubmitPolicies) > 0 {
		fmt.Fprintf(&b, "policies = [%s]\n", quoteList(s.SubmitPolicies))
	}
	fmt.Fprintf(&b, "[[listeners]]\nname = \"submissions\"\nkind = \"submissions\"\naddress = %q\n", submissions)
	fmt.Fprintf(&b, "[[listeners]]\nname = \"mx\"\nkind = \"smtp\"\naddress = %q\n", mx)
	if len(s.RelayNetworks) > 0 {
		fmt.Fprintf(&b, "relay_networks = [%s]\n", quoteList(s.RelayNetworks))
	}
	if len(s.Policies) > 0 {
		fmt.Fprintf(&b, "policies = [%s]\n", quoteList(s.Policies))
	}
	if s.IMAP {
		fmt.Fprintf(&b, "[[listeners]]\nname = \"imap\"\nkind = \"imap\"\naddress = %q\n", mtatest.FreeAddr())
		fmt.Fprintf(&b, "[[listeners]]\nname = \"imaps\"\nkind = \"imaps\"\naddress = %q\n", mtatest.FreeAddr())
	}
	fmt.Fprintf(&b, "[plugins.transport-submission]\npath = %q\n", bin.Plugins["transport-submission"])
	names := make([]string, 0, len(s.Transports))
	for name := range s.Transports {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		host, port, _ := net.SplitHostPort(s.Transports[name])
		fmt.Fprintf(&b, "[transports.%s]\nplugin = \"transport-submission\"\n[transports.%s.config]\nhost = %q\nport = %s\ntls = \"none\"\n",
			name, name, host, port)
	}
	rest := s.Rest
	if rest == "" {
		rest = defaultRest
	}
	b.WriteString(rest)
	return b.String()
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// startServer serves s in a new temporary directory and stops the server
// at the end of the test, logging its output if the test failed.
func startServer(t *testing.T, s setup) *mtatest.Server {
	t.Helper()
	bin := binaries(t)
	var srv *mtatest.Server
	var err error
	// A port FreeAddr found free may be taken before the server binds it.
	// Retries start afresh: passwords are printed at the first start only.
	for range 3 {
		cfg := serverConfig(bin, s, mtatest.FreeAddr(), mtatest.FreeAddr(), mtatest.FreeAddr())
		srv, err = mtatest.StartServer(bin, t.TempDir(), cfg)
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Every test leaves its server running: SIGTERM must stop it
		// cleanly. A race detector report (GOFLAGS=-race) fails the test.
		if err := srv.Stop(); err != nil {
			t.Errorf("stopping mta serve: %v", err)
		}
		if strings.Contains(srv.Log(), "DATA RACE") {
			t.Errorf("data race in mta serve or a plugin")
		}
		if t.Failed() {
			t.Logf("mta serve output:\n%s\nlog:\n%s", srv.Output(), srv.Log())
		}
	})
	return srv
}

// dialAuth connects to a submission listener (implicit TLS or STARTTLS)
// and authenticates with PLAIN.
func dialAuth(t *testing.T, addr string, implicitTLS bool, login, password string) *smtp.Client {
	t.Helper()
	c, err := mtatest.Dial(addr, implicitTLS, !implicitTLS)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Auth(sasl.NewPlainClient("", login, password)); err != nil {
		t.Fatalf("AUTH PLAIN %s: %v", login, err)
	}
	return c
}

// send runs one transaction on c.
func send(c *smtp.Client, from string, to []string, msg []byte) error {
	if err := c.Mail(from, nil); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return fmt.Errorf("RCPT TO %s: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return nil
}

// submit connects, authenticates as alice and sends one message.
func submit(t *testing.T, srv *mtatest.Server, from string, to []string, msg []byte) {
	t.Helper()
	c := dialAuth(t, srv.Listeners["submission"], false, "alice@example.org", srv.Passwords["alice"])
	if err := send(c, from, to, msg); err != nil {
		t.Fatalf("submitting: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatalf("QUIT: %v", err)
	}
}

// wantSMTPError checks that err is an SMTP reply with code and enhanced code.
func wantSMTPError(t *testing.T, what string, err error, code int, enhanced smtp.EnhancedCode) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("%s: got %v, want %d %v", what, err, code, enhanced)
	}
	if se.Code != code || se.EnhancedCode != enhanced {
		t.Fatalf("%s: got %d %v %q, want %d %v", what, se.Code, se.EnhancedCode, se.Message, code, enhanced)
	}
}

// mta runs an mta command (its command words, then its arguments) against
// srv's configuration and fails the test unless it exits 0.
func mta(t *testing.T, srv *mtatest.Server, words ...string) string {
	t.Helper()
	n := min(2, len(words))
	if n == 2 && (words[1] == "retired" || words[1] == "holdrule") {
		n = 3 // queue retired list, queue holdrule add, ...
	}
	out, errOut, code := srv.MTA("", words[:n], words[n:]...)
	if code != 0 {
		t.Fatalf("mta %s: exit %d\n%s%s", strings.Join(words, " "), code, out, errOut)
	}
	return out
}

// runMTA runs the mta binary with args and stdin.
func runMTA(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binaries(t).MTA, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running mta: %v", err)
	}
	return o.String(), e.String(), code
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitQueueEmpty waits until `mta queue list` says the queue is empty.
func waitQueueEmpty(t *testing.T, srv *mtatest.Server) {
	t.Helper()
	var out string
	if !waitFor(waitShort, func() bool {
		out = mta(t, srv, "queue", "list")
		return strings.TrimSpace(out) == "queue is empty"
	}) {
		t.Fatalf("queue not empty:\n%s", out)
	}
}

// received counts messages per recipient accepted by the sink.
func received(s *mtatest.Sink) map[string]int {
	n := map[string]int{}
	for _, m := range s.Messages() {
		for _, r := range m.Recipients {
			n[r]++
		}
	}
	return n
}

var subjectRE = regexp.MustCompile(`(?m)^Subject: (\S+)\r$`)

// subjects counts the messages accepted by the sinks by Subject.
func subjects(sinks ...*mtatest.Sink) map[string]int {
	n := map[string]int{}
	for _, s := range sinks {
		for _, m := range s.Messages() {
			if sm := subjectRE.FindSubmatch(m.Data); sm != nil {
				n[string(sm[1])]++
			}
		}
	}
	return n
}

// rawConn is a hand-driven SMTP client, for input that go-smtp's client
// would correct (bare LF).
type rawConn struct {
	t  *testing.T
	nc net.Conn
	tp *textproto.Conn
}

// dialRaw connects to a STARTTLS submission listener, does EHLO, STARTTLS
// and EHLO again.
func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(waitShort))
	r := &rawConn{t: t, nc: nc, tp: textproto.NewConn(nc)}
	t.Cleanup(func() { r.nc.Close() })
	r.expect(220)
	r.cmd(250, "EHLO client.test")
	r.cmd(220, "STARTTLS")
	tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	r.nc, r.tp = tc, textproto.NewConn(tc)
	r.cmd(250, "EHLO client.test")
	return r
}

// cmd sends a command line and expects a reply with code; it returns the
// reply text.
func (r *rawConn) cmd(code int, format string, args ...any) string {
	r.t.Helper()
	if err := r.tp.PrintfLine(format, args...); err != nil {
		r.t.Fatalf("sending %q: %v", format, err)
	}
	return r.expect(code)
}

func (r *rawConn) expect(code int) string {
	r.t.Helper()
	_, msg, err := r.tp.ReadResponse(code)
	if err != nil {
		r.t.Fatalf("want %d: %v", code, err)
	}
	return msg
}

// authPlain authenticates with an initial response.
func (r *rawConn) authPlain(login, password string) {
	r.t.Helper()
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + login + "\x00" + password))
	r.cmd(235, "AUTH PLAIN %s", ir)
}

// write sends raw bytes.
func (r *rawConn) write(b []byte) {
	r.t.Helper()
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// plainClient returns a PLAIN client without an authorization identity.
func plainClient(login, password string) sasl.Client {
	return sasl.NewPlainClient("", login, password)
}
