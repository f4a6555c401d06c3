package imapd

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/internal/testcert"
	"github.com/switchyard-mta/switchyard/core/internal/testlog"
	"github.com/switchyard-mta/switchyard/core/store"
)

const testHost = "imap.example.test"

// testCert is a self-signed certificate for testHost and 127.0.0.1, made
// once per test binary.
var testCert = testcert.Once(testHost)

func serverTLS(t testing.TB) *tls.Config { return testCert(t).ServerConfig() }

func clientTLS(t testing.TB) *tls.Config { return testCert(t).ClientConfig() }

// fakeAccounts: alice (login "alice" or alice@example.org) and bob (bob or
// bob@example.org).
type fakeAccounts struct{}

func (fakeAccounts) AccountByLogin(login string) (string, bool) {
	switch strings.ToLower(login) {
	case "alice", "alice@example.org":
		return "alice", true
	case "bob", "bob@example.org":
		return "bob", true
	}
	return "", false
}

// passwords is a credential store with alice's password "secret" and bob's
// "hunter2", shared by the tests: bcrypt makes each SetPassword cost ~50
// ms, and the store caches verified logins.
var passwords = sync.OnceValues(func() (*store.Store, error) {
	dir, err := os.MkdirTemp("", "imapd-test-passwords")
	if err != nil {
		return nil, err
	}
	st, err := store.Open(context.Background(), dir)
	if err != nil {
		return nil, err
	}
	for account, pw := range map[string]string{"alice": "secret", "bob": "hunter2"} {
		if err := st.SetPassword(context.Background(), account, pw, nil); err != nil {
			return nil, err
		}
	}
	return st, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if st, err := passwords(); err == nil {
		st.Close()
	}
	os.Exit(code)
}

type testServer struct {
	addr  string
	kind  string
	store *store.Store // The mailboxes, of this test only.
	logs  *testlog.Buffer
	// errorsLogged: the test expects errors in the log, which otherwise
	// fail it.
	errorsLogged bool
}

// bobQuota is bob's max_storage in the tests.
const bobQuota = 2000

// startServer serves a listener of kind on 127.0.0.1:0 with a fresh
// mailbox store until the test ends.
func startServer(t testing.TB, kind string, modify func(*Config)) *testServer {
	t.Helper()
	pw, err := passwords()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.SetAccounts(ctx, map[string]store.AccountConfig{"alice": {}, "bob": {MaxStorage: bobQuota}}, nil); err != nil {
		t.Fatal(err)
	}
	logs := &testlog.Buffer{}
	cfg := Config{
		Listener: config.Listener{Name: kind + "-test", Kind: kind},
		TLS:      serverTLS(t),
		Log:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Accounts: fakeAccounts{},
		Auth:     pw,
		Store:    st,
	}
	if modify != nil {
		modify(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: l.Addr().String(), kind: kind, store: st, logs: logs}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if os.Getenv("IMAPD_TEST_LOGS") != "" {
			t.Logf("server log:\n%s", logs)
		}
		if !ts.errorsLogged && strings.Contains(logs.String(), "level=ERROR") {
			t.Errorf("error logged:\n%s", logs)
		}
	})
	return ts
}

