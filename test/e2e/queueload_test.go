package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// A crash while the server starts (its plugins starting, its queue
// opening and loading the messages due) loses and duplicates nothing:
// after kill -9 at points spread over a start, again and again, the queue
// holds the same messages, some held, some deferred after a failed
// attempt, some due again at every start, being read and attempted as the
// kills come.
func TestKillDuringStart(t *testing.T) {
	t.Parallel()
	const n, conns = 1000, 4
	sink := startSink(t, nil)
	// Retries of the deferred come after 2.25 s, 4.5 s, ...: during the kills, but
	// no delay notice (after the fifth) before the test ends.
	srv := startServer(t, setup{BackoffScale: 0.005, Transports: map[string]string{"smarthost": sink.Addr, "down": mtatest.FreeAddr()}, Rest: defaultRest + `
[[routes]]
to_domains = ["down.example"]
transport = "down"

[[routes]]
transport = "smarthost"
`})
	if out, errOut, code := srv.MTA("", []string{"queue", "holdrule", "add", "-to-domain", "remote.example"}); code != 0 {
		t.Fatalf("holdrule add: exit %d\n%s%s", code, out, errOut)
	}
	var wg sync.WaitGroup
	for k := range conns {
		c := dialAuth(t, srv.Listeners["submission"], false, "alice@example.org", srv.Passwords["alice"])
		wg.Go(func() {
			defer c.Quit()
			for i := k; i < n; i += conns {
				to := fmt.Sprintf("r%d@remote.example", i) // Held.
				if i%2 == 1 {
					to = fmt.Sprintf("r%d@down.example", i) // Deferred.
				}
				if err := send(c, "alice@example.org", []string{to}, []byte("Subject: kept\r\n\r\nx\r\n")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	ids := func() []string {
		t.Helper()
		var l []struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(mta(t, srv, "queue", "list", "-json")), &l); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range l {
			ids = append(ids, m.ID)
		}
		slices.Sort(ids)
		return ids
	}
	want := ids()
	if len(want) != n || len(slices.Compact(slices.Clone(want))) != n {
		t.Fatalf("%d messages queued (distinct: %d), want %d", len(want), len(slices.Compact(slices.Clone(want))), n)
	}

	// How long a start takes with this queue, then kills spread over it.
	srv.Kill()
	start := time.Now()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	full := time.Since(start)
	srv.Kill()
	early, loading := 0, 0 // Kills before it listened; of them, after its plugins started but before its queue was loaded.
	for i := range 10 {
		listening, err := srv.KillDuringStart(full * time.Duration(i) / 10)
		if err != nil {
			t.Fatal(err)
		}
		if !listening {
			early++
			if log := srv.Log(); strings.Contains(log, "plugin started") && !strings.Contains(log, "queue opened") {
				loading++
			}
		}
	}
	if early == 0 {
		t.Errorf("no kill came before the server listened (a start takes %v)", full)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if got := ids(); !slices.Equal(got, want) {
		t.Fatalf("after kills during start: %d messages, want the same %d", len(got), len(want))
	}
	for _, state := range []string{"held", "pending"} {
		var l []json.RawMessage
		if err := json.Unmarshal([]byte(mta(t, srv, "queue", "list", "-json", "-state", state)), &l); err != nil {
			t.Fatal(err)
		}
		if len(l) != n/2 {
			t.Errorf("%d messages %s, want %d", len(l), state, n/2)
		}
	}
	if sink.Count() != 0 {
		t.Errorf("%d held messages were delivered", sink.Count())
	}
	t.Logf("start with %d queued messages: %v; %d of 10 kills came before it listened, %d of them while the queue was loading", n, full, early, loading)
}
