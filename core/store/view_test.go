package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Two watchers get the same events, in commit order, while changes come
// from several goroutines.
func TestWatchersInOrder(t *testing.T) {
	ctx := context.Background()
	a := openTestAccount(t, AccountConfig{})
	w1, w2 := a.Watch(), a.Watch()
	defer w1.Close()
	defer w2.Close()
	inbox, _ := a.Mailbox(ctx, Inbox)

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				d, err := a.Append(ctx, Inbox, strings.NewReader(testMessage("w")), DeliverOptions{})
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := a.StoreFlags(ctx, inbox.ID, []UID{d.UID}, FlagsAdd, Flags{Seen: true}, nil); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		if _, err := a.CreateMailbox(ctx, "New", ""); err != nil {
			t.Error(err)
		}
		if err := a.RenameMailbox(ctx, "New", "Newer"); err != nil {
			t.Error(err)
		}
		if err := a.DeleteMailbox(ctx, "Newer"); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()

	e1, e2 := w1.Events(), w2.Events()
	if len(e1) != 83 {
		t.Fatalf("%d events, want 83", len(e1))
	}
	if len(e1) != len(e2) {
		t.Fatalf("watchers got %d and %d events", len(e1), len(e2))
	}
	var added []UID
	kinds := map[EventKind]int{}
	for i := range e1 {
		if e1[i].Kind != e2[i].Kind || e1[i].ModSeq != e2[i].ModSeq || !slices.Equal(e1[i].UIDs, e2[i].UIDs) {
			t.Fatalf("event %d differs: %+v, %+v", i, e1[i], e2[i])
		}
		if i > 0 && e1[i].ModSeq <= e1[i-1].ModSeq {
			t.Errorf("event %d: modseq %d after %d", i, e1[i].ModSeq, e1[i-1].ModSeq)
		}
		kinds[e1[i].Kind]++
		if e1[i].Kind == MessagesAdded {
			added = append(added, e1[i].UIDs...)
		}
	}
	// Commit order is UID order.
	if want := kinds[MessagesAdded]; len(added) != want || !slices.IsSorted(added) || added[0] != 1 || added[len(added)-1] != 40 {
		t.Errorf("added UIDs %v", added)
	}
	want := map[EventKind]int{MessagesAdded: 40, FlagsChanged: 40, MailboxCreated: 1, MailboxRenamed: 1, MailboxDeleted: 1}
	if !equalMaps(kinds, want) {
		t.Errorf("event kinds %v, want %v", kinds, want)
	}
	select {
	case <-w1.Notify():
	default:
		t.Errorf("no notification")
	}

	// A closed watcher gets nothing more.
	w2.Close()
	deliver(t, a, Inbox, "after close")
	if l := w2.Events(); len(l) != 0 {
		t.Errorf("closed watcher got %d events", len(l))
	}
	if l := w1.Events(); len(l) != 1 || l[0].Kind != MessagesAdded {
		t.Errorf("watcher got %+v", l)
	}
}

