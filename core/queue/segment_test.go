package queue

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/switchyard-mta/switchyard/sdk"
)

// content returns n bytes that differ at every offset that matters.
func content(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%23 + i/1000%3)
	}
	return b
}

// write writes p to s in chunks of the given size; 0: at once.
func write(t *testing.T, s *Spool, p []byte, chunk int) {
	t.Helper()
	if chunk == 0 {
		chunk = len(p)
	}
	for len(p) > 0 {
		k := min(chunk, len(p))
		if n, err := s.Write(p[:k]); err != nil || n != k {
			t.Fatalf("write: %d, %v", n, err)
		}
		p = p[k:]
	}
}

func TestSpool(t *testing.T) {
	q := openQueue(t, t.TempDir(), Options{})
	for _, size := range []int{10, SpoolMemory, SpoolMemory + 1} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			msg := content(size)
			s := q.NewSpool()
			write(t, s, msg, 5000)
			if s.Size() != int64(size) {
				t.Errorf("size %d, want %d", s.Size(), size)
			}
			for range 2 { // Reading does not consume.
				r, err := s.Reader()
				if err != nil {
					t.Fatal(err)
				}
				if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("read back %d bytes, %v", len(got), err)
				}
			}
			spilled := queueFiles(t, q.dir)
			if want := size > SpoolMemory; (len(spilled) == 1 && strings.HasPrefix(spilled[0], spoolDir+"/")) != want {
				t.Errorf("files %v; want a spill file: %v", spilled, want)
			}
			s.Discard()
			s.Discard()
			if f := queueFiles(t, q.dir); len(f) != 0 {
				t.Errorf("files after Discard: %v", f)
			}
			if _, err := s.Write([]byte("x")); err == nil {
				t.Error("write after Discard")
			}
			if _, err := s.Reader(); err == nil {
				t.Error("Reader after Discard")
			}
			if _, err := q.Add(context.Background(), Envelope{Recipients: rcpts("a@example.com")}, s); err == nil {
				t.Error("Add after Discard")
			}

			// Add consumes the spool, also when it fails.
			s = q.NewSpool()
			write(t, s, msg, 0)
			if _, err := q.Add(context.Background(), Envelope{}, s); err == nil {
				t.Fatal("Add without recipients")
			}
			if _, err := s.Write([]byte("x")); err == nil {
				t.Error("write after Add")
			}
			if f := queueFiles(t, q.dir); len(f) != 0 {
				t.Errorf("files after failed Add: %v", f)
			}
		})
	}
	other := openQueue(t, t.TempDir(), Options{})
	if _, err := q.Add(context.Background(), Envelope{Recipients: rcpts("a@example.com")}, other.NewSpool()); err == nil {
		t.Error("Add of another queue's spool")
	}
}

// TestSizes checks that messages around SpoolMemory come out as they went
// in, written at once or in chunks, in a segment or in a file of their own.
func TestSizes(t *testing.T) {
	d := &fakeDeliverer{}
	dir := t.TempDir()
	q := openQueue(t, dir, Options{Deliverer: d})
	want := map[string]string{}
	for _, size := range []int{0, 1, 4096, SpoolMemory - 1, SpoolMemory, SpoolMemory + 1, 3*SpoolMemory + 7} {
		for _, chunk := range []int{0, 1000, 32 << 10} {
			msg := content(size)
			s := q.NewSpool()
			write(t, s, msg, chunk)
			id, err := q.Add(context.Background(), Envelope{Recipients: rcpts("a@example.com")}, s)
			if err != nil {
				t.Fatal(err)
			}
			m := stored(t, q, id)
			if m.Size != int64(size) || (m.Segment == 0) != (size > SpoolMemory) {
				t.Errorf("size %d: stored with size %d in segment %d", size, m.Size, m.Segment)
			}
			want[id] = string(msg)
		}
	}
	// From the files after a restart.
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	deliveredOnce(t, openQueue(t, dir, Options{Deliverer: d}), d, want)
}

