package store

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// crashMessage is message i of deliverer g in TestCrash, of varied sizes.
func crashMessage(g, i int) string {
	line := fmt.Sprintf("crash %d %d\r\n", g, i)
	return "Subject: " + line + "\r\n" + strings.Repeat(line, 1+(g*7+i*13)%300)
}

// TestCrash kills a process delivering messages with SIGKILL and checks,
// after reopening, that every delivery that returned nil is there exactly
// once with its exact bytes, that counts were consistent without repair,
// and that no file is left without a message. The process also delivers
// one message to two accounts at a time, and expunges messages, so that
// the kill may hit any step of linking, committing and removing files.
func TestCrash(t *testing.T) {
	accounts := map[string]AccountConfig{"alice": {}, "bob": {}}
	if dir := os.Getenv("STORE_TEST_CRASH_DIR"); dir != "" {
		crashChild(dir, accounts)
		return
	}
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestCrash$")
	cmd.Env = append(os.Environ(), "STORE_TEST_CRASH_DIR="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timeout := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	defer timeout.Stop()
	type key struct {
		account string
		uid     UID
	}
	acked := map[key]string{} // Content by account and UID.
	for sc := bufio.NewScanner(out); len(acked) < 300 && sc.Scan(); {
		var k key
		var g, i int
		if _, err := fmt.Sscanf(sc.Text(), "%s %d %d %d", &k.account, &k.uid, &g, &i); err != nil {
			t.Fatalf("child wrote %q", sc.Text())
		}
		acked[k] = crashMessage(g, i)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if len(acked) < 300 {
		t.Fatalf("child acknowledged only %d deliveries", len(acked))
	}

	ctx := context.Background()
	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var log bytes.Buffer
	if err := s.SetAccounts(ctx, accounts, slog.New(slog.NewTextHandler(&log, nil))); err != nil {
		t.Fatal(err)
	}
	// Only orphan files may need repair: a crash between linking and
	// committing, or between committing an expunge and removing files.
	repairs := 0
	for line := range strings.Lines(log.String()) {
		repairs++
		if !strings.Contains(line, "problem=\"orphan file") {
			t.Errorf("repair at open: %s", line)
		}
	}
	total := 0
	for name := range accounts {
		a := account(t, s, name)
		checkConsistent(t, a)
		_, l := mailboxMessages(t, a, Inbox)
		total += len(l)
		seen := map[string]int{}
		for _, m := range l {
			content := readMessage(t, a, m)
			seen[content]++
			if w, ok := acked[key{name, m.UID}]; ok && w != content {
				t.Errorf("%s uid %d: content %.30q, want %.30q", name, m.UID, content, w)
			}
		}
		for k, content := range acked {
			if k.account == name && seen[content] != 1 {
				t.Errorf("%s uid %d: acknowledged message found %d times", name, k.uid, seen[content])
			}
		}
		boxes, err := a.Mailboxes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var msgs int64
		for _, mb := range boxes {
			msgs += mb.Messages
		}
		if n := countFiles(t, a); int64(n) != msgs {
			t.Errorf("%s: %d files for %d messages", name, n, msgs)
		}
	}
	t.Logf("%d acknowledged, %d in Inboxes, %d orphan files removed", len(acked), total, repairs)
}

// crashChild delivers until killed, printing "account uid g i" for each
// delivery of crashMessage(g, i) that returned nil.
func crashChild(dir string, accounts map[string]AccountConfig) {
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s, err := Open(ctx, dir)
	if err != nil {
		fail(err)
	}
	if err := s.SetAccounts(ctx, accounts, nil); err != nil {
		fail(err)
	}
	alice, _ := s.Account("alice")
	bob, _ := s.Account("bob")
	var mu sync.Mutex
	ack := func(a *Account, uid UID, g, i int) {
		mu.Lock()
		fmt.Printf("%s %d %d %d\n", a.Name(), uid, g, i)
		mu.Unlock()
	}
	for g := range 4 {
		go func() {
			for i := 0; ; i++ {
				in, err := s.NewIncoming(strings.NewReader(crashMessage(g, i)))
				if err != nil {
					fail(err)
				}
				for _, a := range []*Account{alice, bob} {
					d, err := a.Deliver(ctx, Inbox, in, DeliverOptions{})
					if err != nil {
						fail(err)
					}
					ack(a, d.UID, g, i)
				}
				in.Close()
			}
		}()
	}
	// Churn in Trash: copies, moves and expunges that free files.
	go func() {
		inbox, _ := alice.Mailbox(ctx, Inbox)
		trash, _ := alice.Mailbox(ctx, "Trash")
		for {
			if _, err := alice.Copy(ctx, inbox.ID, []UID{1, 2, 3}, "Trash"); err != nil {
				fail(err)
			}
			if _, err := alice.StoreFlags(ctx, trash.ID, nil, FlagsAdd, Flags{Deleted: true}, nil); err != nil {
				fail(err)
			}
			if _, err := alice.Expunge(ctx, trash.ID, nil); err != nil {
				fail(err)
			}
		}
	}()
	select {}
}
