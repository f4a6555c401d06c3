package store

import (
	"github.com/mjl-/bstore"

	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func testMessage(body string) string {
	return "From: a@example.org\r\nTo: b@example.com\r\nSubject: test\r\n\r\n" + body + "\r\n"
}

// deliver delivers testMessage(body) to a mailbox of a.
func deliver(t *testing.T, a *Account, mailbox, body string) Delivered {
	t.Helper()
	d, err := a.Append(context.Background(), mailbox, strings.NewReader(testMessage(body)), DeliverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func readMessage(t *testing.T, a *Account, m Message) string {
	t.Helper()
	c, err := a.OpenMessage(m)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mailboxMessages(t *testing.T, a *Account, name string) (Mailbox, []Message) {
	t.Helper()
	mb, err := a.Mailbox(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	l, err := a.Messages(context.Background(), mb.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	return mb, l
}

func uidsOf(l []Message) []UID {
	var uids []UID
	for _, m := range l {
		uids = append(uids, m.UID)
	}
	return uids
}

func TestDeliverReadBack(t *testing.T) {
	ctx := context.Background()
	a := openTestAccount(t, AccountConfig{})
	received := time.Date(2024, 2, 29, 12, 30, 0, 0, time.FixedZone("", 3600))
	for _, tc := range []struct {
		name       string
		msg        string
		headerSize int
	}{
		{"crlf", "Subject: x\r\nFrom: a@b\r\n\r\nbody\r\n\r\nmore\r\n", 25},
		{"lf", "Subject: x\n\nbody\n", 12},
		{"no body", "Subject: x\r\n", 12},
		{"no header", "\r\nbody\r\n", 2},
		{"empty", "", 0},
		{"binary", "Subject: b\r\n\r\n\x00\xff\x80\r\n", 14},
		{"large", "Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 20000), 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := a.Append(ctx, "Drafts", strings.NewReader(tc.msg), DeliverOptions{
				Flags:    Flags{Draft: true, Seen: true},
				Keywords: []string{"$Label1"},
				Received: received,
			})
			if err != nil {
				t.Fatal(err)
			}
			l, err := a.Messages(ctx, d.MailboxID, []UID{d.UID})
			if err != nil || len(l) != 1 {
				t.Fatalf("Messages = %v, %v", l, err)
			}
			m := l[0]
			if m.Size != int64(len(tc.msg)) || m.HeaderSize != int64(tc.headerSize) {
				t.Errorf("size %d, header size %d; want %d, %d", m.Size, m.HeaderSize, len(tc.msg), tc.headerSize)
			}
			if !m.Received.Equal(received) || m.Flags != (Flags{Draft: true, Seen: true}) || !slices.Equal(m.Keywords, []string{"$label1"}) {
				t.Errorf("message %+v", m)
			}
			if got := readMessage(t, a, m); got != tc.msg {
				t.Errorf("read back %d bytes, differ from the %d delivered", len(got), len(tc.msg))
			}
			c, err := a.OpenMessage(m)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			h, err := c.Header()
			if err != nil || string(h) != tc.msg[:tc.headerSize] {
				t.Errorf("Header = %q, %v", h, err)
			}
			if len(tc.msg) > 4 {
				b := make([]byte, 3)
				if _, err := c.ReadAt(b, 2); err != nil || string(b) != tc.msg[2:5] {
					t.Errorf("ReadAt = %q, %v", b, err)
				}
			}
		})
	}
	mb, _ := a.Mailbox(ctx, "Drafts")
	if !slices.Equal(mb.Keywords, []string{"$label1"}) {
		t.Errorf("mailbox keywords %v", mb.Keywords)
	}
	if _, err := a.Append(ctx, "Nowhere", strings.NewReader("x"), DeliverOptions{}); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("append to missing mailbox: %v, want ErrNoMailbox", err)
	}
	checkConsistent(t, a)
}

// Counts stay consistent through every kind of change, and UIDs are
// strictly increasing and never reused.
func TestCountsAndUIDs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openMailStore(t, dir, map[string]AccountConfig{"alice": {}})
	a := account(t, s, "alice")
	want := func(name string, c Counts, uidnext UID) {
		t.Helper()
		mb, l := mailboxMessages(t, a, name)
		if mb.Counts != c || mb.UIDNext != uidnext || len(l) != int(c.Messages) {
			t.Errorf("%s: counts %+v, uidnext %d, %d messages; want %+v, %d", name, mb.Counts, mb.UIDNext, len(l), c, uidnext)
		}
		checkConsistent(t, a)
	}
	size := int64(len(testMessage("m0")))
	for i := range 5 {
		d := deliver(t, a, Inbox, "m"+string(rune('0'+i)))
		if d.UID != UID(i+1) {
			t.Errorf("delivery %d got UID %d", i, d.UID)
		}
	}
	want(Inbox, Counts{Messages: 5, Unseen: 5, Size: 5 * size}, 6)
	inbox, _ := a.Mailbox(ctx, Inbox)

	res, err := a.StoreFlags(ctx, inbox.ID, []UID{1, 2, 3, 99}, FlagsAdd, Flags{Seen: true, Deleted: true}, []string{"Work"})
	if err != nil || len(res) != 3 {
		t.Fatalf("StoreFlags = %+v, %v", res, err)
	}
	for _, f := range res {
		if f.Flags != (Flags{Seen: true, Deleted: true}) || !slices.Equal(f.Keywords, []string{"work"}) {
			t.Errorf("flags %+v", f)
		}
	}
	want(Inbox, Counts{Messages: 5, Unseen: 2, Deleted: 3, Size: 5 * size}, 6)
	res, err = a.StoreFlags(ctx, inbox.ID, []UID{3}, FlagsRemove, Flags{Deleted: true}, []string{"work"})
	if err != nil || len(res) != 1 || res[0].Flags != (Flags{Seen: true}) || len(res[0].Keywords) != 0 {
		t.Fatalf("StoreFlags remove = %+v, %v", res, err)
	}
	res, err = a.StoreFlags(ctx, inbox.ID, []UID{5}, FlagsSet, Flags{Flagged: true}, []string{"x"})
	if err != nil || len(res) != 1 || res[0].Flags != (Flags{Flagged: true}) || !slices.Equal(res[0].Keywords, []string{"x"}) {
		t.Fatalf("StoreFlags set = %+v, %v", res, err)
	}
	want(Inbox, Counts{Messages: 5, Unseen: 2, Deleted: 2, Size: 5 * size}, 6)
	// Removing a keyword does not define it.
	if _, err := a.StoreFlags(ctx, inbox.ID, []UID{1}, FlagsRemove, Flags{}, []string{"never"}); err != nil {
		t.Fatal(err)
	}
	if mb, _ := a.Mailbox(ctx, Inbox); !slices.Equal(mb.Keywords, []string{"work", "x"}) {
		t.Errorf("Inbox keywords %v", mb.Keywords)
	}

	// COPY: new UIDs in the destination, source untouched (RFC 4315 COPYUID).
	cp, err := a.Copy(ctx, inbox.ID, []UID{2, 3, 4}, "Archive")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cp.Source, []UID{2, 3, 4}) || !slices.Equal(cp.Dest, []UID{1, 2, 3}) {
		t.Errorf("Copy = %+v", cp)
	}
	want(Inbox, Counts{Messages: 5, Unseen: 2, Deleted: 2, Size: 5 * size}, 6)
	want("Archive", Counts{Messages: 3, Unseen: 1, Deleted: 1, Size: 3 * size}, 4)
	if used, _, _ := a.Quota(ctx); used != 8*size {
		t.Errorf("usage %d, want %d", used, 8*size)
	}

	// MOVE: expunged from the source, new UIDs in the destination.
	mv, err := a.Move(ctx, inbox.ID, []UID{4, 5}, "Archive")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(mv.Source, []UID{4, 5}) || !slices.Equal(mv.Dest, []UID{4, 5}) {
		t.Errorf("Move = %+v", mv)
	}
	want(Inbox, Counts{Messages: 3, Unseen: 0, Deleted: 2, Size: 3 * size}, 6)
	want("Archive", Counts{Messages: 5, Unseen: 3, Deleted: 1, Size: 5 * size}, 6)
	archive, l := mailboxMessages(t, a, "Archive")
	if got := readMessage(t, a, l[4]); got != testMessage("m4") {
		t.Errorf("moved message reads %q", got)
	}

	// UID EXPUNGE of a set: only \Deleted ones in it (RFC 4315 §2.1).
	exp, err := a.Expunge(ctx, inbox.ID, []UID{1, 3})
	if err != nil || !slices.Equal(exp, []UID{1}) {
		t.Errorf("Expunge(1,3) = %v, %v", exp, err)
	}
	exp, err = a.Expunge(ctx, inbox.ID, nil)
	if err != nil || !slices.Equal(exp, []UID{2}) {
		t.Errorf("Expunge = %v, %v", exp, err)
	}
	want(Inbox, Counts{Messages: 1, Size: size}, 6)
	if _, l := mailboxMessages(t, a, Inbox); !slices.Equal(uidsOf(l), []UID{3}) {
		t.Errorf("Inbox UIDs %v", uidsOf(l))
	}
	if n := countFiles(t, a); n != 6 {
		t.Errorf("%d files, want 6", n)
	}

	// UIDs are not reused after an expunge, nor after a reopen.
	if d := deliver(t, a, Inbox, "after"); d.UID != 6 {
		t.Errorf("UID after expunge %d, want 6", d.UID)
	}
	s.Close()
	s = openMailStore(t, dir, map[string]AccountConfig{"alice": {}})
	a = account(t, s, "alice")
	inbox2, _ := a.Mailbox(ctx, Inbox)
	archive2, _ := a.Mailbox(ctx, "Archive")
	if inbox2.UIDValidity != inbox.UIDValidity || archive2.UIDValidity != archive.UIDValidity {
		t.Errorf("UIDVALIDITY changed on reopen: %d %d, was %d %d", inbox2.UIDValidity, archive2.UIDValidity, inbox.UIDValidity, archive.UIDValidity)
	}
	markDeleted(t, a, inbox2.ID)
	if _, err := a.Expunge(ctx, inbox2.ID, nil); err != nil {
		t.Fatal(err)
	}
	if d := deliver(t, a, Inbox, "after reopen"); d.UID != 7 || d.UIDValidity != inbox.UIDValidity {
		t.Errorf("after reopen and expunge of all: %+v, want UID 7", d)
	}
	want(Inbox, Counts{Messages: 1, Unseen: 1, Size: int64(len(testMessage("after reopen")))}, 8)

	// Operations on a deleted mailbox.
	if err := a.DeleteMailbox(ctx, "Archive"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Messages(ctx, archive.ID, nil); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("Messages of deleted mailbox: %v", err)
	}
	if _, err := a.StoreFlags(ctx, archive.ID, nil, FlagsAdd, Flags{Seen: true}, nil); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("StoreFlags in deleted mailbox: %v", err)
	}
	if _, err := a.Copy(ctx, inbox.ID, nil, "Archive"); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("Copy to deleted mailbox: %v", err)
	}
	checkConsistent(t, a)
}