// deliveredOnce starts q, waits until it is empty, and checks that d got
// one delivery of each message of want, by queue ID, with its content and
// size.
func deliveredOnce(t *testing.T, q *Queue, d *fakeDeliverer, want map[string]string) {
	t.Helper()
	q.Start(context.Background())
	waitEmpty(t, q)
	calls := d.Calls()
	if len(calls) != len(want) {
		t.Fatalf("%d deliveries, want %d", len(calls), len(want))
	}
	for _, c := range calls {
		if w := want[c.req.QueueID]; c.message != w || c.req.Size != int64(len(w)) {
			t.Errorf("message %s: delivered %d bytes (size %d), want %d", c.req.QueueID, len(c.message), c.req.Size, len(w))
		}
	}
}

// gatedDeliverer delivers, but a message whose content is hold waits for
// gate to close.
type gatedDeliverer struct {
	fakeDeliverer
	hold string
	gate chan struct{}
}

func (g *gatedDeliverer) Deliver(ctx context.Context, transport string, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	var b bytes.Buffer
	if _, err := io.Copy(&b, req.Message); err != nil {
		return nil, err
	}
	if b.String() == g.hold {
		<-g.gate
	}
	req.Message = &b
	return g.fakeDeliverer.Deliver(ctx, transport, req)
}

// TestSegments checks that segments rotate, and that a segment file is
// removed when its messages are done and it is not appended to.
func TestSegments(t *testing.T) {
	dir := t.TempDir()
	d := &gatedDeliverer{gate: make(chan struct{})}
	q := openQueue(t, dir, Options{Deliverer: d, segmentSize: 1000})
	msgs := []string{strings.Repeat("1", 600), strings.Repeat("2", 500), strings.Repeat("3", 300), strings.Repeat("4", 600)}
	d.hold = msgs[1]
	var ids []string
	var segs []int64
	for _, msg := range msgs {
		id := add(t, q, msg, "a@example.com")
		ids = append(ids, id)
		segs = append(segs, stored(t, q, id).Segment)
	}
	// 600 bytes, then 600+500 > 1000 starts a new segment, 500+300 fits,
	// 800+600 does not.
	if segs[0] == 0 || segs[1] != segs[0]+1 || segs[2] != segs[1] || segs[3] != segs[2]+1 {
		t.Fatalf("segments %v", segs)
	}
	segFile := func(n int64) string { return path.Join(segmentDir, segmentName(n)) }
	if got, want := queueFiles(t, dir), []string{segFile(segs[0]), segFile(segs[1]), segFile(segs[3])}; !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}

	// All but message 2 are delivered: its segment stays, the current
	// segment stays though empty, the first goes.
	q.Start(context.Background())
	waitFor(t, "3 deliveries", func() bool { return len(d.Calls()) == 3 })
	waitFor(t, "first segment removed", func() bool {
		return slices.Equal(queueFiles(t, dir), []string{segFile(segs[1]), segFile(segs[3])})
	})
	close(d.gate)
	waitEmpty(t, q)
	if got, want := queueFiles(t, dir), []string{segFile(segs[3])}; !slices.Equal(got, want) {
		t.Errorf("files %v, want %v", got, want)
	}
	for _, c := range d.Calls() {
		if i := slices.Index(ids, c.req.QueueID); i < 0 || c.message != msgs[i] {
			t.Errorf("delivered %s: %.20q", c.req.QueueID, c.message)
		}
	}

	// The empty current segment is not removed at Close; Open removes it.
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	openQueue(t, dir, Options{})
	if f := queueFiles(t, dir); len(f) != 0 {
		t.Errorf("files after reopen: %v", f)
	}
}

// segmentOf returns the segment of message id as stored.
func segmentOf(t *testing.T, q *Queue, id string) int64 {
	return stored(t, q, id).Segment
}

