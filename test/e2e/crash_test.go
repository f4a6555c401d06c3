package e2e

import (
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

const (
	crashMessages    = 200
	crashConnections = 4
)

// submitStream submits crashMessages messages with subjects prefix-N over
// crashConnections connections at once, and calls progress after each.
// It returns the first error.
func submitStream(srv *mtatest.Server, prefix string, progress func()) error {
	var wg sync.WaitGroup
	errs := make(chan error, crashConnections)
	per := crashMessages / crashConnections
	for g := range crashConnections {
		wg.Go(func() {
			c, err := mtatest.Dial(srv.Listeners["submission"], false, true)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if err := c.Auth(plainClient("alice@example.org", srv.Passwords["alice"])); err != nil {
				errs <- fmt.Errorf("AUTH: %w", err)
				return
			}
			for i := range per {
				subject := fmt.Sprintf("%s-%d", prefix, g*per+i)
				msg := mtatest.MakeMessage("alice@example.org", "rcpt@example.net", subject, 2000)
				if err := send(c, "alice@example.org", []string{"rcpt@example.net"}, msg); err != nil {
					errs <- fmt.Errorf("message %s: %w", subject, err)
					return
				}
				if progress != nil {
					progress()
				}
			}
			c.Quit()
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// missing returns the subjects prefix-N of the crash stream not in got, and
// the number of extra copies in got.
func missing(got map[string]int, prefix string) (lost []string, duplicates int) {
	for i := range crashMessages {
		s := fmt.Sprintf("%s-%d", prefix, i)
		switch n := got[s]; {
		case n == 0:
			lost = append(lost, s)
		case n > 1:
			duplicates += n - 1
		}
	}
	return lost, duplicates
}

// TestCrashTransportPlugin: the transport plugin killed with SIGKILL in
// the middle of a stream of messages is restarted, and every message
// arrives, at least once.
func TestCrashTransportPlugin(t *testing.T) {
	t.Parallel()
	sink := startSink(t, nil)
	srv := startServer(t, setup{MaxAttempts: 30, Transports: map[string]string{"smarthost": sink.Addr}, Rest: defaultRest + `
[[routes]]
transport = "smarthost"
`})
	oldPID, err := srv.PluginPID("transport-submission")
	if err != nil {
		t.Fatal(err)
	}

	submitted := make(chan error, 1)
	go func() { submitted <- submitStream(srv, "crashA", nil) }()
	// Kill once deliveries are well under way.
	if n := sink.WaitCount(crashMessages/5, waitLong); n < crashMessages/5 {
		t.Fatalf("sink has %d messages, want %d before the kill", n, crashMessages/5)
	}
	if err := syscall.Kill(oldPID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 plugin: %v", err)
	}
	atKill := sink.Count()
	t.Logf("killed transport-submission (pid %d) with %d of %d messages at the sink", oldPID, atKill, crashMessages)
	if atKill >= crashMessages {
		t.Fatalf("all messages had arrived before the kill")
	}
	if err := <-submitted; err != nil {
		t.Fatalf("submitting: %v", err)
	}

	var got map[string]int
	waitFor(waitLong, func() bool {
		got = subjects(sink)
		lost, _ := missing(got, "crashA")
		return len(lost) == 0
	})
	lost, dups := missing(got, "crashA")
	if len(lost) > 0 {
		t.Fatalf("%d of %d messages never arrived, e.g. %v", len(lost), crashMessages, lost[:min(len(lost), 10)])
	}
	t.Logf("all %d messages arrived; %d duplicates", crashMessages, dups)

	newPID, err := srv.PluginPID("transport-submission")
	if err != nil {
		t.Fatal(err)
	}
	if newPID == oldPID {
		t.Errorf("plugin pid still %d after the kill", oldPID)
	}
	list := mta(t, srv, "plugin", "list")
	f := strings.Fields(lineWith(list, "transport-submission"))
	// PLUGIN VERSION SERVES STATE PID RESTARTS PATH
	if len(f) < 7 || f[3] != "running" || f[5] == "0" {
		t.Errorf("plugin list after the kill, want running with restarts ≥ 1:\n%s", list)
	}
	waitQueueEmpty(t, srv)
}

// TestCrashServer: `mta serve` killed with SIGKILL after acknowledging
// messages it could not deliver yet delivers all of them after a restart.
func TestCrashServer(t *testing.T) {
	t.Parallel()
	smarthost := mtatest.FreeAddr() // Nothing listens there until the restart.
	srv := startServer(t, setup{MaxAttempts: 30, Transports: map[string]string{"smarthost": smarthost}, Rest: defaultRest + `
[[routes]]
transport = "smarthost"
`})
	if err := submitStream(srv, "crashB", nil); err != nil {
		t.Fatalf("submitting: %v", err)
	}
	srv.Kill()

	// Stopped, the queue is read directly: every message is in it.
	list := mta(t, srv, "queue", "list")
	if n := strings.Count(list, "rcpt@example.net"); n != crashMessages {
		t.Fatalf("queue lists %d messages after the kill, want %d:\n%.2000s", n, crashMessages, list)
	}

	sink, err := mtatest.StartSinkAt(smarthost, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sink.Close)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}

	var got map[string]int
	waitFor(waitLong, func() bool {
		got = subjects(sink)
		lost, _ := missing(got, "crashB")
		return len(lost) == 0
	})
	lost, dups := missing(got, "crashB")
	if len(lost) > 0 {
		t.Fatalf("%d of %d messages lost, e.g. %v", len(lost), crashMessages, lost[:min(len(lost), 10)])
	}
	if dups > 0 {
		t.Errorf("%d duplicates: nothing was delivered before the kill", dups)
	}
	waitQueueEmpty(t, srv)
}