// markDeleted marks all messages of a mailbox \Deleted.
func markDeleted(t *testing.T, a *Account, mailboxID int64) {
	t.Helper()
	if _, err := a.StoreFlags(context.Background(), mailboxID, nil, FlagsAdd, Flags{Deleted: true}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestQuota(t *testing.T) {
	ctx := context.Background()
	msg := testMessage("quota")
	size := int64(len(msg))
	a := openTestAccount(t, AccountConfig{MaxStorage: 3 * size})
	for range 3 {
		deliver(t, a, Inbox, "quota")
	}
	if _, err := a.Append(ctx, Inbox, strings.NewReader(msg), DeliverOptions{}); !errors.Is(err, ErrQuota) {
		t.Fatalf("delivery over quota: %v, want ErrQuota", err)
	}
	inbox, l := mailboxMessages(t, a, Inbox)
	if len(l) != 3 || inbox.Messages != 3 || inbox.UIDNext != 4 {
		t.Errorf("after refused delivery: %d messages, %+v", len(l), inbox)
	}
	if n := countFiles(t, a); n != 3 {
		t.Errorf("%d files, want 3", n)
	}
	if _, err := a.Copy(ctx, inbox.ID, []UID{1}, "Archive"); !errors.Is(err, ErrQuota) {
		t.Errorf("copy over quota: %v, want ErrQuota", err)
	}
	// Moving takes no more space.
	if _, err := a.Move(ctx, inbox.ID, []UID{1}, "Archive"); err != nil {
		t.Errorf("move at quota: %v", err)
	}
	if used, limit, err := a.Quota(ctx); used != 3*size || limit != 3*size || err != nil {
		t.Errorf("Quota = %d, %d, %v", used, limit, err)
	}
	checkConsistent(t, a)
	// Expunging frees space.
	markDeleted(t, a, inbox.ID)
	if _, err := a.Expunge(ctx, inbox.ID, nil); err != nil {
		t.Fatal(err)
	}
	deliver(t, a, Inbox, "quota")
	checkConsistent(t, a)
}

// One message to three accounts: written once, hard-linked into each;
// each account commits on its own, so one over quota fails alone.
func TestDeliverMany(t *testing.T) {
	ctx := context.Background()
	msg := testMessage("to all")
	s := openMailStore(t, t.TempDir(), map[string]AccountConfig{
		"alice": {}, "bob": {}, "carol": {}, "dave": {MaxStorage: 10},
	})
	in, err := s.NewIncoming(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if in.Size() != int64(len(msg)) {
		t.Errorf("Incoming size %d", in.Size())
	}
	var wg sync.WaitGroup
	results := map[string]error{}
	var mu sync.Mutex
	for _, name := range []string{"alice", "bob", "carol", "dave"} {
		wg.Go(func() {
			_, err := account(t, s, name).Deliver(ctx, Inbox, in, DeliverOptions{})
			mu.Lock()
			results[name] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	var files []os.FileInfo
	for _, name := range []string{"alice", "bob", "carol"} {
		if results[name] != nil {
			t.Fatalf("deliver to %s: %v", name, results[name])
		}
		a := account(t, s, name)
		_, l := mailboxMessages(t, a, Inbox)
		if len(l) != 1 || readMessage(t, a, l[0]) != msg {
			t.Fatalf("%s: %d messages", name, len(l))
		}
		fi, err := os.Stat(a.msgPath(l[0].ID))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fi)
		checkConsistent(t, a)
	}
	if !os.SameFile(files[0], files[1]) || !os.SameFile(files[1], files[2]) {
		t.Errorf("deliveries are not hard links of one file")
	}
	if !errors.Is(results["dave"], ErrQuota) {
		t.Errorf("dave: %v, want ErrQuota", results["dave"])
	}
	dave := account(t, s, "dave")
	if _, l := mailboxMessages(t, dave, Inbox); len(l) != 0 || countFiles(t, dave) != 0 {
		t.Errorf("dave has %d messages, %d files", len(l), countFiles(t, dave))
	}
}

// Deliveries by many goroutines to one account: all stored, UIDs unique
// and dense, counts right.
func TestConcurrentDeliveries(t *testing.T) {
	ctx := context.Background()
	a := openTestAccount(t, AccountConfig{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[UID]bool{}
	for range 8 {
		wg.Go(func() {
			for range 10 {
				d, err := a.Append(ctx, Inbox, strings.NewReader(testMessage("c")), DeliverOptions{})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[d.UID] {
					t.Errorf("UID %d twice", d.UID)
				}
				seen[d.UID] = true
				mu.Unlock()
			}
		})
	}
	// Readers run meanwhile.
	wg.Go(func() {
		for range 20 {
			if _, err := a.Mailboxes(ctx); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	inbox, l := mailboxMessages(t, a, Inbox)
	if len(l) != 80 || inbox.Messages != 80 || inbox.UIDNext != 81 || len(seen) != 80 {
		t.Errorf("%d messages, %+v, %d UIDs", len(l), inbox, len(seen))
	}
	checkConsistent(t, a)
}

// BenchmarkDeliver measures one delivery of a 4 KB message: write and sync
// the file, link, sync the directory, commit.
func BenchmarkDeliver(b *testing.B) {
	s, err := Open(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.SetAccounts(context.Background(), map[string]AccountConfig{"alice": {}}, nil); err != nil {
		b.Fatal(err)
	}
	a, _ := s.Account("alice")
	msg := testMessage(strings.Repeat("x", 4000))
	for b.Loop() {
		if _, err := a.Append(context.Background(), Inbox, strings.NewReader(msg), DeliverOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// A delivery with a key already used adds nothing and returns the first
// one's result; other keys and no key deliver as always; an expired key
// delivers again.
func TestDeliverKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openMailStore(t, dir, map[string]AccountConfig{"alice": {}})
	a, err := s.Account("alice")
	if err != nil {
		t.Fatal(err)
	}
	put := func(a *Account, key string) Delivered {
		t.Helper()
		in, err := s.NewIncoming(strings.NewReader(testMessage("keyed")))
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		d, err := a.Deliver(ctx, Inbox, in, DeliverOptions{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	first := put(a, "q1/alice")
	if again := put(a, "q1/alice"); again != first {
		t.Errorf("same key: %+v, want the first delivery's %+v", again, first)
	}
	put(a, "q2/alice")
	put(a, "")
	put(a, "")
	if _, l := mailboxMessages(t, a, Inbox); len(l) != 4 {
		t.Errorf("Inbox holds %d messages, want 4: q1 once, q2, two without a key", len(l))
	}

	// Expired: as if delivered longer ago than the TTL.
	err = a.db.Write(ctx, func(tx *bstore.Tx) error {
		k := deliveryKey{Key: "q1/alice"}
		if err := tx.Get(&k); err != nil {
			return err
		}
		k.Delivered = time.Now().Add(-DeliveryKeyTTL - time.Hour)
		return tx.Update(&k)
	})
	if err != nil {
		t.Fatal(err)
	}
	if again := put(a, "q1/alice"); again == first {
		t.Errorf("expired key: no new delivery")
	}
	if _, l := mailboxMessages(t, a, Inbox); len(l) != 5 {
		t.Errorf("Inbox holds %d messages after an expired key, want 5", len(l))
	}
}