// TestCompaction: once most of a segment's messages are delivered, the
// others, waiting for a retry, are copied to the compactor's segment, the
// segment goes, and they are delivered from their copy later, also after
// a reopen.
func TestCompaction(t *testing.T) {
	dir := t.TempDir()
	d := &fakeDeliverer{fn: func(req *sdk.DeliverRequest, n int) (*sdk.DeliverResult, error) {
		if domainOf(req.Recipients[0].Address) == "later.test" && req.Attempt == 1 {
			return sdk.ResultAll(req, sdk.StatusTemporary, 451, "4.7.1", "greylisted"), nil
		}
		return sdk.ResultAll(req, sdk.StatusDelivered, 250, "", "ok"), nil
	}}
	opts := Options{Deliverer: d, BackoffScale: 1, segmentSize: 1000}
	q := openQueue(t, dir, opts)
	var ids []string
	want := map[string]string{}
	for i := range 10 {
		to := "a@now.test"
		if i%5 == 2 {
			to = "b@later.test"
		}
		c := fmt.Sprintf("message %d\r\n%s", i, strings.Repeat("x", 80))
		id := add(t, q, c, to)
		ids = append(ids, id)
		want[id] = c
	}
	seg := segmentOf(t, q, ids[0])
	if segmentOf(t, q, ids[9]) != seg {
		t.Fatalf("messages in segments %d and %d, want one", seg, segmentOf(t, q, ids[9]))
	}
	// A segment is compacted once it is not appended to any more.
	last := add(t, q, strings.Repeat("y", 100), "c@now.test")
	if segmentOf(t, q, last) == seg {
		t.Fatalf("no new segment started")
	}
	q.Start(context.Background())
	waitFor(t, "the deferred ones moved", func() bool {
		return segmentOf(t, q, ids[2]) != seg && segmentOf(t, q, ids[7]) != seg
	})
	if segmentOf(t, q, ids[2]) != segmentOf(t, q, ids[7]) {
		t.Errorf("deferred messages in segments %d and %d, want the compactor's", segmentOf(t, q, ids[2]), segmentOf(t, q, ids[7]))
	}
	segFile := path.Join(segmentDir, segmentName(seg))
	waitFor(t, "the segment removed", func() bool { return !slices.Contains(queueFiles(t, dir), segFile) })
	q.Close()

	q = openQueue(t, dir, opts)
	q.Start(context.Background())
	for _, id := range []string{ids[2], ids[7]} {
		if err := q.retry(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	waitEmpty(t, q)
	calls := d.Calls()
	if len(calls) != 13 {
		t.Fatalf("%d calls, want 13", len(calls))
	}
	for _, c := range calls {
		if c.req.QueueID != last && c.message != want[c.req.QueueID] {
			t.Errorf("attempt %d of %s: %q, want %q", c.req.Attempt, c.req.QueueID, c.message, want[c.req.QueueID])
		}
	}
}

// lateReader delivers to b.test only once gate is closed, and then reads
// the message; it fails a.test temporarily, and delivers the others.
type lateReader struct {
	gate chan struct{}
	bIn  chan struct{}
	got  chan string
}

func (l lateReader) Deliver(ctx context.Context, transport string, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	switch domainOf(req.Recipients[0].Address) {
	case "a.test":
		return sdk.ResultAll(req, sdk.StatusTemporary, 451, "", "later"), nil
	case "b.test":
		close(l.bIn)
		<-l.gate
		b, err := io.ReadAll(req.Message)
		if err != nil {
			b = []byte(err.Error())
		}
		l.got <- string(b)
	}
	return sdk.ResultAll(req, sdk.StatusDelivered, 250, "", "ok"), nil
}

// TestCompactionWhileReading checks that a segment stays while a delivery
// reads it, also after compaction moved its last message out.
func TestCompactionWhileReading(t *testing.T) {
	dir := t.TempDir()
	d := lateReader{gate: make(chan struct{}), bIn: make(chan struct{}), got: make(chan string, 1)}
	q := openQueue(t, dir, Options{Deliverer: d, BackoffScale: 1, segmentSize: 1000})
	id := add(t, q, "content\r\n", "x@a.test", "y@b.test")
	seg := segmentOf(t, q, id)
	for i := range 11 {
		add(t, q, strings.Repeat("o", 90)+"\r\n", fmt.Sprintf("r%d@c.test", i)) // The last starts a new segment.
	}
	q.Start(context.Background())
	<-d.bIn
	waitFor(t, "move stored", func() bool { return segmentOf(t, q, id) != seg })
	segFile := path.Join(segmentDir, segmentName(seg))
	if !slices.Contains(queueFiles(t, dir), segFile) {
		t.Errorf("segment removed while read")
	}
	close(d.gate)
	if got := <-d.got; got != "content\r\n" {
		t.Errorf("read %q", got)
	}
	waitFor(t, "segment removed", func() bool { return !slices.Contains(queueFiles(t, dir), segFile) })
}
