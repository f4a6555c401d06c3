package localdelivery

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/store"
	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

const testConfig = `
hostname = "mx.example.org"
[domains."example.org"]
[accounts.alice]
domain = "example.org"
addresses = ["alice@example.org", "al@example.org"]
[accounts.bob]
domain = "example.org"
addresses = ["bob@example.org"]
[accounts.carol]
domain = "example.org"
addresses = ["carol@example.org"]
max_storage = "1KB"
`

// setup returns local delivery for alice, bob and carol (quota 1 KB) at
// example.org, with a store of their own.
func setup(t *testing.T) (*Local, *store.Store) {
	t.Helper()
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "mta.toml"), []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	accounts := map[string]store.AccountConfig{}
	for name, a := range cfg.Accounts {
		accounts[name] = store.AccountConfig{MaxStorage: int64(a.MaxStorage)}
	}
	if err := st.SetAccounts(context.Background(), accounts, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	return New(cfg, st), st
}

// inbox returns the messages in account's Inbox, as stored.
func inbox(t *testing.T, st *store.Store, account string) []string {
	t.Helper()
	ctx := context.Background()
	acc, err := st.Account(account)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := acc.Mailbox(ctx, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := acc.Messages(ctx, mb.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	var l []string
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
		l = append(l, string(b))
	}
	return l
}

const msg = "Received: from client by mx.example.org\r\nReturn-Path: <forged@evil.example>\r\nSubject: hi\r\n\r\nbody\r\n"

func sr(s string) *io.SectionReader {
	return io.NewSectionReader(strings.NewReader(s), 0, int64(len(s)))
}

// SMTP-time delivery puts Return-Path and Delivered-To on top of each
// account's copy; a Return-Path the message had stays below ours.
func TestDeliverLocal(t *testing.T) {
	l, st := setup(t)
	errs := l.DeliverLocal(context.Background(), "sender@remote.example", []Rcpt{
		{Account: "alice", Addresses: []string{"alice@example.org", "Al@example.org", "ALICE@example.org"}},
		{Account: "bob", Addresses: []string{"bob@example.org"}},
		{Account: "nobody", Addresses: []string{"nobody@example.org"}},
	}, sr(msg))
	if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], store.ErrNotFound) {
		t.Fatalf("errors %v", errs)
	}
	want := map[string]string{
		"alice": "Return-Path: <sender@remote.example>\r\nDelivered-To: alice@example.org\r\nDelivered-To: Al@example.org\r\n" + msg,
		"bob":   "Return-Path: <sender@remote.example>\r\nDelivered-To: bob@example.org\r\n" + msg,
	}
	for account, w := range want {
		if got := inbox(t, st, account); len(got) != 1 || got[0] != w {
			t.Errorf("%s's Inbox: %q, want %q", account, got, w)
		}
	}
}

// The null reverse-path is "<>"; a local part that is not a Dot-string is
// quoted again.
func TestDeliverLocalNullSender(t *testing.T) {
	l, st := setup(t)
	if errs := l.DeliverLocal(context.Background(), "", []Rcpt{{Account: "bob", Addresses: []string{"bob@example.org"}}}, sr(msg)); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if errs := l.DeliverLocal(context.Background(), `john "j" doe@remote.example`, []Rcpt{{Account: "bob", Addresses: []string{"bob@example.org"}}}, sr(msg)); errs[0] != nil {
		t.Fatal(errs[0])
	}
	got := inbox(t, st, "bob")
	if len(got) != 2 || !strings.HasPrefix(got[0], "Return-Path: <>\r\nDelivered-To: bob@example.org\r\nReceived: ") ||
		!strings.HasPrefix(got[1], `Return-Path: <"john \"j\" doe"@remote.example>`+"\r\n") {
		t.Errorf("Inbox %q", got)
	}
}

