package imapd

import (
	"context"
	"fmt"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/store"
)

// benchMailbox fills alice's Inbox with 10 × 2^doublings messages: ten
// delivered, then copied onto themselves.
func benchMailbox(b testing.TB, ts *testServer, doublings int) int {
	for i := range 10 {
		ts.deliver(b, "alice", "Inbox", fmt.Sprintf("From: a%d@example.org\r\nTo: alice@example.org\r\nSubject: message %d about things\r\nDate: Wed, 10 Jan 2024 12:00:00 +0000\r\nMessage-ID: <%d@example.org>\r\n\r\nbody %d\r\n", i, i, i, i), store.DeliverOptions{})
	}
	a := ts.account(b, "alice")
	inbox, err := a.Mailbox(context.Background(), store.Inbox)
	if err != nil {
		b.Fatal(err)
	}
	for range doublings {
		if _, err := a.Copy(context.Background(), inbox.ID, nil, store.Inbox); err != nil {
			b.Fatal(err)
		}
	}
	return 10 << doublings
}

// BenchmarkSearchSubject measures UID SEARCH SUBJECT without a match in a
// mailbox of 10,240 messages.
func BenchmarkSearchSubject(b *testing.B) {
	ts := startServer(b, config.KindIMAPS, nil)
	benchMailbox(b, ts, 10)
	c := ts.client(b, "alice", "secret", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		d, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "zqxj-nomatch"}}}, nil).Wait()
		if err != nil || len(d.AllUIDs()) != 0 {
			b.Fatal(d, err)
		}
	}
}

// BenchmarkSearchUnseen is a SEARCH of flags alone, as clients send to
// count new mail, over the mailbox of BenchmarkSearchSubject.
func BenchmarkSearchUnseen(b *testing.B) {
	ts := startServer(b, config.KindIMAPS, nil)
	n := benchMailbox(b, ts, 10)
	c := ts.client(b, "alice", "secret", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		d, err := c.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen, imap.FlagDeleted}}, nil).Wait()
		if err != nil || len(d.AllUIDs()) != n {
			b.Fatal(len(d.AllUIDs()), n, err)
		}
	}
}
