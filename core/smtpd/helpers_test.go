package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/internal/testcert"
	"github.com/switchyard-mta/switchyard/core/internal/testlog"
	"github.com/switchyard-mta/switchyard/core/localdelivery"
	"github.com/switchyard-mta/switchyard/core/queue"
	"github.com/switchyard-mta/switchyard/core/store"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

const testHost = "mx.example.test"

// testCert is a self-signed certificate for testHost and 127.0.0.1, made
// once per test binary.
var testCert = testcert.Once(testHost)

func serverTLS(t testing.TB) *tls.Config { return testCert(t).ServerConfig() }

func clientTLS(t testing.TB) *tls.Config { return testCert(t).ClientConfig() }

// fakeAccounts: alice (alice@example.org, login "alice" or the address)
// and bob (bob@example.org); example.org is the local domain.
type fakeAccounts struct{}

func (fakeAccounts) AccountByLogin(login string) (string, bool) {
	switch login {
	case "alice", "alice@example.org":
		return "alice", true
	case "bob", "bob@example.org":
		return "bob", true
	}
	return "", false
}

func (fakeAccounts) AccountByAddress(addr mailaddr.Address) (string, bool) {
	switch strings.ToLower(addr.Key()) {
	case "alice@example.org":
		return "alice", true
	case "bob@example.org":
		return "bob", true
	}
	return "", false
}

// fakeLocal delivers to local accounts in memory; accounts in fail fail with
// their error, those in full are over quota at RCPT. It keeps the envelope
// sender and the addresses of each account it was asked to deliver to.
type fakeLocal struct {
	mu        sync.Mutex
	fail      map[string]error
	full      map[string]bool
	delivered map[string][]byte
	from      string
	addresses map[string][]string
}

func (l *fakeLocal) DeliverLocal(ctx context.Context, from string, rcpts []localdelivery.Rcpt, msg *io.SectionReader) []error {
	b, err := io.ReadAll(io.NewSectionReader(msg, 0, msg.Size()))
	errs := make([]error, len(rcpts))
	l.mu.Lock()
	defer l.mu.Unlock()
	l.from = from
	if l.addresses == nil {
		l.addresses = map[string][]string{}
	}
	for i, r := range rcpts {
		a := r.Account
		l.addresses[a] = r.Addresses
		switch {
		case err != nil:
			errs[i] = err
		case l.fail[a] != nil:
			errs[i] = l.fail[a]
		default:
			if l.delivered == nil {
				l.delivered = map[string][]byte{}
			}
			l.delivered[a] = b
		}
	}
	return errs
}

func (l *fakeLocal) OverQuota(ctx context.Context, account string, size int64) bool {
	return l.full[account]
}

func (fakeAccounts) MayUseAddress(account string, addr mailaddr.Address) bool {
	return strings.EqualFold(addr.Key(), account+"@example.org")
}

func (fakeAccounts) AliasOf(addr mailaddr.Address) *config.Alias { return nil }

func (fakeAccounts) IsLocalDomain(d mailaddr.Domain) bool {
	return d.ASCII == "example.org"
}

// queued is one message the fake queue took.
type queued struct {
	env  queue.Envelope
	data string
}

// fakeQueue takes messages like the real queue, whose spools it uses: it
// reads and discards the spool. With fail set, Add fails, also discarding it.
type fakeQueue struct {
	dir    string
	spools *queue.Queue // Opened in dir; only its spools are used.
	fail   bool

	mu   sync.Mutex
	msgs []queued
}

func newFakeQueue(t testing.TB) *fakeQueue {
	t.Helper()
	dir := t.TempDir()
	q, err := queue.Open(context.Background(), dir, queue.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return &fakeQueue{dir: dir, spools: q}
}

func (q *fakeQueue) NewSpool() *queue.Spool { return q.spools.NewSpool() }

func (q *fakeQueue) Add(ctx context.Context, env queue.Envelope, s *queue.Spool) (string, error) {
	defer s.Discard()
	if q.fail {
		return "", errors.New("disk on fire")
	}
	r, err := s.Reader()
	if err != nil {
		return "", err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.msgs = append(q.msgs, queued{env, string(data)})
	return fmt.Sprintf("Q%d", len(q.msgs)), nil
}

func (q *fakeQueue) messages() []queued {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]queued(nil), q.msgs...)
}

// spoolFiles lists the files left in the queue directory but its database:
// spill files of spools that were not discarded.
func (q *fakeQueue) spoolFiles(t testing.TB) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(q.dir, func(path string, de fs.DirEntry, err error) error {
		if err == nil && de.Type().IsRegular() && path != filepath.Join(q.dir, "index.db") {
			names = append(names, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

type testServer struct {
	addr  string
	queue *fakeQueue
	logs  *testlog.Buffer
}

// passwords is a store with alice's password "secret" and bob's "hunter2",
// shared by the tests: bcrypt makes each SetPassword cost ~50 ms.
var passwords = sync.OnceValues(func() (*store.Store, error) {
	dir, err := os.MkdirTemp("", "smtpd-test-store")
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

// startServer serves a listener of kind on 127.0.0.1:0 until the test ends.
func startServer(t testing.TB, kind string, modify func(*Config)) *testServer {
	t.Helper()
	st, err := passwords()
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{queue: newFakeQueue(t), logs: &testlog.Buffer{}}
	cfg := Config{
		Hostname:     testHost,
		Listener:     config.Listener{Name: "test-" + kind, Kind: kind},
		TLS:          serverTLS(t),
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 10 * time.Second,
		Log:          slog.New(slog.NewTextHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Accounts:     fakeAccounts{},
		Auth:         st,
		Queue:        ts.queue,
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
	ts.addr = l.Addr().String()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", ts.logs.String())
		}
	})
	return ts
}

func relayLoopback(cfg *Config) {
	cfg.Listener.RelayPrefixes = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
}