// A delivery reaches an idling view at once (IMAP IDLE, RFC 2177).
func TestViewIdle(t *testing.T) {
	ctx := context.Background()
	a := openTestAccount(t, AccountConfig{})
	v, err := a.Select(ctx, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	got := make(chan []Update, 1)
	go func() {
		for {
			<-v.Notify()
			if ups := v.Poll(true); len(ups) > 0 {
				got <- ups
				return
			}
		}
	}()
	start := time.Now()
	deliver(t, a, "Junk", "elsewhere") // Another mailbox: nothing to tell.
	deliver(t, a, Inbox, "idle")
	select {
	case ups := <-got:
		if len(ups) != 1 || ups[0].Kind != UpdateExists || ups[0].Exists != 1 {
			t.Errorf("updates %+v", ups)
		}
		t.Logf("notified after %v", time.Since(start))
	case <-time.After(time.Second):
		t.Fatal("no update within a second")
	}
}

func TestView(t *testing.T) {
	ctx := context.Background()
	a := openTestAccount(t, AccountConfig{})
	for range 3 {
		deliver(t, a, Inbox, "v")
	}
	inbox, _ := a.Mailbox(ctx, Inbox)
	a.StoreFlags(ctx, inbox.ID, []UID{1}, FlagsAdd, Flags{Seen: true}, nil)
	v, err := a.Select(ctx, Inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if v.Len() != 3 || v.FirstUnseen() != 2 || v.Mailbox().Messages != 3 || v.Mailbox().UIDNext != 4 {
		t.Fatalf("view: len %d, first unseen %d, mailbox %+v", v.Len(), v.FirstUnseen(), v.Mailbox())
	}
	if v.UID(2) != 2 || v.Seq(3) != 3 || v.UID(4) != 0 || v.Seq(9) != 0 {
		t.Errorf("UID/Seq mapping wrong")
	}
	poll := func(allowExpunge bool, want ...Update) {
		t.Helper()
		got := v.Poll(allowExpunge)
		if len(got) != len(want) {
			t.Fatalf("Poll(%v) = %+v, want %+v", allowExpunge, got, want)
		}
		for i := range got {
			if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
				t.Fatalf("Poll(%v) = %+v, want %+v", allowExpunge, got, want)
			}
		}
	}
	poll(true)

	// Others' changes: new message, flags, new keyword, expunge.
	deliver(t, a, Inbox, "v4")
	poll(false, Update{Kind: UpdateExists, Exists: 4})
	a.StoreFlags(ctx, inbox.ID, []UID{2}, FlagsAdd, Flags{Deleted: true}, []string{"Todo"})
	poll(false,
		Update{Kind: UpdateMailboxFlags, Keywords: []string{"todo"}},
		Update{Kind: UpdateFlags, Seq: 2, UID: 2, Flags: Flags{Deleted: true}, Keywords: []string{"todo"}})
	a.Expunge(ctx, inbox.ID, nil)
	deliver(t, a, Inbox, "v5")
	poll(false) // No EXPUNGE now, and nothing after it either.
	if v.Len() != 4 || v.UID(2) != 2 {
		t.Errorf("view changed before expunge allowed: %v", v.UIDs())
	}
	poll(true, Update{Kind: UpdateExpunge, Seq: 2}, Update{Kind: UpdateExists, Exists: 4})
	if !slices.Equal(v.UIDs(), []UID{1, 3, 4, 5}) {
		t.Errorf("view UIDs %v", v.UIDs())
	}

	// Own changes are not reported back; stale flags of others dropped.
	a.StoreFlags(ctx, inbox.ID, []UID{4}, FlagsAdd, Flags{Flagged: true}, nil) // Others, not yet polled.
	res, err := v.StoreFlags(ctx, []UID{4, 99}, FlagsAdd, Flags{Seen: true}, nil)
	if err != nil || len(res) != 1 || res[0].Flags != (Flags{Seen: true, Flagged: true}) {
		t.Fatalf("StoreFlags = %+v, %v", res, err)
	}
	a.StoreFlags(ctx, inbox.ID, []UID{5}, FlagsAdd, Flags{Answered: true}, nil) // Others, after.
	poll(true, Update{Kind: UpdateFlags, Seq: 4, UID: 5, Flags: Flags{Answered: true}})

	// Own expunge: sequence numbers as the client sees them, in order.
	if _, err := v.StoreFlags(ctx, []UID{1, 4, 5}, FlagsAdd, Flags{Deleted: true}, nil); err != nil {
		t.Fatal(err)
	}
	deliver(t, a, Inbox, "v6") // Not in the view yet: not expunged by the view.
	l, _ := a.Messages(ctx, inbox.ID, []UID{6})
	a.StoreFlags(ctx, inbox.ID, []UID{l[0].UID}, FlagsAdd, Flags{Deleted: true}, nil)
	seqs, err := v.Expunge(ctx, nil)
	if err != nil || !slices.Equal(seqs, []uint32{1, 2, 2}) {
		t.Errorf("Expunge = %v, %v; want [1 2 2]", seqs, err)
	}
	poll(true, Update{Kind: UpdateExists, Exists: 2}, Update{Kind: UpdateFlags, Seq: 2, UID: 6, Flags: Flags{Deleted: true}})
	if !slices.Equal(v.UIDs(), []UID{3, 6}) {
		t.Errorf("view UIDs %v", v.UIDs())
	}

	// Own move.
	res2, seqs, err := v.Move(ctx, []UID{6}, "Archive")
	if err != nil || !slices.Equal(seqs, []uint32{2}) || !slices.Equal(res2.Dest, []UID{1}) {
		t.Errorf("Move = %+v, %v, %v", res2, seqs, err)
	}
	cp, err := v.Copy(ctx, []UID{3, 6}, "Archive")
	if err != nil || !slices.Equal(cp.Source, []UID{3}) || !slices.Equal(cp.Dest, []UID{2}) {
		t.Errorf("Copy = %+v, %v", cp, err)
	}
	msgs, err := v.Messages(ctx, nil)
	if err != nil || !slices.Equal(uidsOf(msgs), []UID{3}) {
		t.Errorf("Messages = %v, %v", uidsOf(msgs), err)
	}
	poll(true)

	// Rename and delete of the selected mailbox.
	w, err := a.Select(ctx, "Archive")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := a.RenameMailbox(ctx, "Archive", "Old"); err != nil {
		t.Fatal(err)
	}
	if ups := w.Poll(true); len(ups) != 0 || w.Mailbox().Name != "Old" {
		t.Errorf("after rename: %+v, name %q", ups, w.Mailbox().Name)
	}
	if err := a.DeleteMailbox(ctx, "Old"); err != nil {
		t.Fatal(err)
	}
	if ups := w.Poll(true); len(ups) != 1 || ups[0].Kind != UpdateMailboxDeleted {
		t.Errorf("after delete: %+v", ups)
	}
	checkConsistent(t, a)
}

// A view selected while messages arrive ends up with exactly the mailbox's
// messages: none lost between snapshot and watcher, none twice.
func TestViewSnapshot(t *testing.T) {
	ctx := context.Background()
	a := openTestAccount(t, AccountConfig{})
	inbox, _ := a.Mailbox(ctx, Inbox)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 60 {
			d, err := a.Append(ctx, Inbox, strings.NewReader(testMessage("s")), DeliverOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			if i%3 == 0 {
				a.StoreFlags(ctx, inbox.ID, []UID{d.UID}, FlagsAdd, Flags{Deleted: true}, nil)
				a.Expunge(ctx, inbox.ID, nil)
			}
		}
	}()
	var views []*View
	var clients []uint32 // What each view's client believes is the message count.
	for range 20 {
		v, err := a.Select(ctx, Inbox)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		views = append(views, v)
		clients = append(clients, v.Len())
		time.Sleep(time.Millisecond)
	}
	<-done
	_, l := mailboxMessages(t, a, Inbox)
	for i, v := range views {
		for _, u := range v.Poll(true) {
			switch u.Kind {
			case UpdateExists:
				if u.Exists < clients[i] {
					t.Errorf("view %d: EXISTS %d after %d", i, u.Exists, clients[i])
				}
				clients[i] = u.Exists
			case UpdateExpunge:
				if u.Seq == 0 || u.Seq > clients[i] {
					t.Errorf("view %d: EXPUNGE %d of %d", i, u.Seq, clients[i])
				}
				clients[i]--
			}
		}
		if clients[i] != v.Len() {
			t.Errorf("view %d: client counts %d, view has %d", i, clients[i], v.Len())
		}
		if !slices.Equal(v.UIDs(), uidsOf(l)) {
			t.Errorf("view %d: UIDs %v, mailbox %v", i, v.UIDs(), uidsOf(l))
		}
	}
}