// account returns a test account's mailboxes.
func (ts *testServer) account(t testing.TB, name string) *store.Account {
	t.Helper()
	a, err := ts.store.Account(name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// deliver delivers msg to a mailbox of an account as the SMTP listener
// does, and returns its UID.
func (ts *testServer) deliver(t testing.TB, account, mailbox, msg string, opts store.DeliverOptions) store.UID {
	t.Helper()
	in, err := ts.store.NewIncoming(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	d, err := ts.account(t, account).Deliver(context.Background(), mailbox, in, opts)
	if err != nil {
		t.Fatal(err)
	}
	return d.UID
}

// client connects with go-imap's client (implicit TLS or STARTTLS by the
// server's kind) and logs in as alice unless user is empty.
func (ts *testServer) client(t testing.TB, user, password string, opts *imapclient.Options) *imapclient.Client {
	t.Helper()
	if opts == nil {
		opts = &imapclient.Options{}
	}
	opts.TLSConfig = clientTLS(t)
	var c *imapclient.Client
	var err error
	if ts.kind == config.KindIMAPS {
		c, err = imapclient.DialTLS(ts.addr, opts)
	} else {
		c, err = imapclient.DialStartTLS(ts.addr, opts)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if user != "" {
		if err := c.Login(user, password).Wait(); err != nil {
			t.Fatalf("login as %s: %v", user, err)
		}
	}
	return c
}

// raw is a connection speaking IMAP as text, for checks of exact responses.
type raw struct {
	t   *testing.T
	nc  net.Conn
	r   *bufio.Reader
	tag int
}

// dialRaw connects without TLS (for an imaps server, with it) and reads
// the greeting.
func (ts *testServer) dialRaw(t *testing.T) (*raw, string) {
	t.Helper()
	var nc net.Conn
	var err error
	if ts.kind == config.KindIMAPS {
		nc, err = tls.Dial("tcp", ts.addr, clientTLS(t))
	} else {
		nc, err = net.Dial("tcp", ts.addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	r := &raw{t: t, nc: nc, r: bufio.NewReader(nc)}
	return r, r.line()
}

// rawLogin connects, starts TLS if needed and logs in as alice.
func (ts *testServer) rawLogin(t *testing.T) *raw {
	t.Helper()
	r, _ := ts.dialRaw(t)
	if ts.kind == config.KindIMAP {
		r.starttls()
	}
	r.ok("LOGIN alice secret")
	return r
}

var literalRe = regexp.MustCompile(`~?\{(\d+)\}$`)

// line reads a response line without its CRLF; literals are read into it
// with their announcement, "{n}\r\n" followed by the n bytes.
func (r *raw) line() string {
	r.t.Helper()
	r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var sb strings.Builder
	for {
		l, err := r.r.ReadString('\n')
		if err != nil {
			r.t.Fatalf("reading response: %v (after %q)", err, sb.String()+l)
		}
		l = strings.TrimSuffix(l, "\r\n")
		sb.WriteString(l)
		m := literalRe.FindStringSubmatch(l)
		if m == nil {
			return sb.String()
		}
		n, _ := strconv.Atoi(m[1])
		b := make([]byte, n)
		if _, err := io.ReadFull(r.r, b); err != nil {
			r.t.Fatalf("reading literal: %v", err)
		}
		sb.WriteString("\r\n")
		sb.Write(b)
	}
}

// write sends a line as is.
func (r *raw) write(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.nc, s+"\r\n"); err != nil {
		r.t.Fatal(err)
	}
}

// cmd sends a tagged command and returns the untagged responses and the
// tagged one without its tag.
func (r *raw) cmd(format string, args ...any) (untagged []string, result string) {
	r.t.Helper()
	r.tag++
	tag := fmt.Sprintf("t%d", r.tag)
	r.write(tag + " " + fmt.Sprintf(format, args...))
	for {
		l := r.line()
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			return untagged, rest
		}
		untagged = append(untagged, l)
	}
}

// ok sends a command that must succeed and returns its untagged responses.
func (r *raw) ok(format string, args ...any) []string {
	r.t.Helper()
	untagged, result := r.cmd(format, args...)
	if !strings.HasPrefix(result, "OK") {
		r.t.Fatalf("%s: %s", fmt.Sprintf(format, args...), result)
	}
	return untagged
}

// starttls upgrades the connection.
func (r *raw) starttls() {
	r.t.Helper()
	r.ok("STARTTLS")
	tc := tls.Client(r.nc, clientTLS(r.t))
	if err := tc.Handshake(); err != nil {
		r.t.Fatal(err)
	}
	r.nc = tc
	r.r = bufio.NewReader(tc)
}

// expectClosed checks that the server closes the connection, after
// sending the lines it reads (a BYE perhaps).
func (r *raw) expectClosed() []string {
	r.t.Helper()
	r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var lines []string
	for {
		l, err := r.r.ReadString('\n')
		if l != "" {
			lines = append(lines, strings.TrimSuffix(l, "\r\n"))
		}
		// A reset is a close too: the server closed with bytes of the
		// client's unread, as after a timeout the client kept writing.
		if err == io.EOF || errors.Is(err, syscall.ECONNRESET) {
			return lines
		} else if err != nil {
			r.t.Fatalf("want connection closed, got %v after %q", err, lines)
		}
	}
}
