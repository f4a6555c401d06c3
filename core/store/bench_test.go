package store

import (
	"context"
	"testing"
	"time"

	"github.com/mjl-/bstore"
)

// fillRecords inserts n message records into a's Inbox, and their flag
// index, in one transaction, without files: enough for what reads records
// and the index only (SELECT, FETCH FLAGS).
func fillRecords(b *testing.B, a *Account, n int) Mailbox {
	ctx := context.Background()
	var inbox Mailbox
	err := a.db.Write(ctx, func(tx *bstore.Tx) error {
		var err error
		if inbox, err = mailboxByName(tx, Inbox); err != nil {
			return err
		}
		entries := make([]indexEntry, 0, n)
		for i := range n {
			m := Message{MailboxID: inbox.ID, UID: inbox.UIDNext, ModSeq: 1, Flags: Flags{Seen: i%3 != 0}, Received: time.Now().Round(0), Size: 4096, HeaderSize: 400}
			if err := tx.Insert(&m); err != nil {
				return err
			}
			inbox.UIDNext++
			inbox.Counts.add(m, 1)
			entries = append(entries, m.entry())
		}
		if err := indexAdd(tx, inbox.ID, entries); err != nil {
			return err
		}
		return tx.Update(&inbox)
	})
	if err != nil {
		b.Fatal(err)
	}
	return inbox
}

// BenchmarkSelect50k measures SELECT of a mailbox of 50,000 messages.
func BenchmarkSelect50k(b *testing.B) {
	a := openTestAccount(b, AccountConfig{})
	fillRecords(b, a, 50000)
	for b.Loop() {
		v, err := a.Select(context.Background(), Inbox)
		if err != nil {
			b.Fatal(err)
		}
		if v.Len() != 50000 || v.FirstUnseen() != 1 {
			b.Fatalf("%d messages, first unseen %d", v.Len(), v.FirstUnseen())
		}
		v.Close()
	}
}

// BenchmarkMessages50k measures reading the records of a mailbox of
// 50,000 messages, as FETCH of anything but FLAGS and UID does.
func BenchmarkMessages50k(b *testing.B) {
	a := openTestAccount(b, AccountConfig{})
	inbox := fillRecords(b, a, 50000)
	for b.Loop() {
		if _, err := a.Messages(context.Background(), inbox.ID, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFlags50k measures reading the flags of a mailbox of 50,000
// messages from the flag index, as FETCH 1:* (FLAGS UID) does.
func BenchmarkFlags50k(b *testing.B) {
	a := openTestAccount(b, AccountConfig{})
	fillRecords(b, a, 50000)
	v, err := a.Select(context.Background(), Inbox)
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	for b.Loop() {
		if l, err := v.Flags(context.Background(), nil); err != nil || len(l) != 50000 {
			b.Fatal(len(l), err)
		}
	}
}
