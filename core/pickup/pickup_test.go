package pickup

import (
	"context"
	"errors"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/core/queue"
	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// serve starts a pickup server on a real queue; trusted says whether the
// test's own user may name any sender.
// The first message each queue delivers, as delivered.
var delivered = make(chan []byte, 10)

// deliverer delivers every recipient, sending the message to delivered.
type deliverer struct{}

func (deliverer) Route(account string, from, to mailaddr.Domain, attempts int) string { return "t" }

func (deliverer) Deliver(ctx context.Context, transport string, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	data, err := io.ReadAll(req.Message)
	if err != nil {
		return nil, err
	}
	delivered <- data
	res := &sdk.DeliverResult{}
	for _, r := range req.Recipients {
		res.Recipients = append(res.Recipients, sdk.RecipientResult{Address: r.Address, Status: sdk.StatusDelivered, Code: 250})
	}
	return res, nil
}

func serve(t *testing.T, trusted bool) (string, *queue.Queue) {
	t.Helper()
	dir := t.TempDir()
	q, err := queue.Open(context.Background(), filepath.Join(dir, "queue"), queue.Options{Router: deliverer{}, Deliverer: deliverer{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	path := SocketPath(dir)
	s, err := Listen(path, Config{Hostname: "mail.example.org", MaxMessageSize: 1 << 20, Queue: q,
		AccountOf: func(a mailaddr.Address) (string, bool) { return "alice", a.Key() == "alice@example.org" }})
	if err != nil {
		t.Fatal(err)
	}
	if !trusted {
		s.trusted = map[uint32]bool{}
	}
	t.Cleanup(func() { s.Close() })
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o666 {
		t.Fatalf("socket mode: %v %v", fi, err)
	}
	return path, q
}

func me(t *testing.T) string {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

const msg = "Subject: hello\r\n\r\nbody\r\n"

func TestSubmit(t *testing.T) {
	path, q := serve(t, true)
	ctx := context.Background()
	id, err := Submit(ctx, path, Request{From: "alice@example.org", To: []string{"bob@remote.example"}, Message: []byte(msg)})
	if err != nil || id == "" {
		t.Fatalf("submit: %q %v", id, err)
	}
	// Without a sender: the user's own address.
	if _, err := Submit(ctx, path, Request{To: []string{"bob@remote.example"}, Message: []byte(msg)}); err != nil {
		t.Fatal(err)
	}
	msgs, err := q.List(ctx)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("queued %d, %v", len(msgs), err)
	}
	q.Start(ctx)
	if msgs[0].ID != id || msgs[0].From != "alice@example.org" || msgs[0].Recipients[0].Address != "bob@remote.example" {
		t.Errorf("queued %+v", msgs[0])
	}
	if want := me(t) + "@mail.example.org"; msgs[1].From != want {
		t.Errorf("default sender %q, want %q", msgs[1].From, want)
	}
	var data []byte
	select {
	case data = <-delivered:
	case <-time.After(10 * time.Second):
		t.Fatal("not delivered")
	}
	if !strings.HasPrefix(string(data), "Received: by mail.example.org (Switchyard, from userid "+strconv.Itoa(os.Getuid())+");\r\n\t") || !strings.HasSuffix(string(data), msg) {
		t.Errorf("stored message:\n%s", data)
	}
}

func TestSubmitRefused(t *testing.T) {
	path, q := serve(t, false)
	ctx := context.Background()
	own := me(t) + "@mail.example.org"
	for _, tc := range []struct {
		name string
		req  Request
		want string
	}{
		{"another sender, untrusted", Request{From: "alice@example.org", To: []string{"b@r.example"}, Message: []byte(msg)}, "may send only as " + own},
		{"no recipient", Request{Message: []byte(msg)}, "no recipients"},
		{"bad recipient", Request{To: []string{"b r@x"}, Message: []byte(msg)}, "recipient"},
		{"recipient without domain", Request{To: []string{"bob"}, Message: []byte(msg)}, "want localpart@domain"},
		{"bare LF", Request{To: []string{"b@r.example"}, Message: []byte("Subject: x\n\ny\n")}, "bare CR or LF"},
		{"NUL", Request{To: []string{"b@r.example"}, Message: []byte("Subject: x\r\n\r\n\x00\r\n")}, "NUL"},
		{"too large", Request{To: []string{"b@r.example"}, Message: []byte(strings.Repeat("x", 2<<20))}, "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Submit(ctx, path, tc.req)
			var ue *UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a UsageError with %q", err, tc.want)
			}
		})
	}
	// Its own address is fine.
	if _, err := Submit(ctx, path, Request{From: own, To: []string{"b@r.example"}, Message: []byte(msg)}); err != nil {
		t.Fatal(err)
	}
	if msgs, _ := q.List(ctx); len(msgs) != 1 {
		t.Fatalf("%d queued, want 1", len(msgs))
	}
}

func TestNotRunning(t *testing.T) {
	if _, err := Submit(context.Background(), filepath.Join(t.TempDir(), "submit.sock"), Request{}); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("got %v", err)
	}
}
