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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/core/store"
	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// inbox opens the store of a stopped server and returns the messages in
// account's Inbox, after checking the account's counts.
func inbox(t *testing.T, srv *mtatest.Server, accounts map[string]store.AccountConfig, account string) []*mail.Message {
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
	var l []*mail.Message
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
		l = append(l, pm)
	}
	return l
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
		if msgs := inbox(t, srv, accounts, account); len(msgs) != want {
			t.Errorf("%s's Inbox holds %d messages, want %d", account, len(msgs), want)
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
	seen := map[string]int{}
	for _, m := range inbox(t, srv, map[string]store.AccountConfig{"alice": {}, "bob": {}}, "bob") {
		seen[m.Header.Get("Message-Id")]++
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

// A recipient that keeps failing temporarily gets the sender a delay DSN
// after the 5th attempt and a failure DSN after the last, both in the
// sender's Inbox and threaded with the original; a 550 gets a failure DSN at
// once; the null sender gets none.
func TestDSN(t *testing.T) {
	sink := startSink(t, func(rcpt string) *smtp.SMTPError {
		switch rcpt {
		case "later@remote.example":
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		case "gone@remote.example":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	})
	srv := startServer(t, setup{
		MaxAttempts:   6,
		RelayNetworks: []string{"127.0.0.0/8"},
		Transports:    map[string]string{"smarthost": sink.Addr},
		Rest:          defaultRest + "[[routes]]\ntransport = \"smarthost\"\n",
	})
	orig := mtatest.MakeMessage("alice@example.org", "later@remote.example", "dsn-test", 2000)
	origID := mustHeader(t, orig, "Message-Id")
	submit(t, srv, "alice@example.org", []string{"later@remote.example", "gone@remote.example"}, orig)
	// From the null sender, through relay_networks: never a DSN.
	c, err := mtatest.Dial(srv.Listeners["mx"], false, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := send(c, "", []string{"gone@remote.example"}, mtatest.MakeMessage("", "gone@remote.example", "bounce", 500)); err != nil {
		t.Fatal(err)
	}
	c.Quit()

	if !waitFor(waitLong, func() bool { return sink.Attempts("later@remote.example") >= 6 }) {
		t.Fatalf("%d attempts of later@remote.example, want 6", sink.Attempts("later@remote.example"))
	}
	waitQueueEmpty(t, srv)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, m := range inbox(t, srv, map[string]store.AccountConfig{"alice": {}, "bob": {}}, "alice") {
		ct := m.Header.Get("Content-Type")
		if !strings.Contains(ct, "multipart/report") || !strings.Contains(ct, "delivery-status") {
			t.Errorf("DSN content type %q", ct)
		}
		if m.Header.Get("In-Reply-To") != origID {
			t.Errorf("DSN In-Reply-To %q, want %q", m.Header.Get("In-Reply-To"), origID)
		}
		body, _ := io.ReadAll(m.Body)
		switch {
		case strings.Contains(string(body), "Action: delayed") && strings.Contains(string(body), "later@remote.example"):
			got["delay later"]++
		case strings.Contains(string(body), "Action: failed") && strings.Contains(string(body), "Final-Recipient: rfc822; later@remote.example"):
			got["failure later"]++
		case strings.Contains(string(body), "Action: failed") && strings.Contains(string(body), "Final-Recipient: rfc822; gone@remote.example"):
			got["failure gone"]++
		default:
			t.Errorf("unexpected message in Inbox:\n%s", body)
		}
	}
	want := map[string]int{"delay later": 1, "failure later": 1, "failure gone": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("DSNs in alice's Inbox: %v, want %v", got, want)
	}
	if strings.Count(srv.Log(), "DSN queued") != 3 {
		t.Errorf("log shows %d DSNs queued, want 3", strings.Count(srv.Log(), "DSN queued"))
	}
	srv.Start() // For the cleanup's Stop.
}

func mustHeader(t *testing.T, msg []byte, key string) string {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return m.Header.Get(key)
}
