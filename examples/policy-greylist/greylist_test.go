package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/hostrpc"
	"github.com/switchyard-mta/switchyard/sdk/plugintest"
)

// clock is the injected time of a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a plugin over real gRPC, configured as the core would.
type env struct {
	t    *testing.T
	ch   *checker
	c    hostrpc.Client
	clk  *clock
	logs *plugintest.LogBuffer
	dir  string
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// connect starts a plugin, as after a start of the core, without
// configuring an instance.
func connect(t *testing.T, dir string, clk *clock) *env {
	t.Helper()
	logs := &plugintest.LogBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ch := newChecker(log, clk.now)
	e := &env{t: t, ch: ch, c: plugintest.Connect(t, newPlugin(ch), &plugintest.Host{}), clk: clk, logs: logs, dir: dir}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("plugin log:\n%s", logs)
		}
	})
	if err := e.c.Configure(testCtx(t), &sdk.Configuration{Kind: sdk.KindPlugin, Instance: "policy-greylist", Table: map[string]any{}, DataDir: dir}); err != nil {
		t.Fatalf("configure plugin: %v", err)
	}
	return e
}

// start is connect, then configures instance "greylist" with table.
func start(t *testing.T, dir string, clk *clock, table map[string]any) *env {
	t.Helper()
	e := connect(t, dir, clk)
	if err := e.configure("greylist", table); err != nil {
		t.Fatalf("configure: %v", err)
	}
	return e
}

func (e *env) configure(instance string, table map[string]any) error {
	return e.c.Configure(testCtx(e.t), &sdk.Configuration{Kind: sdk.KindPolicy, Instance: instance, KeyPath: "policies." + instance + ".config", Table: table, DataDir: e.dir, Hostname: "mx.example.org"})
}

// attempt is a RCPT TO from ip at the rcpt stage of instance "greylist".
func (e *env) attempt(ip, from, rcpt string) sdk.Verdict {
	e.t.Helper()
	return e.attemptAt("greylist", ip, from, rcpt)
}

func (e *env) attemptAt(instance, ip, from, rcpt string) sdk.Verdict {
	e.t.Helper()
	v, err := e.c.Checker().Check(testCtx(e.t), inbound(instance, ip, from, rcpt))
	if err != nil {
		e.t.Fatalf("check %s %s %s: %v", ip, from, rcpt, err)
	}
	return v
}

func inbound(instance, ip, from, rcpt string) *sdk.CheckRequest {
	return &sdk.CheckRequest{
		Instance:   instance,
		Stage:      sdk.StageRcpt,
		Conn:       sdk.ConnInfo{Protocol: "smtp", Listener: "mx", LocalAddr: "192.0.2.25:25", RemoteAddr: net.JoinHostPort(ip, "41234")},
		Helo:       "client.example.net",
		From:       from,
		Recipients: []string{"earlier@example.org", rcpt}, // The last one is checked.
	}
}

func wantGreylisted(t *testing.T, what string, v sdk.Verdict) {
	t.Helper()
	if v.Action != sdk.ActionTempfail || v.Code != 451 || v.EnhancedCode != "4.7.1" || !strings.HasPrefix(v.Text, "Greylisted") {
		t.Fatalf("%s: got %+v, want tempfail 451 4.7.1 Greylisted", what, v)
	}
}

func wantPass(t *testing.T, what string, v sdk.Verdict) {
	t.Helper()
	if v.Action != sdk.ActionContinue || v.Code != 0 || len(v.PrependHeaders) != 0 {
		t.Fatalf("%s: got %+v, want continue", what, v)
	}
}

const (
	from = "Sender@Example.NET"
	rcpt = "user@example.org"
)

