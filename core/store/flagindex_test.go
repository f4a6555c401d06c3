package store

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/mjl-/bstore"
)

// indexMatches fails the test unless SELECT and View.Flags, which read the
// flag index, agree with the message records of the mailbox.
func indexMatches(t *testing.T, a *Account, name string) {
	t.Helper()
	ctx := context.Background()
	mb, msgs := mailboxMessages(t, a, name)
	v, err := a.Select(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	flags, err := v.Flags(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []MessageFlags
	var uids []UID
	firstUnseen := uint32(0)
	for i, m := range msgs {
		want = append(want, m.flags())
		uids = append(uids, m.UID)
		if !m.Seen && firstUnseen == 0 {
			firstUnseen = uint32(i + 1)
		}
	}
	if !slices.EqualFunc(flags, want, func(a, b MessageFlags) bool {
		return a.UID == b.UID && a.Flags == b.Flags && a.ModSeq == b.ModSeq && slices.Equal(a.Keywords, b.Keywords)
	}) {
		t.Errorf("%s: flags from the index\n%+v\nrecords\n%+v", name, flags, want)
	}
	indexed, err := v.Indexed(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(indexed, msgs, func(a, b Message) bool {
		return a.ID == b.ID && a.MailboxID == b.MailboxID && a.UID == b.UID && a.ModSeq == b.ModSeq && a.Flags == b.Flags && a.HeaderSize == b.HeaderSize
	}) {
		t.Errorf("%s: messages from the index\n%+v\nrecords\n%+v", name, indexed, msgs)
	}
	if !slices.Equal(v.UIDs(), uids) || v.FirstUnseen() != firstUnseen || int64(v.Len()) != mb.Messages {
		t.Errorf("%s: view of %d UIDs %v, first unseen %d; records %v, first unseen %d, count %d", name, v.Len(), v.UIDs(), v.FirstUnseen(), uids, firstUnseen, mb.Messages)
	}
	if len(msgs) > 2 {
		part := []UID{msgs[len(msgs)-1].UID, msgs[1].UID, 99999}
		got, err := v.Flags(ctx, part)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].UID != msgs[1].UID || got[1].UID != msgs[len(msgs)-1].UID {
			t.Errorf("%s: Flags(%v) = %+v", name, part, got)
		}
	}
	checkConsistent(t, a)
}

// blockCount returns how many flag index blocks the named mailbox has.
func blockCount(t *testing.T, a *Account, name string) int {
	t.Helper()
	mb, err := a.Mailbox(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = a.db.Read(context.Background(), func(tx *bstore.Tx) error {
		n, err = blockQuery(tx, mb.ID).Count()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The flag index follows every change to a mailbox of more than one block:
// delivery, COPY and MOVE (also within one mailbox), STORE of flags and
// keywords across blocks, EXPUNGE that empties a block, renaming Inbox and
// deleting a mailbox.
func TestFlagIndex(t *testing.T) {
	ctx := context.Background()
	a := openTestAccount(t, AccountConfig{})
	inbox, _ := a.Mailbox(ctx, Inbox)
	for i := range 5 {
		deliver(t, a, Inbox, strings.Repeat("m", i))
	}
	// 5 → 320 messages: two and a half blocks.
	for range 6 {
		if _, err := a.Copy(ctx, inbox.ID, nil, Inbox); err != nil {
			t.Fatal(err)
		}
	}
	indexMatches(t, a, Inbox)
	if n := blockCount(t, a, Inbox); n != (320+blockLen-1)/blockLen {
		t.Errorf("%d blocks for 320 messages", n)
	}

	span := func(lo, hi UID) []UID {
		var l []UID
		for uid := lo; uid <= hi; uid++ {
			l = append(l, uid)
		}
		return l
	}
	if _, err := a.StoreFlags(ctx, inbox.ID, span(100, 300), FlagsAdd, Flags{Seen: true, Flagged: true}, []string{"$work"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.StoreFlags(ctx, inbox.ID, span(1, 20), FlagsAdd, Flags{Seen: true}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.StoreFlags(ctx, inbox.ID, span(150, 160), FlagsRemove, Flags{}, []string{"$work"}); err != nil {
		t.Fatal(err)
	}
	indexMatches(t, a, Inbox)

	// Expunge a whole block (UIDs 129–256) and a little of the next.
	if _, err := a.StoreFlags(ctx, inbox.ID, span(129, 260), FlagsAdd, Flags{Deleted: true}, nil); err != nil {
		t.Fatal(err)
	}
	if l, err := a.Expunge(ctx, inbox.ID, nil); err != nil || len(l) != 132 {
		t.Fatalf("expunged %d, %v", len(l), err)
	}
	indexMatches(t, a, Inbox)
	if n := blockCount(t, a, Inbox); n != 2 {
		t.Errorf("%d blocks after a block was expunged, want 2", n)
	}

	if _, err := a.Move(ctx, inbox.ID, span(10, 140), "Archive"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Move(ctx, inbox.ID, span(300, 310), Inbox); err != nil {
		t.Fatal(err)
	}
	indexMatches(t, a, Inbox)
	indexMatches(t, a, "Archive")

	if err := a.RenameMailbox(ctx, Inbox, "Old"); err != nil {
		t.Fatal(err)
	}
	indexMatches(t, a, Inbox)
	indexMatches(t, a, "Old")
	if n := blockCount(t, a, Inbox); n != 0 {
		t.Errorf("Inbox keeps %d blocks after its messages moved out", n)
	}
	if err := a.DeleteMailbox(ctx, "Old"); err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, a)
}

// An index that differs from the records, such as one of a store from
// before the index existed, is reported by Check and rebuilt when the
// account is opened.
func TestFlagIndexRepair(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openMailStore(t, dir, map[string]AccountConfig{"alice": {}})
	a := account(t, s, "alice")
	inbox, _ := a.Mailbox(ctx, Inbox)
	for range 3 {
		deliver(t, a, Inbox, "m")
	}
	deliver(t, a, "Archive", "a")
	deliver(t, a, "Sent", "s")
	deliver(t, a, "Sent", "t")
	if _, err := a.StoreFlags(ctx, inbox.ID, []UID{2}, FlagsAdd, Flags{Seen: true}, nil); err != nil {
		t.Fatal(err)
	}
	archive, _ := a.Mailbox(ctx, "Archive")
	sent, _ := a.Mailbox(ctx, "Sent")
	err := a.db.Write(ctx, func(tx *bstore.Tx) error {
		// Sent's as an earlier version wrote it: 13-byte entries.
		b, err := blockQuery(tx, sent.ID).Get()
		if err != nil {
			return err
		}
		var old []byte
		for i := range b.len() {
			old = append(old, b.Entries[i*entrySize:i*entrySize+13]...)
		}
		b.Entries = old
		if err := tx.Update(&b); err != nil {
			return err
		}
		if _, err := blockQuery(tx, inbox.ID).Delete(); err != nil {
			return err
		}
		b, err = blockQuery(tx, archive.ID).Get()
		if err != nil {
			return err
		}
		b.Entries[4] ^= bitFlagged
		return tx.Update(&b)
	})
	if err != nil {
		t.Fatal(err)
	}
	problems, err := a.Check(ctx)
	if err != nil || len(problems) != 3 || slices.ContainsFunc(problems, func(p string) bool { return !strings.Contains(p, "flag index") }) {
		t.Fatalf("Check = %q, %v; want the flag index of Inbox, Archive and Sent", problems, err)
	}
	s.Close()

	var log bytes.Buffer
	s, err = Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetAccounts(ctx, map[string]AccountConfig{"alice": {}}, slog.New(slog.NewTextHandler(&log, nil))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "flag index") {
		t.Errorf("repair not logged: %q", log.String())
	}
	a = account(t, s, "alice")
	indexMatches(t, a, Inbox)
	indexMatches(t, a, "Archive")
	indexMatches(t, a, "Sent")
}