// The local transport delivers per account, with the envelope's sender and
// recipients in the header; unknown addresses fail permanently, a full
// mailbox temporarily.
func TestTransport(t *testing.T) {
	for _, name := range []string{"section", "stream"} {
		t.Run(name, func(t *testing.T) {
			l, st := setup(t)
			big := msg + strings.Repeat("x", 2000) + "\r\n"
			var m io.Reader = sr(big)
			if name == "stream" {
				m = strings.NewReader(big)
			}
			req := &sdk.DeliverRequest{
				QueueID: "q1",
				From:    "sender@remote.example",
				Recipients: []sdk.Recipient{
					{Address: "alice@example.org"}, {Address: "nobody@example.org"}, {Address: "al@example.org"}, {Address: "carol@example.org"},
				},
				Message: m,
			}
			res, err := l.Deliver(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			want := []struct {
				status sdk.Status
				code   int
			}{{sdk.StatusDelivered, 250}, {sdk.StatusPermanent, 550}, {sdk.StatusDelivered, 250}, {sdk.StatusTemporary, 452}}
			for i, w := range want {
				r := res.Recipients[i]
				if r.Address != req.Recipients[i].Address || r.Status != w.status || r.Code != w.code || r.RemoteHost != "mx.example.org" {
					t.Errorf("recipient %d: %+v, want %v %d", i, r, w.status, w.code)
				}
			}
			wantMsg := "Return-Path: <sender@remote.example>\r\nDelivered-To: alice@example.org\r\nDelivered-To: al@example.org\r\n" + big
			if got := inbox(t, st, "alice"); len(got) != 1 || got[0] != wantMsg {
				t.Errorf("alice's Inbox %q", got)
			}
			// The queue delivering the message again (a crash before it
			// recorded the result) adds no second copy, and says delivered.
			req.Message = sr(big)
			res, err = l.Deliver(context.Background(), req)
			if err != nil || res.Recipients[0].Status != sdk.StatusDelivered || res.Recipients[2].Status != sdk.StatusDelivered {
				t.Fatalf("again: %+v, %v", res, err)
			}
			if got := inbox(t, st, "alice"); len(got) != 1 {
				t.Errorf("alice's Inbox after the same queued message again: %d messages, want 1", len(got))
			}
			// Another queued message is another delivery.
			req.QueueID, req.Message = "q2", sr(big)
			if _, err := l.Deliver(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			if got := inbox(t, st, "alice"); len(got) != 2 {
				t.Errorf("alice's Inbox after another queued message: %d messages, want 2", len(got))
			}
		})
	}
}

// fakeRoutes routes everything through "direct"; fakePlugins answers for
// the transport it was asked for.
type fakeRoutes struct{}

func (fakeRoutes) Route(account string, from, to mailaddr.Domain, attempts int) string {
	return "direct"
}

type fakePlugins struct{}

func (fakePlugins) Deliver(ctx context.Context, transport string, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	return sdk.ResultAll(req, sdk.StatusDelivered, 250, "2.0.0", "via "+transport), nil
}

// Local domains go to the local transport whatever the routes say, which
// delivers to the store; other transports are the plugins'.
func TestRouterDeliverer(t *testing.T) {
	l, st := setup(t)
	r := Router(l.cfg, fakeRoutes{})
	from, _ := mailaddr.ParseDomain("remote.example")
	local, _ := mailaddr.ParseDomain("Example.ORG")
	if got := r.Route("", from, local, 0); got != config.LocalTransport {
		t.Errorf("local domain routed to %q", got)
	}
	if got := r.Route("", from, from, 0); got != "direct" {
		t.Errorf("remote domain routed to %q", got)
	}
	d := l.Deliverer(fakePlugins{})
	res, err := d.Deliver(context.Background(), "direct", &sdk.DeliverRequest{Recipients: []sdk.Recipient{{Address: "x@remote.example"}}, Message: strings.NewReader(msg)})
	if err != nil || res.Recipients[0].Text != "via direct" {
		t.Errorf("direct: %+v, %v", res, err)
	}
	res, err = d.Deliver(context.Background(), config.LocalTransport, &sdk.DeliverRequest{Recipients: []sdk.Recipient{{Address: "bob@example.org"}}, Message: sr(msg)})
	if err != nil || res.Recipients[0].Status != sdk.StatusDelivered || len(inbox(t, st, "bob")) != 1 {
		t.Errorf("local: %+v, %v", res, err)
	}
}

func TestMailbox(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "",
		"postmaster":            "postmaster",
		"a.b+c@example.org":     "a.b+c@example.org",
		"jöhn@bücher.example":   "jöhn@bücher.example",
		"john doe@example.org":  `"john doe"@example.org`,
		`a"b\c@example.org`:     `"a\"b\\c"@example.org`,
		"a..b@example.org":      `"a..b"@example.org`,
		".a@example.org":        `".a"@example.org`,
		"a@b@example.org":       `"a@b"@example.org`,
		"a\r\nX: y@example.org": `"aX: y"@example.org`,
	} {
		if got := mailbox(in); got != want {
			t.Errorf("mailbox(%q) = %q, want %q", in, got, want)
		}
	}
}