func TestDescribe(t *testing.T) {
	e := connect(t, t.TempDir(), newClock())
	d, err := e.c.Describe(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "policy-greylist" || d.Transport || len(d.Mechanisms) != 0 || d.Policy == nil ||
		len(d.Policy.Stages) != 1 || d.Policy.Stages[0] != sdk.StageRcpt || d.Policy.Body != sdk.BodyNone {
		t.Fatalf("describe: %+v, policy %+v", d, d.Policy)
	}
}

func TestGreylisting(t *testing.T) {
	clk := newClock()
	e := start(t, t.TempDir(), clk, map[string]any{"delay": "5m"})

	wantGreylisted(t, "first attempt", e.attempt("192.0.2.10", from, rcpt))
	clk.advance(2 * time.Minute)
	wantGreylisted(t, "retry after 2m", e.attempt("192.0.2.10", from, rcpt))
	clk.advance(3*time.Minute - time.Second)
	wantGreylisted(t, "retry a second before the delay", e.attempt("192.0.2.10", from, rcpt))
	clk.advance(time.Second)
	wantPass(t, "retry at the delay", e.attempt("192.0.2.10", from, rcpt))
	clk.advance(time.Second)
	wantPass(t, "next message", e.attempt("192.0.2.10", from, rcpt))
	// Every pass starts the lifetime anew: 30 days, twice, are within it.
	clk.advance(30 * 24 * time.Hour)
	wantPass(t, "after 30 days", e.attempt("192.0.2.10", from, rcpt))
	clk.advance(30 * 24 * time.Hour)
	wantPass(t, "after 30 more days", e.attempt("192.0.2.10", from, rcpt))

	// Another recipient, another sender: other triplets.
	wantGreylisted(t, "other recipient", e.attempt("192.0.2.10", from, "other@example.org"))
	wantGreylisted(t, "other sender", e.attempt("192.0.2.10", "other@example.net", rcpt))
	wantGreylisted(t, "null reverse-path", e.attempt("192.0.2.10", "", rcpt))

	// Not seen for longer than the lifetime: starts over.
	clk.advance(35*24*time.Hour + time.Minute)
	wantGreylisted(t, "after the lifetime", e.attempt("192.0.2.10", from, rcpt))
	clk.advance(5 * time.Minute)
	wantPass(t, "retry after the lifetime", e.attempt("192.0.2.10", from, rcpt))

	for _, want := range []string{`"result":"new"`, `"result":"early"`, `"result":"passed"`, `"waited":"5m0s"`, `"from":"sender@example.net"`} {
		if !strings.Contains(e.logs.String(), want) {
			t.Errorf("log lacks %s", want)
		}
	}
}

func TestRetryWindow(t *testing.T) {
	clk := newClock()
	e := start(t, t.TempDir(), clk, map[string]any{"delay": "10m", "retry_window": "4h"})

	wantGreylisted(t, "first attempt", e.attempt("192.0.2.10", from, rcpt))
	clk.advance(4*time.Hour + time.Second)
	wantGreylisted(t, "retry after the window", e.attempt("192.0.2.10", from, rcpt))
	clk.advance(9 * time.Minute)
	wantGreylisted(t, "retry before the new delay", e.attempt("192.0.2.10", from, rcpt))
	clk.advance(time.Minute)
	wantPass(t, "retry after the new delay", e.attempt("192.0.2.10", from, rcpt))

	// Within the window, even at its end, a retry passes.
	wantGreylisted(t, "first attempt, other triplet", e.attempt("192.0.2.10", from, "b@example.org"))
	clk.advance(4 * time.Hour)
	wantPass(t, "retry at the end of the window", e.attempt("192.0.2.10", from, "b@example.org"))
}

func TestNetworkGrouping(t *testing.T) {
	clk := newClock()
	e := start(t, t.TempDir(), clk, map[string]any{})

	wantGreylisted(t, "first attempt", e.attempt("192.0.2.10", from, rcpt))
	wantGreylisted(t, "IPv6 first attempt", e.attempt("2001:db8:1:2::1", from, rcpt))
	clk.advance(5 * time.Minute)
	// The same /24, and case does not matter in the addresses.
	wantPass(t, "retry from another address of the /24", e.attempt("192.0.2.200", "sender@example.net", "USER@example.org"))
	wantPass(t, "IPv4 in IPv6 of the /24", e.attempt("::ffff:192.0.2.7", from, rcpt))
	wantGreylisted(t, "another /24", e.attempt("192.0.3.10", from, rcpt))
	wantPass(t, "retry from another address of the /64", e.attempt("2001:db8:1:2:ffff:ffff:ffff:ffff", from, rcpt))
	wantGreylisted(t, "another /64", e.attempt("2001:db8:1:3::1", from, rcpt))

	// Narrower groups, as configured.
	if err := e.configure("narrow", map[string]any{"ipv4_prefix": int64(32), "ipv6_prefix": int64(128)}); err != nil {
		t.Fatal(err)
	}
	wantGreylisted(t, "narrow: first attempt", e.attemptAt("narrow", "198.51.100.1", from, rcpt))
	clk.advance(5 * time.Minute)
	wantGreylisted(t, "narrow: neighbour", e.attemptAt("narrow", "198.51.100.2", from, rcpt))
	wantPass(t, "narrow: same address", e.attemptAt("narrow", "198.51.100.1", from, rcpt))
}

func TestNotGreylisted(t *testing.T) {
	clk := newClock()
	e := start(t, t.TempDir(), clk, map[string]any{"whitelist_networks": []any{"198.51.100.0/24", "2001:db8:ffff::25", "::ffff:203.0.113.0/120", "::ffff:192.0.2.99"}})

	sub := inbound("greylist", "192.0.2.10", from, rcpt)
	sub.Submission = true
	acct := inbound("greylist", "192.0.2.10", from, rcpt)
	acct.Account = "alice"
	for _, req := range []*sdk.CheckRequest{sub, acct} {
		v, err := e.c.Checker().Check(testCtx(t), req)
		if err != nil {
			t.Fatal(err)
		}
		wantPass(t, fmt.Sprintf("submission %v, account %q", req.Submission, req.Account), v)
	}
	// Nothing was remembered of them: an inbound attempt is the first.
	wantGreylisted(t, "inbound after submission", e.attempt("192.0.2.10", from, rcpt))

	wantPass(t, "whitelisted network", e.attempt("198.51.100.77", from, rcpt))
	wantPass(t, "whitelisted address", e.attempt("2001:db8:ffff::25", from, rcpt))
	wantPass(t, "whitelisted IPv4-mapped prefix", e.attempt("203.0.113.9", from, rcpt))
	wantPass(t, "whitelisted IPv4-mapped address", e.attempt("192.0.2.99", from, rcpt))
	wantGreylisted(t, "neighbour of the whitelisted address", e.attempt("2001:db8:ffff::26", from, rcpt))
	if n := e.ch.instances["greylist"].store.len(); n != 2 {
		t.Fatalf("store holds %d triplets, want 2", n)
	}
}

func TestInstances(t *testing.T) {
	clk := newClock()
	e := start(t, t.TempDir(), clk, map[string]any{"delay": "1m"})
	if err := e.configure("slow", map[string]any{"delay": "1h"}); err != nil {
		t.Fatal(err)
	}
	odd := "odd/../name with spaces"
	if err := e.configure(odd, map[string]any{}); err != nil {
		t.Fatal(err)
	}
	wantGreylisted(t, "first", e.attempt("192.0.2.1", from, rcpt))
	wantGreylisted(t, "slow: first", e.attemptAt("slow", "192.0.2.1", from, rcpt))
	wantGreylisted(t, "odd: first", e.attemptAt(odd, "192.0.2.1", from, rcpt))
	clk.advance(2 * time.Minute)
	wantPass(t, "retry", e.attempt("192.0.2.1", from, rcpt))
	wantGreylisted(t, "slow: retry", e.attemptAt("slow", "192.0.2.1", from, rcpt))

	files, _ := filepath.Glob(filepath.Join(e.dir, "*"))
	if len(files) != 3 {
		t.Fatalf("data directory holds %q, want three state files", files)
	}

	// Configuring again keeps the state, with the new settings.
	if err := e.configure("slow", map[string]any{"delay": "90s"}); err != nil {
		t.Fatal(err)
	}
	wantPass(t, "slow, reconfigured: retry", e.attemptAt("slow", "192.0.2.1", from, rcpt))
	// A failed configuration keeps the last good one.
	if err := e.configure("slow", map[string]any{"delay": "x"}); err == nil {
		t.Fatal("bad configuration accepted")
	}
	wantPass(t, "slow, after a rejected configuration", e.attemptAt("slow", "192.0.2.1", from, rcpt))
}

func TestRestart(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	e := start(t, dir, clk, map[string]any{})
	wantGreylisted(t, "a: first", e.attempt("192.0.2.1", from, "a@example.org"))
	clk.advance(5 * time.Minute)
	wantGreylisted(t, "b: first", e.attempt("192.0.2.1", from, "b@example.org"))
	wantPass(t, "a: retry", e.attempt("192.0.2.1", from, "a@example.org"))

	// A new plugin process on the same data directory.
	for i := range 2 {
		clk.advance(5 * time.Minute)
		e = start(t, dir, clk, map[string]any{})
		wantPass(t, fmt.Sprintf("restart %d, a", i), e.attempt("192.0.2.1", from, "a@example.org"))
		wantPass(t, fmt.Sprintf("restart %d, b", i), e.attempt("192.0.2.1", from, "b@example.org"))
		if n := e.ch.instances["greylist"].store.len(); n != 2 {
			t.Fatalf("restart %d: %d triplets, want 2", i, n)
		}
		if strings.Contains(e.logs.String(), `"level":"WARN"`) {
			t.Fatalf("restart %d logged a warning", i)
		}
	}
	wantGreylisted(t, "c: first", e.attempt("192.0.2.1", from, "c@example.org"))

	// Past their lifetime, entries are not loaded.
	clk.advance(36 * 24 * time.Hour)
	e = start(t, dir, clk, map[string]any{})
	if n := e.ch.instances["greylist"].store.len(); n != 0 {
		t.Fatalf("after the lifetime: %d triplets loaded, want 0", n)
	}
}

func TestCorruptState(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	path := filepath.Join(dir, "greylist-greylist.log")
	garbage := []byte("\x00\x01not a state file\nat all\n")
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	e := start(t, dir, clk, map[string]any{})
	if !strings.Contains(e.logs.String(), "state file unreadable, starting empty") {
		t.Fatalf("no log line about the bad file")
	}
	if b, err := os.ReadFile(path + ".corrupt"); err != nil || !bytes.Equal(b, garbage) {
		t.Fatalf("bad file not set aside: %q, %v", b, err)
	}
	wantGreylisted(t, "first attempt", e.attempt("192.0.2.1", from, rcpt))
	clk.advance(5 * time.Minute)
	wantPass(t, "retry", e.attempt("192.0.2.1", from, rcpt))
}

func TestDamagedRecords(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	path := filepath.Join(dir, "greylist-greylist.log")
	now := clk.now().Unix()
	first := now - 600
	content := fmt.Sprintf("%s\n"+
		"%d %d g 192.0.2.0/24 %q %q\n"+ // Good: greylisted 10 minutes ago.
		"%d %d x 192.0.2.0/24 %q %q\n"+ // Bad state.
		"%d %d w 192.0.2.1/24 %q %q\n"+ // Network not masked.
		"%s\n"+ // Too long.
		"%d %d w 192.0.2.0/24 %q %q\n"+ // Good: whitelisted a day ago.
		"%d %d w 192.0.2.0/24 \"torn", // The unfinished last write.
		fileHeader,
		first, first, "a@example.net", "b@example.org",
		first, first, "x@example.net", "b@example.org",
		first, now, "y@example.net", "b@example.org",
		strings.Repeat("z", 3*maxLine),
		first-86400, now-86400, "c@example.net", "b@example.org",
		first, now)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	e := start(t, dir, clk, map[string]any{})
	for _, want := range []string{"state file had bad records, skipped", `"bad":3`, `"torn_end":true`, `"entries":2`} {
		if !strings.Contains(e.logs.String(), want) {
			t.Errorf("log lacks %s", want)
		}
	}
	// The file was compacted at start: only good records are left.
	if lines := fileLines(t, path); len(lines) != 1+2 || lines[0] != fileHeader {
		t.Fatalf("state file after start: %q", lines)
	}
	wantPass(t, "greylisted before", e.attempt("192.0.2.1", "a@example.net", "b@example.org"))
	wantPass(t, "whitelisted before", e.attempt("192.0.2.1", "c@example.net", "b@example.org"))
	wantGreylisted(t, "bad record", e.attempt("192.0.2.1", "x@example.net", "b@example.org"))
}

func fileLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

func TestBounded(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	e := start(t, dir, clk, map[string]any{"max_entries": int64(20)})
	path := filepath.Join(dir, "greylist-greylist.log")
	wantGreylisted(t, "kept: first", e.attempt("192.0.2.1", from, "kept@example.org"))
	clk.advance(5 * time.Minute)
	wantPass(t, "kept: retry", e.attempt("192.0.2.1", from, "kept@example.org"))
	wantGreylisted(t, "dropped: first", e.attempt("192.0.2.1", from, "dropped@example.org"))

	// A flood of new triplets pushes out greylisted ones, oldest first, not
	// the whitelisted one; memory and file stay bounded.
	for i := range 500 {
		clk.advance(time.Second)
		wantGreylisted(t, "flood", e.attempt(fmt.Sprintf("10.%d.%d.1", i/256, i%256), from, rcpt))
		if n := e.ch.instances["greylist"].store.len(); n > 20 {
			t.Fatalf("%d triplets remembered, max_entries 20", n)
		}
		if n := len(fileLines(t, path)) - 1; n > 2*(20+1)+compactSlack {
			t.Fatalf("state file holds %d records", n)
		}
	}
	clk.advance(5 * time.Minute)
	wantPass(t, "kept after the flood", e.attempt("192.0.2.1", from, "kept@example.org"))
	wantGreylisted(t, "dropped after the flood", e.attempt("192.0.2.1", from, "dropped@example.org"))
	if !strings.Contains(e.logs.String(), "state full, oldest entries dropped") {
		t.Errorf("no log line about dropped entries")
	}

	// A whitelisted triplet passing for a long time refreshes itself
	// without growing the file past its bound.
	for range 300 {
		clk.advance(2 * refreshEvery)
		wantPass(t, "kept", e.attempt("192.0.2.1", from, "kept@example.org"))
	}
	if n := len(fileLines(t, path)) - 1; n > 2*(20+1)+compactSlack {
		t.Fatalf("state file holds %d records", n)
	}

	// Loading keeps the cap too, of a smaller one configured later.
	e = start(t, dir, clk, map[string]any{"max_entries": int64(5)})
	if n := e.ch.instances["greylist"].store.len(); n > 5 {
		t.Fatalf("%d triplets loaded, max_entries 5", n)
	}
	wantPass(t, "kept after a restart with a smaller cap", e.attempt("192.0.2.1", from, "kept@example.org"))
}

func TestConcurrent(t *testing.T) {
	clk := newClock()
	e := start(t, t.TempDir(), clk, map[string]any{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				// Every goroutine tries the same 40 triplets.
				v, err := e.c.Checker().Check(context.Background(), inbound("greylist", "192.0.2.1", from, fmt.Sprintf("u%d@example.org", i)))
				if err != nil || v.Action != sdk.ActionTempfail {
					errs <- fmt.Errorf("goroutine %d, triplet %d: %+v, %v", g, i, v, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	clk.advance(5 * time.Minute)
	for i := range 40 {
		wantPass(t, "retry", e.attempt("192.0.2.1", from, fmt.Sprintf("u%d@example.org", i)))
	}
}

func TestCheckErrors(t *testing.T) {
	e := start(t, t.TempDir(), newClock(), map[string]any{})
	noRcpt := inbound("greylist", "192.0.2.1", from, rcpt)
	noRcpt.Recipients = nil
	long := inbound("greylist", "192.0.2.1", strings.Repeat("a", maxAddrLen)+"@example.net", rcpt)
	for _, tc := range []struct {
		name string
		req  *sdk.CheckRequest
		want string
	}{
		{"unknown instance", inbound("other", "192.0.2.1", from, rcpt), `instance "other" is not configured`},
		{"not an IP address", &sdk.CheckRequest{Instance: "greylist", Stage: sdk.StageRcpt, Conn: sdk.ConnInfo{RemoteAddr: "pipe"}, Recipients: []string{rcpt}}, `client address "pipe"`},
		{"no recipient", noRcpt, "without a recipient"},
		{"long address", long, "longer than"},
	} {
		_, err := e.c.Checker().Check(testCtx(t), tc.req)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error with %q", tc.name, err, tc.want)
		}
	}
	// A client address with a zone, and one without a port, are addresses.
	v, err := e.c.Checker().Check(testCtx(t), &sdk.CheckRequest{Instance: "greylist", Stage: sdk.StageRcpt, Conn: sdk.ConnInfo{RemoteAddr: "[fe80::1%eth0]:25"}, Recipients: []string{rcpt}})
	if err != nil {
		t.Fatal(err)
	}
	wantGreylisted(t, "zone", v)
	v, err = e.c.Checker().Check(testCtx(t), &sdk.CheckRequest{Instance: "greylist", Stage: sdk.StageRcpt, Conn: sdk.ConnInfo{RemoteAddr: "fe80::2"}, Recipients: []string{rcpt}})
	if err != nil {
		t.Fatal(err)
	}
	wantGreylisted(t, "no port, same /64", v) // Same triplet, retried early.
}

func TestConfigErrors(t *testing.T) {
	e := connect(t, t.TempDir(), newClock())
	for _, tc := range []struct {
		name  string
		table map[string]any
		want  []string
	}{
		{"unknown key", map[string]any{"dealy": "5m"}, []string{"dealy: unknown key"}},
		{"not a duration", map[string]any{"delay": "soon"}, []string{`delay: "soon" is not a duration`}},
		{"integer duration", map[string]any{"delay": int64(300)}, []string{"delay: "}},
		{"negative duration", map[string]any{"lifetime": "-1h"}, []string{"lifetime: "}},
		{"zero duration", map[string]any{"lifetime": "0s"}, []string{"lifetime: \"0s\" is less than a second"}},
		{"window not after delay", map[string]any{"delay": "1h", "retry_window": "30m"}, []string{"retry_window: must be longer than delay (1h0m0s)"}},
		{"window not after default delay", map[string]any{"retry_window": "5m"}, []string{"retry_window: "}},
		{"bad network", map[string]any{"whitelist_networks": []any{"192.0.2.0/24", "192.0.2.0/33", "example.org"}}, []string{
			`whitelist_networks: entry 2, "192.0.2.0/33"`, `whitelist_networks: entry 3, "example.org"`}},
		{"network not a list", map[string]any{"whitelist_networks": "192.0.2.0/24"}, []string{"whitelist_networks: "}},
		{"ipv4 prefix", map[string]any{"ipv4_prefix": int64(33)}, []string{"ipv4_prefix: 33 is out of range 1-32"}},
		{"ipv6 prefix", map[string]any{"ipv6_prefix": int64(-64)}, []string{"ipv6_prefix: -64 is out of range 1-128"}},
		{"max entries", map[string]any{"max_entries": int64(-1)}, []string{"max_entries: -1 is out of range"}},
		{"every problem at once", map[string]any{"delay": "x", "ipv4_prefix": int64(99), "max_entries": int64(1e9)}, []string{"delay: ", "ipv4_prefix: ", "max_entries: "}},
	} {
		err := e.configure("bad", tc.table)
		var ces sdk.ConfigErrors
		if !errors.As(err, &ces) {
			t.Errorf("%s: got %v, want ConfigErrors", tc.name, err)
			continue
		}
		for _, want := range tc.want {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: got %q, want it to contain %q", tc.name, err, want)
			}
		}
	}
	if _, ok := e.ch.instances["bad"]; ok {
		t.Fatal("a rejected instance was configured")
	}

	err := e.c.Configure(testCtx(t), &sdk.Configuration{Kind: sdk.KindPlugin, Instance: "policy-greylist", Table: map[string]any{"delay": "5m"}, DataDir: e.dir})
	if err == nil || !strings.Contains(err.Error(), "delay: unknown key") {
		t.Errorf("plugin table with a key: got %v", err)
	}
	err = e.c.Configure(testCtx(t), &sdk.Configuration{Kind: sdk.KindPolicy, Instance: "nodir", Table: map[string]any{}})
	if err == nil || !strings.Contains(err.Error(), "no data directory") {
		t.Errorf("no data directory: got %v", err)
	}
	// mta config check: validated, nothing written.
	checkDir := filepath.Join(e.dir, "check")
	err = e.c.Configure(testCtx(t), &sdk.Configuration{Kind: sdk.KindPolicy, Instance: "check", Table: map[string]any{"delay": "2m"}, DataDir: checkDir, CheckOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(checkDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("check only created %s: %v", checkDir, err)
	}
	// An unusable data directory is an error, not a silent memory-only state.
	file := filepath.Join(e.dir, "file")
	os.WriteFile(file, nil, 0o600)
	err = e.c.Configure(testCtx(t), &sdk.Configuration{Kind: sdk.KindPolicy, Instance: "x", Table: map[string]any{}, DataDir: file})
	if err == nil {
		t.Fatal("a file as data directory was accepted")
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"5m": 5 * time.Minute, "90s": 90 * time.Second, "35d": 35 * 24 * time.Hour, "1h30m": 90 * time.Minute} {
		if got, err := parseDuration(in); err != nil || got != want {
			t.Errorf("%q: got %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "1.5d", "-1d", "1d2h", "-5m", "5", "999999d"} {
		if got, err := parseDuration(in); err == nil {
			t.Errorf("%q: got %v, want an error", in, got)
		}
	}
}

func TestFullOfWhitelisted(t *testing.T) {
	clk := newClock()
	e := start(t, t.TempDir(), clk, map[string]any{"max_entries": int64(10)})
	for i := range 10 {
		r := fmt.Sprintf("u%d@example.org", i)
		wantGreylisted(t, "first", e.attempt("192.0.2.1", from, r))
		clk.advance(5 * time.Minute)
		wantPass(t, "retry", e.attempt("192.0.2.1", from, r))
	}
	// With the cap full of whitelisted triplets, a new one still gets in,
	// and the least recently passed make room.
	wantGreylisted(t, "new", e.attempt("192.0.2.1", from, rcpt))
	clk.advance(5 * time.Minute)
	wantPass(t, "new, retried", e.attempt("192.0.2.1", from, rcpt))
	wantPass(t, "most recent of the full", e.attempt("192.0.2.1", from, "u9@example.org"))
	wantGreylisted(t, "least recent of the full", e.attempt("192.0.2.1", from, "u0@example.org"))
}
