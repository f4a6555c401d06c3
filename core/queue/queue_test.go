package queue

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// call is one Deliver call seen by fakeDeliverer.
type call struct {
	transport string
	req       sdk.DeliverRequest
	message   string
	at        time.Time
}

// fakeDeliverer records calls and answers with fn, counting deliveries in
// progress per destination.
type fakeDeliverer struct {
	fn    func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) // n: calls so far, 1-based.
	delay time.Duration

	mu        sync.Mutex
	calls     []call
	inflight  map[string]int
	maxDest   map[string]int
	total     int
	maxTotal  int
	delivered map[string]int // By queue ID and recipient.
}

func (f *fakeDeliverer) Deliver(ctx context.Context, transport string, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	if _, ok := ctx.Deadline(); !ok {
		return nil, errors.New("no deadline")
	}
	msg, err := io.ReadAll(req.Message)
	if err != nil {
		return nil, err
	}
	key := transport + " " + domainOf(req.Recipients[0].Address)
	f.mu.Lock()
	if f.inflight == nil {
		f.inflight, f.maxDest, f.delivered = map[string]int{}, map[string]int{}, map[string]int{}
	}
	c := *req
	c.Message = nil
	f.calls = append(f.calls, call{transport, c, string(msg), time.Now()})
	n := len(f.calls)
	f.inflight[key]++
	f.maxDest[key] = max(f.maxDest[key], f.inflight[key])
	f.total++
	f.maxTotal = max(f.maxTotal, f.total)
	f.mu.Unlock()

	time.Sleep(f.delay)
	res, err := &sdk.DeliverResult{}, error(nil)
	if f.fn != nil {
		res, err = f.fn(req, n)
	} else {
		res = sdk.ResultAll(req, sdk.StatusDelivered, 250, "2.0.0", "ok")
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	f.inflight[key]--
	f.total--
	if err == nil {
		for _, r := range res.Recipients {
			if r.Status == sdk.StatusDelivered {
				f.delivered[req.QueueID+" "+r.Address]++
			}
		}
	}
	return res, err
}

func (f *fakeDeliverer) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// fakeRouter sends everything through transport "t", or "retry" from the
// second attempt on.
type fakeRouter struct{}

func (fakeRouter) Route(account string, from, to mailaddr.Domain, attempts int) string {
	if attempts > 0 {
		return "retry"
	}
	return "t"
}

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func openQueue(t testing.TB, dir string, opts Options) *Queue {
	t.Helper()
	if opts.Log == nil {
		opts.Log = testLog(t)
	}
	if opts.Router == nil {
		opts.Router = fakeRouter{}
	}
	if opts.BackoffScale == 0 {
		opts.BackoffScale = 0.00001 // First retry after 4.5ms.
	}
	q, err := Open(context.Background(), dir, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func spool(t testing.TB, q *Queue, content string) *Spool {
	t.Helper()
	s := q.NewSpool()
	if _, err := io.WriteString(s, content); err != nil {
		t.Fatal(err)
	}
	return s
}

func rcpts(addrs ...string) []sdk.Recipient {
	l := make([]sdk.Recipient, len(addrs))
	for i, a := range addrs {
		l[i] = sdk.Recipient{Address: a}
	}
	return l
}

func add(t testing.TB, q *Queue, content string, to ...string) string {
	t.Helper()
	id, err := q.Add(context.Background(), Envelope{From: "sender@example.org", Recipients: rcpts(to...)}, spool(t, q, content))
	if err != nil {
		t.Fatalf("add: %v", err)
	}
	return id
}

// waitEmpty waits until no message is queued in memory, and until the
// committer stored that and removed the files: all but the current segment.
func waitEmpty(t testing.TB, q *Queue) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		q.mu.Lock()
		n := len(q.msgs)
		q.mu.Unlock()
		if n == 0 {
			l, err := q.List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(l) == 0 && len(leftovers(t, q)) == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue not empty after 10s: %d messages", n)
		}
		time.Sleep(time.Millisecond)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timeout waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// queueFiles returns the names of the files in the queue directory but the
// database, with "seg/" or "tmp/" before those in the segment and spool
// directories.
func queueFiles(t testing.TB, dir string) []string {
	t.Helper()
	var names []string
	for _, sub := range []string{"", segmentDir, spoolDir} {
		l, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range l {
			if e.Type().IsRegular() && e.Name() != dbFile {
				names = append(names, path.Join(sub, e.Name()))
			}
		}
	}
	return names
}

// leftovers returns the files of an empty queue: all but the segments
// appended to.
func leftovers(t testing.TB, q *Queue) []string {
	t.Helper()
	q.segs.mu.Lock()
	cur, old := q.segs.cur, q.segs.old
	q.segs.mu.Unlock()
	return slices.DeleteFunc(queueFiles(t, q.dir), func(name string) bool {
		return cur != nil && name == path.Join(segmentDir, segmentName(cur.n)) ||
			old != nil && name == path.Join(segmentDir, segmentName(old.n))
	})
}

// stored returns message id's record.
func stored(t testing.TB, q *Queue, id string) Msg {
	t.Helper()
	m := Msg{ID: mustParse(t, id)}
	if err := q.db.Get(context.Background(), &m); err != nil {
		t.Fatalf("record of %s: %v", id, err)
	}
	return m
}

func TestDeliver(t *testing.T) {
	dir := t.TempDir()
	d := &fakeDeliverer{}
	q := openQueue(t, dir, Options{Deliverer: d})
	q.Start(context.Background())
	env := Envelope{
		Account:    "alice",
		From:       "alice@example.org",
		Recipients: []sdk.Recipient{{Address: "bob@Example.COM", Notify: []string{"FAILURE", "DELAY"}, ORcpt: "rfc822;bob@example.com"}},
		Options:    sdk.DeliverOptions{SMTPUTF8: true, Body: "8BITMIME", EnvelopeID: "env1", DSNReturn: "HDRS"},
	}
	msg := "Subject: hi\r\n\r\nhello\r\n"
	id, err := q.Add(context.Background(), env, spool(t, q, msg))
	if err != nil {
		t.Fatal(err)
	}
	waitEmpty(t, q)
	calls := d.Calls()
	if len(calls) != 1 {
		t.Fatalf("got %d calls, want 1", len(calls))
	}
	c := calls[0]
	want := sdk.DeliverRequest{Instance: "t", QueueID: id, Attempt: 1, From: env.From, Recipients: env.Recipients, Options: env.Options, Size: int64(len(msg))}
	if c.transport != "t" || fmt.Sprint(c.req) != fmt.Sprint(want) || c.message != msg {
		t.Errorf("call %q %+v %q\nwant %+v %q", c.transport, c.req, c.message, want, msg)
	}
	if f := leftovers(t, q); len(f) != 0 {
		t.Errorf("files left: %v", f)
	}
}

func TestResults(t *testing.T) {
	temp := func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
		return sdk.ResultAll(req, sdk.StatusTemporary, 451, "4.7.1", "greylisted"), nil
	}
	tests := []struct {
		name       string
		fn         func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error)
		wantCalls  int
		wantFailed bool
		wantText   string
	}{
		{"temporary then delivered", func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
			if n == 1 {
				return temp(req, n)
			}
			return sdk.ResultAll(req, sdk.StatusDelivered, 250, "", "ok"), nil
		}, 2, false, ""},
		{"permanent", func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
			return sdk.ResultAll(req, sdk.StatusPermanent, 550, "5.1.1", "no such user"), nil
		}, 1, true, "no such user"},
		{"5xx reported as temporary", func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
			return sdk.ResultAll(req, sdk.StatusTemporary, 554, "5.7.1", "rejected"), nil
		}, 1, true, "rejected"},
		{"temporary until max attempts", temp, 3, true, "greylisted"},
		{"transport error", func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
			return nil, errors.New("transport t: plugin down")
		}, 3, true, "transport t: plugin down"},
		{"missing result", func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
			return &sdk.DeliverResult{}, nil
		}, 3, true, "transport returned no result for recipient"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &fakeDeliverer{fn: tc.fn}
			var mu sync.Mutex
			var failures []Notice
			q := openQueue(t, t.TempDir(), Options{Deliverer: d, MaxAttempts: 3, Notify: func(ctx context.Context, f Notice) error {
				if b, err := io.ReadAll(f.Message); err != nil || string(b) != "x\r\n" {
					t.Errorf("message during Notify: %q, %v", b, err)
				}
				if f.Delayed {
					t.Errorf("delay notice before DelayAfter (5) attempts: %+v", f)
				}
				mu.Lock()
				failures = append(failures, f)
				mu.Unlock()
				return nil
			}})
			q.Start(context.Background())
			id := add(t, q, "x\r\n", "rcpt@example.com")
			waitEmpty(t, q)
			calls := d.Calls()
			if len(calls) != tc.wantCalls {
				t.Fatalf("%d calls, want %d", len(calls), tc.wantCalls)
			}
			for i, c := range calls {
				wantTransport := "t"
				if i > 0 {
					wantTransport = "retry"
				}
				if c.req.Attempt != i+1 || c.transport != wantTransport || c.req.Instance != wantTransport {
					t.Errorf("call %d: attempt %d transport %q", i, c.req.Attempt, c.transport)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if !tc.wantFailed {
				if len(failures) != 0 {
					t.Fatalf("failures %+v", failures)
				}
				return
			}
			if len(failures) != 1 || failures[0].QueueID != id || len(failures[0].Recipients) != 1 {
				t.Fatalf("failures %+v", failures)
			}
			r := failures[0].Recipients[0]
			if r.Address != "rcpt@example.com" || r.State != Failed || r.Attempts != tc.wantCalls || r.Last.Text != tc.wantText {
				t.Errorf("failed recipient %+v", r)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	q := &Queue{opts: Options{BackoffScale: 1}}
	want := []time.Duration{0, 7*time.Minute + 30*time.Second, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 16 * time.Hour}
	for n, w := range want {
		if got := q.backoff(n); got != w {
			t.Errorf("backoff(%d) = %v, want %v", n, got, w)
		}
	}
	if q.backoff(200) <= 0 {
		t.Errorf("backoff overflows")
	}
	q.opts.BackoffScale = 0.001
	if got := q.backoff(2); got != 900*time.Millisecond {
		t.Errorf("scaled backoff(2) = %v", got)
	}
	// Attempts are spaced by the scaled backoff: 45ms, then 90ms.
	d := &fakeDeliverer{fn: func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
		return sdk.ResultAll(req, sdk.StatusTemporary, 421, "", "busy"), nil
	}}
	q = openQueue(t, t.TempDir(), Options{Deliverer: d, MaxAttempts: 3, BackoffScale: 0.0001})
	q.Start(context.Background())
	add(t, q, "x\r\n", "a@example.com")
	waitEmpty(t, q)
	calls := d.Calls()
	if len(calls) != 3 {
		t.Fatalf("%d calls", len(calls))
	}
	for i, min := range []time.Duration{45 * time.Millisecond, 90 * time.Millisecond} {
		if gap := calls[i+1].at.Sub(calls[i].at); gap < min || gap > min+time.Second {
			t.Errorf("attempt %d after %v, want %v", i+2, gap, min)
		}
	}
}

func TestGrouping(t *testing.T) {
	d := &fakeDeliverer{fn: func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
		res := sdk.ResultAll(req, sdk.StatusDelivered, 250, "", "ok")
		if req.Attempt == 1 && domainOf(req.Recipients[0].Address) == "x.test" {
			// One recipient deferred: only it is attempted again.
			res.Recipients[1].Status = sdk.StatusTemporary
		}
		return res, nil
	}}
	q := openQueue(t, t.TempDir(), Options{Deliverer: d})
	q.Start(context.Background())
	add(t, q, "x\r\n", "a@x.test", "b@X.TEST", "c@y.test", "d@bücher.example", "e@XN--BCHER-KVA.example.")
	waitEmpty(t, q)
	var got []string
	for _, c := range d.Calls() {
		var l []string
		for _, r := range c.req.Recipients {
			l = append(l, r.Address)
		}
		got = append(got, fmt.Sprintf("%d:%s", c.req.Attempt, strings.Join(l, ",")))
	}
	slices.Sort(got)
	// A domain in U-labels and A-labels is one destination.
	want := []string{"1:a@x.test,b@X.TEST", "1:c@y.test", "1:d@bücher.example,e@XN--BCHER-KVA.example.", "2:b@X.TEST"}
	if !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	// No Start, Close: as after a crash, the queue has what was added.
	q, err := Open(context.Background(), dir, Options{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	id1 := add(t, q, "one\r\n", "a@example.com")
	id2 := add(t, q, "two\r\n", "b@example.com", "c@example.net")
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Add(context.Background(), Envelope{Recipients: rcpts("x@y")}, q.NewSpool()); !errors.Is(err, ErrClosed) {
		t.Errorf("add after close: %v", err)
	}

	// First start: example.net fails temporarily, then the queue stops.
	d := &fakeDeliverer{fn: func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
		if domainOf(req.Recipients[0].Address) == "example.net" {
			return sdk.ResultAll(req, sdk.StatusTemporary, 451, "", "later"), nil
		}
		return sdk.ResultAll(req, sdk.StatusDelivered, 250, "", "ok"), nil
	}}
	q, err = Open(context.Background(), dir, Options{Log: testLog(t), Deliverer: d, BackoffScale: 1})
	if err != nil {
		t.Fatal(err)
	}
	q.Start(context.Background())
	waitFor(t, "3 deliveries", func() bool { return len(d.Calls()) == 3 })
	waitFor(t, "one message left", func() bool {
		l, err := q.List(context.Background())
		return err == nil && len(l) == 1 && l[0].Recipients[1].Attempts == 1
	})
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range d.Calls() {
		got[c.req.QueueID+" "+c.req.Recipients[0].Address] = c.message
	}
	want := map[string]string{id1 + " a@example.com": "one\r\n", id2 + " b@example.com": "two\r\n", id2 + " c@example.net": "two\r\n"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("deliveries %v, want %v", got, want)
	}

	// Second start: the pending recipient continues at attempt 2.
	d2 := &fakeDeliverer{}
	q = openQueue(t, dir, Options{Deliverer: d2, BackoffScale: 1})
	if ok, err := q.Reschedule(context.Background(), id2, time.Now()); !ok || err != nil {
		t.Fatalf("reschedule: %v, %v", ok, err)
	}
	q.Start(context.Background())
	waitEmpty(t, q)
	calls := d2.Calls()
	if len(calls) != 1 || calls[0].req.QueueID != id2 || calls[0].req.Attempt != 2 || calls[0].transport != "retry" || len(calls[0].req.Recipients) != 1 {
		t.Errorf("calls after reopen %+v", calls)
	}
}

func mustParse(t testing.TB, id string) int64 {
	n, err := parseID(id)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestOrphans(t *testing.T) {
	dir := t.TempDir()
	q := openQueue(t, dir, Options{})
	kept := add(t, q, "kept\r\n", "a@example.com")
	big := strings.Repeat("b", SpoolMemory+1)
	keptBig := add(t, q, big, "a@example.com")
	stale := spool(t, q, big) // Spilled, never added.
	seg := stored(t, q, kept).Segment
	if seg == 0 || stored(t, q, keptBig).Segment != 0 {
		t.Fatalf("kept in segment %d, big in segment %d", seg, stored(t, q, keptBig).Segment)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	orphan := formatID(mustParse(t, kept) + 5)
	orphanSeg := segmentName(seg + 7)
	for name, content := range map[string]string{
		orphan:                           "orphan", // Moved in by an Add that failed.
		kept:                             "kept\r", // A relocation that did not finish.
		path.Join(segmentDir, orphanSeg): "torn",   // Appended to by Adds that failed.
		"notes.txt":                      "",       // Not the queue's.
		path.Join(segmentDir, "x"):       "",       // Not the queue's.
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d := &fakeDeliverer{}
	q = openQueue(t, dir, Options{Deliverer: d})
	got := queueFiles(t, dir)
	slices.Sort(got)
	if want := []string{keptBig, "notes.txt", path.Join(segmentDir, segmentName(seg)), path.Join(segmentDir, "x")}; !slices.Equal(got, want) {
		t.Errorf("files %v, want %v", got, want)
	}
	// New IDs are above the orphan's, which may have been delivered before;
	// new segments above the orphan segment, whose tail may be torn.
	id := add(t, q, "new\r\n", "a@example.com")
	if mustParse(t, id) <= mustParse(t, orphan) {
		t.Errorf("new id %s not above %s", id, orphan)
	}
	if n := stored(t, q, id).Segment; n <= seg+7 {
		t.Errorf("new segment %d not above %s", n, orphanSeg)
	}
	q.Start(context.Background())
	waitFor(t, "deliveries", func() bool { return len(d.Calls()) == 3 })
	got = nil
	for _, c := range d.Calls() {
		got = append(got, c.req.QueueID+" "+c.message)
	}
	slices.Sort(got)
	want := []string{kept + " kept\r\n", keptBig + " " + big, id + " new\r\n"}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("delivered %.80q, want %.80q", got, want)
	}
	stale.Discard() // Its file went at Open.
}

func TestParallelLimits(t *testing.T) {
	d := &fakeDeliverer{delay: 20 * time.Millisecond}
	q := openQueue(t, t.TempDir(), Options{Deliverer: d, MaxParallel: 5, MaxPerDestination: 2})
	for i := range 10 {
		add(t, q, "x\r\n", "a@busy.test")
		add(t, q, "x\r\n", fmt.Sprintf("a@d%d.test", i))
	}
	q.Start(context.Background())
	waitEmpty(t, q)
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.calls) != 20 {
		t.Errorf("%d calls, want 20", len(d.calls))
	}
	if n := d.maxDest["t busy.test"]; n != 2 {
		t.Errorf("max %d at once to busy.test, want 2", n)
	}
	if d.maxTotal != 5 {
		t.Errorf("max %d at once in total, want 5", d.maxTotal)
	}
}

func TestConcurrentAdd(t *testing.T) {
	d := &fakeDeliverer{}
	q := openQueue(t, t.TempDir(), Options{Deliverer: d})
	q.Start(context.Background())
	var wg sync.WaitGroup
	ids := make(chan string, 200)
	for g := range 20 {
		wg.Go(func() {
			for i := range 10 {
				id, err := q.Add(context.Background(), Envelope{Recipients: rcpts(fmt.Sprintf("r%d@d%d.test", i, g))}, spool(t, q, fmt.Sprintf("%d %d", g, i)))
				if err != nil {
					t.Error(err)
				}
				ids <- id
			}
		})
	}
	wg.Wait()
	close(ids)
	waitEmpty(t, q)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(seen) != 200 || len(d.calls) != 200 || len(d.delivered) != 200 {
		t.Fatalf("%d ids, %d calls, %d delivered", len(seen), len(d.calls), len(d.delivered))
	}
	for _, c := range d.calls {
		var g, i int
		fmt.Sscanf(c.message, "%d %d", &g, &i)
		if !seen[c.req.QueueID] || d.delivered[c.req.QueueID+" "+c.req.Recipients[0].Address] != 1 || c.req.Recipients[0].Address != fmt.Sprintf("r%d@d%d.test", i, g) {
			t.Errorf("unexpected call %+v %q", c.req, c.message)
		}
	}
}

func TestList(t *testing.T) {
	d := &fakeDeliverer{fn: func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
		res := sdk.ResultAll(req, sdk.StatusDelivered, 250, "2.0.0", "ok")
		if req.Recipients[0].Address != "x@example.com" {
			return res, nil
		}
		res.Recipients[0] = sdk.RecipientResult{Status: sdk.StatusTemporary, Code: 451, EnhancedCode: "4.2.0", Text: "mailbox busy", RemoteHost: "mx.example.com", RemoteIP: "192.0.2.1", TLS: sdk.TLSUse{Verification: sdk.VerifyDANE}}
		return res, nil
	}}
	q := openQueue(t, t.TempDir(), Options{Deliverer: d, BackoffScale: 1})
	before := time.Now()
	id1, err := q.Add(context.Background(), Envelope{Account: "alice", From: "alice@example.org", Recipients: rcpts("x@example.com", "y@example.com")}, spool(t, q, "hello\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	id2 := add(t, q, "second message\r\n", "z@example.net")
	l, err := q.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 2 || l[0].ID != id1 || l[1].ID != id2 || l[0].Account != "alice" || l[0].From != "alice@example.org" || l[0].Size != 7 || l[1].Size != 16 || l[0].Queued.Before(before) {
		t.Fatalf("list %+v", l)
	}
	for _, r := range l[0].Recipients {
		if r.State != Pending || r.Attempts != 0 || r.NextAttempt.After(time.Now()) {
			t.Errorf("fresh recipient %+v", r)
		}
	}

	q.Start(context.Background())
	waitFor(t, "first attempt stored", func() bool {
		l, err = q.List(context.Background())
		return err == nil && len(l) == 1 && l[0].Recipients[0].Attempts == 1
	})
	x, y := l[0].Recipients[0], l[0].Recipients[1]
	if x.Address != "x@example.com" || x.State != Pending || x.Attempts != 1 || x.Last.Code != 451 || x.Last.Text != "mailbox busy" || x.Last.RemoteHost != "mx.example.com" || x.Last.TLS.Verification != sdk.VerifyDANE {
		t.Errorf("deferred recipient %+v", x)
	}
	if wait := time.Until(x.NextAttempt); wait < 7*time.Minute || wait > 8*time.Minute {
		t.Errorf("next attempt in %v, want 7.5m", wait)
	}
	if y.State != Delivered || y.Attempts != 1 || y.Last.Code != 250 {
		t.Errorf("delivered recipient %+v", y)
	}

	// Retry makes it due now.
	if err := q.retry(context.Background(), "ffff"); !errors.Is(err, ErrNotFound) {
		t.Errorf("retry of unknown: %v", err)
	}
	if err := q.retry(context.Background(), id1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "retry", func() bool { return len(d.Calls()) == 3 })
	if c := d.Calls()[2]; c.req.QueueID != id1 || c.req.Attempt != 2 || len(c.req.Recipients) != 1 {
		t.Errorf("retry call %+v", c.req)
	}
}

// crashMessage is message i of adder g in TestCrash: mostly small ones,
// appended to segments, some spilled to files of their own.
func crashMessage(g, i int) string {
	line := fmt.Sprintf("message %d %d\r\n", g, i)
	n := 1 + (g*7+i*13)%200
	if i%25 == 7 {
		n = SpoolMemory/len(line) + 1
	}
	return strings.Repeat(line, n)
}

// TestCrash kills a process adding messages and checks that every message it
// acknowledged is in the queue after reopening, with its exact content. The
// process also attempts deliveries, which all fail temporarily: messages are
// copied out of their segments, and segments rotated and removed, while
// others are added.
func TestCrash(t *testing.T) {
	if dir := os.Getenv("QUEUE_TEST_CRASH_DIR"); dir != "" {
		d := &fakeDeliverer{fn: func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
			return sdk.ResultAll(req, sdk.StatusTemporary, 451, "", "later"), nil
		}}
		q, err := Open(context.Background(), dir, Options{Deliverer: d, MaxAttempts: 1000, BackoffScale: 0.00002, segmentSize: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		q.Start(context.Background())
		// Adders in parallel, so the kill may hit any step of a group commit.
		for g := range 10 {
			go func() {
				for i := 0; ; i++ {
					id, err := q.Add(context.Background(), Envelope{Recipients: rcpts("a@example.com")}, spool(t, q, crashMessage(g, i)))
					if err != nil {
						fmt.Fprintln(os.Stderr, err)
						os.Exit(1)
					}
					fmt.Printf("%s %d %d\n", id, g, i)
				}
			}()
		}
		select {}
	}
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestCrash$")
	cmd.Env = append(os.Environ(), "QUEUE_TEST_CRASH_DIR="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timeout := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	defer timeout.Stop()
	acked := map[string]string{} // Content by ID.
	for sc := bufio.NewScanner(out); len(acked) < 400 && sc.Scan(); {
		var id string
		var g, i int
		if _, err := fmt.Sscanf(sc.Text(), "%s %d %d", &id, &g, &i); err != nil {
			t.Fatalf("child wrote %q", sc.Text())
		}
		acked[id] = crashMessage(g, i)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if len(acked) < 400 {
		t.Fatalf("child acknowledged only %d", len(acked))
	}

	d := &fakeDeliverer{}
	q := openQueue(t, dir, Options{Deliverer: d})
	l, err := q.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for id := range acked {
		if !slices.ContainsFunc(l, func(m MsgInfo) bool { return m.ID == id }) {
			t.Errorf("acknowledged message %s lost", id)
		}
	}
	// Every file belongs to a message, and every message has its file.
	want := map[string]bool{}
	own := 0
	for _, m := range l {
		if r := stored(t, q, m.ID); r.Segment == 0 {
			want[m.ID] = true
			own++
		} else {
			want[path.Join(segmentDir, segmentName(r.Segment))] = true
		}
	}
	files := queueFiles(t, dir)
	for _, f := range files {
		if !want[f] {
			t.Errorf("file %s belongs to no message", f)
		}
		delete(want, f)
	}
	if len(want) > 0 {
		t.Errorf("files missing: %v", want)
	}
	t.Logf("%d acknowledged, %d queued, %d in files of their own, %d files", len(acked), len(l), own, len(files))

	q.Start(context.Background())
	waitEmpty(t, q)
	for _, c := range d.Calls() {
		if w, ok := acked[c.req.QueueID]; ok && c.message != w {
			t.Errorf("message %s delivered as %.40q (%d bytes), want %.40q (%d bytes)", c.req.QueueID, c.message, len(c.message), w, len(w))
		}
	}
}

func TestCloseCancels(t *testing.T) {
	dir := t.TempDir()
	started := make(chan struct{})
	q, err := Open(context.Background(), dir, Options{Log: testLog(t), Deliverer: blockingDeliverer{started}})
	if err != nil {
		t.Fatal(err)
	}
	id := add(t, q, "x\r\n", "a@example.com")
	q.Start(context.Background())
	<-started
	t0 := time.Now()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(t0); el > time.Second {
		t.Errorf("close took %v", el)
	}
	// The cancelled attempt does not count.
	q = openQueue(t, dir, Options{})
	l, err := q.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 1 || l[0].ID != id || l[0].Recipients[0].Attempts != 0 || l[0].Recipients[0].State != Pending {
		t.Errorf("after close: %+v", l)
	}
}

// blockingDeliverer blocks until its context is done.
type blockingDeliverer struct{ started chan struct{} }

func (b blockingDeliverer) Deliver(ctx context.Context, transport string, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	close(b.started)
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestDomainOf(t *testing.T) {
	for addr, want := range map[string]string{
		"a@Example.COM": "example.com", `"a@b"@c.test`: "c.test", "postmaster": "",
		"a@Bücher.example": "xn--bcher-kva.example", "a@xn--bcher-kva.EXAMPLE.": "xn--bcher-kva.example",
		"a@[IPv6:::1]": "[ipv6:::1]", "a@bad_domain.test": "bad_domain.test",
	} {
		if got := domainOf(addr); got != want {
			t.Errorf("domainOf(%q) = %q, want %q", addr, got, want)
		}
	}
}

// A recipient still pending after DelayAfter attempts is reported once as
// delayed, and again when it finally fails.
func TestDelayNotice(t *testing.T) {
	d := &fakeDeliverer{fn: func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
		return sdk.ResultAll(req, sdk.StatusTemporary, 451, "4.3.0", "later"), nil
	}}
	var mu sync.Mutex
	var notices []Notice
	q := openQueue(t, t.TempDir(), Options{Deliverer: d, MaxAttempts: 4, DelayAfter: 2, BackoffScale: 0.00001, Notify: func(ctx context.Context, n Notice) error {
		mu.Lock()
		defer mu.Unlock()
		notices = append(notices, n)
		return nil
	}})
	q.Start(context.Background())
	add(t, q, "x\r\n", "rcpt@example.com")
	waitEmpty(t, q)
	mu.Lock()
	defer mu.Unlock()
	if len(notices) != 2 || !notices[0].Delayed || notices[0].Recipients[0].Attempts != 2 || notices[1].Delayed || notices[1].Recipients[0].Attempts != 4 {
		t.Fatalf("notices: %+v", notices)
	}
}

// TestReschedule: pending recipients are due when asked, durably (the
// queue reopened has it), and a message with none reports no change.
func TestReschedule(t *testing.T) {
	dir := t.TempDir()
	q := openQueue(t, dir, Options{})
	id := add(t, q, "x\r\n", "a@a.test", "b@b.test")
	at := time.Now().Add(3 * time.Hour).Truncate(time.Second)
	if changed, err := q.Reschedule(context.Background(), id, at); err != nil || !changed {
		t.Fatalf("reschedule: %v %v", changed, err)
	}
	if _, err := q.Reschedule(context.Background(), "ffff", at); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openQueue(t, dir, Options{})
	for _, r := range stored(t, q, id).Recipients {
		if !r.NextAttempt.Equal(at) {
			t.Errorf("%s next attempt %v, want %v", r.Address, r.NextAttempt, at)
		}
	}
}

// TestHold: a held message is not attempted, also after a restart, until
// released; one held during an attempt that fails temporarily stays held;
// a held message stays while its other recipients are delivered.
func TestHold(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	gate := make(chan struct{})
	d := &fakeDeliverer{fn: func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
		if domainOf(req.Recipients[0].Address) == "slow.test" && req.Attempt == 1 {
			<-gate // Held while this attempt runs.
			return sdk.ResultAll(req, sdk.StatusTemporary, 451, "4.3.0", "later"), nil
		}
		return sdk.ResultAll(req, sdk.StatusDelivered, 250, "", "ok"), nil
	}}
	q := openQueue(t, dir, Options{Deliverer: d})
	held := add(t, q, "held\r\n", "a@a.test")
	if changed, err := q.Hold(ctx, held); err != nil || !changed {
		t.Fatalf("hold: %v %v", changed, err)
	}
	if changed, err := q.Hold(ctx, held); err != nil || changed {
		t.Errorf("hold again: %v %v, want no change", changed, err)
	}
	// Durable: a reopened queue keeps it held.
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openQueue(t, dir, Options{Deliverer: d})
	if r := stored(t, q, held).Recipients[0]; r.State != Held {
		t.Fatalf("after reopening: %v", r.State)
	}
	q.Start(ctx)
	slow := add(t, q, "slow\r\n", "b@slow.test", "c@c.test")
	waitFor(t, "slow attempt started", func() bool { return slices.ContainsFunc(d.Calls(), func(c call) bool { return c.req.QueueID == slow }) })
	if changed, err := q.Hold(ctx, slow); err != nil || !changed {
		t.Fatalf("hold during the attempt: %v %v", changed, err)
	}
	close(gate)
	waitFor(t, "attempt ended held", func() bool {
		m := stored(t, q, slow)
		return m.Recipients[0].State == Held && m.Recipients[0].Attempts == 1
	})
	q.retry(ctx, slow) // Held recipients are not pending: nothing due.
	time.Sleep(100 * time.Millisecond)
	for _, c := range d.Calls() {
		if c.req.QueueID == held || c.req.QueueID == slow && c.req.Attempt > 1 {
			t.Errorf("held message attempted: %+v", c.req)
		}
	}
	for _, id := range []string{held, slow} {
		if changed, err := q.Release(ctx, id); err != nil || !changed {
			t.Fatalf("release %s: %v %v", id, changed, err)
		}
	}
	waitEmpty(t, q)
	if _, err := q.Hold(ctx, held); !errors.Is(err, ErrNotFound) {
		t.Errorf("hold of a delivered message: %v", err)
	}
}

// TestDrop: a message not being delivered goes at once, without an
// attempt or a DSN; one being delivered goes when that attempt ends, and
// is not tried again.
func TestDrop(t *testing.T) {
	ctx := context.Background()
	gate := make(chan struct{})
	d := &fakeDeliverer{fn: func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
		<-gate
		return sdk.ResultAll(req, sdk.StatusTemporary, 451, "4.3.0", "later"), nil
	}}
	var notices int
	var mu sync.Mutex
	q := openQueue(t, t.TempDir(), Options{Deliverer: d, Notify: func(ctx context.Context, n Notice) error {
		mu.Lock()
		notices++
		mu.Unlock()
		return nil
	}})
	idle := add(t, q, "idle\r\n", "a@a.test")
	if err := q.Drop(ctx, idle); err != nil {
		t.Fatal(err)
	}
	if l, _ := q.List(ctx); len(l) != 0 {
		t.Errorf("queue after drop: %+v", l)
	}
	q.Start(ctx)
	busy := add(t, q, "busy\r\n", "b@b.test")
	waitFor(t, "attempt started", func() bool { return len(d.Calls()) == 1 })
	if err := q.Drop(ctx, busy); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Release(ctx, busy); !errors.Is(err, ErrNotFound) {
		t.Errorf("release of a dropped message: %v", err)
	}
	close(gate)
	waitEmpty(t, q)
	if err := q.Drop(ctx, busy); !errors.Is(err, ErrNotFound) {
		t.Errorf("drop twice: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls := d.Calls(); len(calls) != 1 || calls[0].req.QueueID != busy || notices != 0 {
		t.Errorf("calls %d, notices %d; want one call for the busy message, no notice", len(calls), notices)
	}
}

// TestHoldRules: a rule holds new messages that match it, by account,
// sender domain and recipient domain; rules survive a reopen; removing one
// releases nothing.
func TestHoldRules(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	q := openQueue(t, dir, Options{})
	r, err := q.AddHoldRule(ctx, "", "", "HELD.example")
	if err != nil || r.ToDomain != "held.example" {
		t.Fatalf("add: %+v %v", r, err)
	}
	if _, err := q.AddHoldRule(ctx, "", "not a domain!", ""); err == nil {
		t.Error("bad domain accepted")
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q = openQueue(t, dir, Options{})
	if l, err := q.HoldRules(ctx); err != nil || len(l) != 1 {
		t.Fatalf("rules after reopen: %+v %v", l, err)
	}
	id := add(t, q, "x\r\n", "a@held.example", "b@free.example")
	rs := stored(t, q, id).Recipients
	if rs[0].State != Held || rs[1].State != Pending {
		t.Errorf("states %v %v, want held and pending", rs[0].State, rs[1].State)
	}
	all, _ := q.AddHoldRule(ctx, "", "", "")
	id2 := add(t, q, "y\r\n", "c@free.example")
	if stored(t, q, id2).Recipients[0].State != Held {
		t.Error("a rule with no fields held nothing")
	}
	if err := q.RemoveHoldRule(ctx, all.ID); err != nil {
		t.Fatal(err)
	}
	if err := q.RemoveHoldRule(ctx, all.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove twice: %v", err)
	}
	if stored(t, q, id2).Recipients[0].State != Held {
		t.Error("removing the rule released its message")
	}
	if id3 := add(t, q, "z\r\n", "d@free.example"); stored(t, q, id3).Recipients[0].State != Pending {
		t.Error("held after the rule was removed")
	}
}

// TestFail: failed recipients get one DSN saying the operator failed
// them, without an attempt; a recipient being delivered fails when that
// attempt ends, unless delivered.
func TestFail(t *testing.T) {
	ctx := context.Background()
	gate := make(chan struct{})
	d := &fakeDeliverer{fn: func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
		<-gate
		return sdk.ResultAll(req, sdk.StatusTemporary, 451, "4.3.0", "later"), nil
	}}
	var mu sync.Mutex
	var notices []Notice
	q := openQueue(t, t.TempDir(), Options{Deliverer: d, Notify: func(ctx context.Context, n Notice) error {
		mu.Lock()
		notices = append(notices, n)
		mu.Unlock()
		return nil
	}})
	idle := add(t, q, "idle\r\n", "a@a.test")
	if changed, err := q.Fail(ctx, idle); err != nil || !changed {
		t.Fatalf("fail: %v %v", changed, err)
	}
	q.Start(ctx)
	waitEmpty(t, q)
	busy := add(t, q, "busy\r\n", "b@b.test")
	waitFor(t, "attempt started", func() bool { return len(d.Calls()) == 1 })
	if changed, err := q.Fail(ctx, busy); err != nil || !changed {
		t.Fatalf("fail during the attempt: %v %v", changed, err)
	}
	close(gate)
	waitEmpty(t, q)
	mu.Lock()
	defer mu.Unlock()
	if len(notices) != 2 {
		t.Fatalf("%d notices, want 2", len(notices))
	}
	for _, n := range notices {
		if n.Delayed || len(n.Recipients) != 1 || n.Recipients[0].State != Failed || !strings.Contains(n.Recipients[0].Last.Text, "operator") {
			t.Errorf("notice %+v", n)
		}
	}
	if calls := d.Calls(); len(calls) != 1 || calls[0].req.QueueID != busy {
		t.Errorf("%d calls, want the one attempt of the busy message", len(calls))
	}
}

// retry makes message id's pending recipients due now.
func (q *Queue) retry(ctx context.Context, id string) error {
	_, err := q.Reschedule(ctx, id, time.Now())
	return err
}

// TestReleaseAt: a message with a future release is first attempted then,
// not before, and is listed as pending with its release as the next attempt.
func TestReleaseAt(t *testing.T) {
	d := &fakeDeliverer{}
	q := openQueue(t, t.TempDir(), Options{Deliverer: d})
	q.Start(context.Background())
	release := time.Now().Add(400 * time.Millisecond)
	id, err := q.Add(context.Background(), Envelope{Recipients: rcpts("a@example.com"), ReleaseAt: release}, spool(t, q, "Subject: later\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := stored(t, q, id).Recipients[0]; r.State != Pending || !r.NextAttempt.Equal(release) {
		t.Errorf("stored %v next %v, want pending at %v", r.State, r.NextAttempt, release)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(d.Calls()); n != 0 {
		t.Fatalf("%d attempts before the release", n)
	}
	waitEmpty(t, q)
	calls := d.Calls()
	if len(calls) != 1 || calls[0].at.Before(release) {
		t.Errorf("calls %+v, want one after %v", calls, release)
	}
}

// TestNoticeKey: while the message a notice is about is queued, adding
// the notice again (made again after a crash) adds nothing and returns
// the first one's ID, also after a reopen and after the notice itself left
// the queue; once the message left the queue, its keys are free. Notices
// of other keys are added.
func TestNoticeKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	q := openQueue(t, dir, Options{})
	orig := add(t, q, "original\r\n", "a@a.test")
	k1, k2 := orig+"/1", orig+"/2"
	addNotice := func(key string) string {
		t.Helper()
		id, err := q.Add(ctx, Envelope{Recipients: rcpts("sender@example.org"), NoticeKey: key}, spool(t, q, "Subject: DSN\r\n\r\nx\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	first := addNotice(k1)
	if again := addNotice(k1); again != first {
		t.Errorf("notice added again as %s, want %s", again, first)
	}
	other := addNotice(k2)
	q.Close()
	q = openQueue(t, dir, Options{})
	if err := q.Drop(ctx, first); err != nil { // As if delivered.
		t.Fatal(err)
	}
	if again := addNotice(k1); again != first {
		t.Errorf("notice added again after a reopen and its delivery as %s, want %s", again, first)
	}
	if l, _ := q.List(ctx); len(l) != 2 {
		t.Fatalf("%d messages queued, want 2 (the original and k2)", len(l))
	}
	if err := q.Drop(ctx, orig); err != nil {
		t.Fatal(err)
	}
	if again := addNotice(k1); again == first || again == other {
		t.Errorf("notice after its message left the queue: %s, want a new one", again)
	}
	if _, err := q.Add(ctx, Envelope{Recipients: rcpts("x@example.org"), NoticeKey: "nonsense"}, spool(t, q, "x\r\n")); err == nil {
		t.Error("a notice key without a queue ID was taken")
	}
}
