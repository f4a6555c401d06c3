package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/core/store"
	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// inbox opens the store of a stopped server and returns the Message-IDs in
// account's Inbox, after checking the account's counts.
func inbox(t *testing.T, srv *mtatest.Server, accounts map[string]store.AccountConfig, account string) []string {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(srv.Dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.SetAccounts(ctx, accounts, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	acc, err := st.Account(account)
	if err != nil {
		t.Fatal(err)
	}
	if problems, err := acc.Check(ctx); err != nil || len(problems) > 0 {
		t.Fatalf("account %s inconsistent: %v %v", account, problems, err)
	}
	mb, err := acc.Mailbox(ctx, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := acc.Messages(ctx, mb.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if int(mb.Counts.Messages) != len(msgs) {
		t.Fatalf("Inbox counts %d messages, holds %d", mb.Counts.Messages, len(msgs))
	}
	var ids []string
	for _, m := range msgs {
		c, err := acc.OpenMessage(m)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		pm, err := mail.ReadMessage(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("message in Inbox unreadable: %v", err)
		}
		ids = append(ids, pm.Header.Get("Message-Id"))
	}
	return ids
}

func TestLocalDeliveryOverMX(t *testing.T) {
	srv := startServer(t, setup{Rest: defaultRest + `
[accounts.carol]
domain = "example.org"
addresses = ["carol@example.org"]
max_storage = "10KB"
`})
	c, err := mtatest.Dial(srv.Listeners["mx"], false, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := func(id string, size int) []byte {
		return mtatest.MakeMessage("someone@remote.example", "bob@example.org", id, size)
	}
	if err := send(c, "someone@remote.example", []string{"bob@example.org", "Alice@EXAMPLE.org"}, msg("both", 1000)); err != nil {
		t.Fatalf("to two local accounts: %v", err)
	}
	for _, tc := range []struct {
		name string
		rcpt string
		size int
		want string
	}{
		{"unknown user", "nobody@example.org", 100, "550 5.1.1"},
		{"first fits the quota", "carol@example.org", 6000, ""},
		{"second exceeds it", "carol@example.org", 6000, "452 4.2.2"},
	} {
		err := send(c, "someone@remote.example", []string{tc.rcpt}, msg(tc.name, tc.size))
		got := ""
		if se, ok := asSMTPError(err); ok {
			got = fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
		} else if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got != tc.want {
			t.Errorf("%s: got %q (%v), want %q", tc.name, got, err, tc.want)
		}
		c.Reset()
	}
	// Announced with SIZE, the refusal comes at RCPT.
	if err := c.Mail("someone@remote.example", &smtp.MailOptions{Size: 6000}); err != nil {
		t.Fatal(err)
	}
	if se, ok := asSMTPError(c.Rcpt("carol@example.org", nil)); !ok || se.Code != 452 {
		t.Errorf("RCPT over quota with SIZE: %v, want 452", se)
	}
	c.Quit()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	accounts := map[string]store.AccountConfig{"alice": {}, "bob": {}, "carol": {MaxStorage: 10 << 10}}
	for account, want := range map[string]int{"alice": 1, "bob": 1, "carol": 1} {
		if ids := inbox(t, srv, accounts, account); len(ids) != want {
			t.Errorf("%s's Inbox holds %v, want %d messages", account, ids, want)
		}
	}
	srv.Start() // For the cleanup's Stop.
}

// kill -9 of the server during 200 inbound deliveries: after a restart,
// every message that got 250 is in the Inbox exactly once.
func TestLocalDeliveryCrash(t *testing.T) {
	srv := startServer(t, setup{})
	var acked sync.Map // Message-ID → true.
	var n atomic.Int64
	var wg sync.WaitGroup
	killNow := make(chan struct{})
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := mtatest.Dial(srv.Listeners["mx"], false, false)
			if err != nil {
				return
			}
			defer c.Close()
			for i := range 50 {
				m := mtatest.MakeMessage("someone@remote.example", "bob@example.org", fmt.Sprintf("crash-%d-%d", g, i), 3000)
				if send(c, "someone@remote.example", []string{"bob@example.org"}, m) != nil {
					return // The server is gone.
				}
				pm, _ := mail.ReadMessage(bytes.NewReader(m))
				acked.Store(pm.Header.Get("Message-Id"), true)
				if n.Add(1) == 80 {
					close(killNow)
				}
			}
		}()
	}
	select {
	case <-killNow:
	case <-time.After(waitLong):
		t.Fatalf("only %d messages acknowledged", n.Load())
	}
	srv.Kill()
	wg.Wait()
	t.Logf("%d acknowledged before kill -9", n.Load())
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	ids := inbox(t, srv, map[string]store.AccountConfig{"alice": {}, "bob": {}}, "bob")
	seen := map[string]int{}
	for _, id := range ids {
		seen[id]++
	}
	acked.Range(func(k, _ any) bool {
		if seen[k.(string)] != 1 {
			t.Errorf("acknowledged message %s is in the Inbox %d times", k, seen[k.(string)])
		}
		return true
	})
	for id, c := range seen {
		if c > 1 {
			t.Errorf("message %s delivered %d times", id, c)
		}
	}
	srv.Start() // For the cleanup's Stop.
}

// asSMTPError returns the SMTP reply in err, if any.
func asSMTPError(err error) (*smtp.SMTPError, bool) {
	var se *smtp.SMTPError
	ok := errors.As(err, &se)
	return se, ok
}
