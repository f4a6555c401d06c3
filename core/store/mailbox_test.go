package store

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// openMailStore opens a store in dir serving accounts with cfg.
func openMailStore(t testing.TB, dir string, cfg map[string]AccountConfig) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.SetAccounts(context.Background(), cfg, slog.New(slog.NewTextHandler(testWriter{t}, nil))); err != nil {
		t.Fatal(err)
	}
	return s
}

// testWriter sends log lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// openTestAccount opens a store in a new directory with one account, alice.
func openTestAccount(t testing.TB, cfg AccountConfig) *Account {
	t.Helper()
	s := openMailStore(t, t.TempDir(), map[string]AccountConfig{"alice": cfg})
	return account(t, s, "alice")
}

func account(t testing.TB, s *Store, name string) *Account {
	t.Helper()
	a, err := s.Account(name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// checkConsistent fails the test if Check finds problems.
func checkConsistent(t *testing.T, a *Account) {
	t.Helper()
	problems, err := a.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("inconsistent: %s", p)
	}
}

func mailboxNames(t *testing.T, a *Account) []string {
	t.Helper()
	l, err := a.Mailboxes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mb := range l {
		names = append(names, mb.Name)
	}
	return names
}

func TestStandardMailboxes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openMailStore(t, dir, map[string]AccountConfig{"alice": {}})
	a := account(t, s, "alice")
	l, err := a.Mailboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]SpecialUse{}
	validity := map[uint32]bool{}
	for _, mb := range l {
		got[mb.Name] = mb.SpecialUse
		validity[mb.UIDValidity] = true
		if mb.UIDNext != 1 || mb.Counts != (Counts{}) {
			t.Errorf("new mailbox %+v", mb)
		}
	}
	want := map[string]SpecialUse{"Inbox": "", "Sent": Sent, "Drafts": Drafts, "Archive": Archive, "Junk": Junk, "Trash": Trash}
	if !equalMaps(got, want) {
		t.Errorf("mailboxes %v, want %v", got, want)
	}
	if len(validity) != len(l) {
		t.Errorf("UIDVALIDITY values not unique: %v", validity)
	}
	subs, err := a.Subscriptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"Archive", "Drafts", "Inbox", "Junk", "Sent", "Trash"}; !slices.Equal(subs, want) {
		t.Errorf("subscriptions %v, want %v", subs, want)
	}
	for _, name := range []string{"INBOX", "inbox", "iNbOx"} {
		if mb, err := a.Mailbox(ctx, name); err != nil || mb.Name != Inbox {
			t.Errorf("Mailbox(%q) = %q, %v", name, mb.Name, err)
		}
	}
	// Special use follows renames.
	if err := a.RenameMailbox(ctx, "Junk", "Spam"); err != nil {
		t.Fatal(err)
	}
	if mb, err := a.MailboxBySpecialUse(ctx, Junk); err != nil || mb.Name != "Spam" {
		t.Errorf("MailboxBySpecialUse(Junk) = %q, %v", mb.Name, err)
	}
	if err := a.DeleteMailbox(ctx, "Spam"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.MailboxBySpecialUse(ctx, Junk); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("MailboxBySpecialUse(Junk) after delete: %v", err)
	}
	checkConsistent(t, a)

	// Unknown and unconfigured accounts.
	if _, err := s.Account("bob"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Account(bob) = %v, want ErrNotFound", err)
	}
	if err := s.SetAccounts(ctx, map[string]AccountConfig{"../x": {}}, nil); !errors.Is(err, ErrBadName) {
		t.Errorf("SetAccounts(../x) = %v, want ErrBadName", err)
	}
	if _, err := s.Account("alice"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Account(alice) after removal from config = %v, want ErrNotFound", err)
	}
}

func equalMaps[K, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestMailboxNames(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		bad        bool
	}{
		{name: "Work", want: "Work"},
		{name: "INBOX", want: "Inbox"},
		{name: "inbox/Sub", want: "Inbox/Sub"},
		{name: "Inboxes", want: "Inboxes"},
		{name: "Ünïcödé/日本", want: "Ünïcödé/日本"},
		{name: "", bad: true},
		{name: "/a", bad: true},
		{name: "a/", bad: true},
		{name: "a//b", bad: true},
		{name: "a%", bad: true},
		{name: "a*b", bad: true},
		{name: "a\tb", bad: true},
		{name: "a\x00b", bad: true},
		{name: "\xff", bad: true},
		{name: strings.Repeat("x", 1001), bad: true},
	} {
		got, err := NormalizeMailboxName(tc.name)
		if tc.bad != (err != nil) || got != tc.want {
			t.Errorf("NormalizeMailboxName(%q) = %q, %v; want %q, bad %v", tc.name, got, err, tc.want, tc.bad)
		}
		if tc.bad && !errors.Is(err, ErrBadName) {
			t.Errorf("NormalizeMailboxName(%q): %v, want ErrBadName", tc.name, err)
		}
	}
	for _, tc := range []struct {
		in   []string
		want []string
		bad  bool
	}{
		{in: []string{"$Forwarded", "Work", "$forwarded"}, want: []string{"$forwarded", "work"}},
		{in: nil, want: nil},
		{in: []string{`\Seen`}, bad: true},
		{in: []string{"a b"}, bad: true},
		{in: []string{"a]"}, bad: true},
		{in: []string{""}, bad: true},
		{in: []string{"ü"}, bad: true},
	} {
		got, err := NormalizeKeywords(tc.in)
		if tc.bad != (err != nil) || !slices.Equal(got, tc.want) {
			t.Errorf("NormalizeKeywords(%q) = %q, %v; want %q, bad %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestCreateDeleteRename(t *testing.T) {
	ctx := context.Background()
	a := openTestAccount(t, AccountConfig{})

	// CREATE makes the levels above (RFC 9051 §6.3.4).
	mb, err := a.CreateMailbox(ctx, "Lists/go/nuts/", "")
	if err != nil || mb.Name != "Lists/go/nuts" {
		t.Fatalf("CreateMailbox = %+v, %v", mb, err)
	}
	for _, name := range []string{"Lists", "Lists/go", "Lists/go/nuts"} {
		if _, err := a.Mailbox(ctx, name); err != nil {
			t.Errorf("Mailbox(%s): %v", name, err)
		}
	}
	if _, err := a.CreateMailbox(ctx, "Lists/go", ""); !errors.Is(err, ErrMailboxExists) {
		t.Errorf("create existing: %v, want ErrMailboxExists", err)
	}
	if _, err := a.CreateMailbox(ctx, "INBOX", ""); !errors.Is(err, ErrMailboxExists) {
		t.Errorf("create INBOX: %v, want ErrMailboxExists", err)
	}
	if mb, err := a.CreateMailbox(ctx, "Old Sent", Sent); err != nil || mb.SpecialUse != Sent {
		t.Errorf("create with special use: %+v, %v", mb, err)
	}
	if _, err := a.CreateMailbox(ctx, "All", `\All`); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("create with \\All: %v, want ErrNotAllowed", err)
	}
	if _, err := a.CreateMailbox(ctx, "a*", ""); !errors.Is(err, ErrBadName) {
		t.Errorf("create a*: %v, want ErrBadName", err)
	}

	// Messages in a mailbox that is renamed, then deleted.
	for i := range 3 {
		deliver(t, a, "Lists/go/nuts", "message "+string(rune('a'+i)))
	}
	nuts, _ := a.Mailbox(ctx, "Lists/go/nuts")
	if err := a.SubscribeMailbox(ctx, "Lists/go/nuts"); err != nil {
		t.Fatal(err)
	}

	// RENAME moves children and subscriptions, keeps UIDVALIDITY and UIDs,
	// creates levels above the new name.
	if err := a.RenameMailbox(ctx, "Lists/go", "Archive/2024/golang"); err != nil {
		t.Fatal(err)
	}
	want := []string{"Archive", "Archive/2024", "Archive/2024/golang", "Archive/2024/golang/nuts", "Drafts", "Inbox", "Junk", "Lists", "Old Sent", "Sent", "Trash"}
	if got := mailboxNames(t, a); !slices.Equal(got, want) {
		t.Errorf("after rename: %v, want %v", got, want)
	}
	renamed, err := a.Mailbox(ctx, "Archive/2024/golang/nuts")
	if err != nil || renamed.ID != nuts.ID || renamed.UIDValidity != nuts.UIDValidity || renamed.Messages != 3 || renamed.UIDNext != 4 {
		t.Errorf("renamed %+v (was %+v), %v", renamed, nuts, err)
	}
	if subs, _ := a.Subscriptions(ctx); !slices.Contains(subs, "Archive/2024/golang/nuts") || slices.Contains(subs, "Lists/go/nuts") {
		t.Errorf("subscriptions after rename: %v", subs)
	}
	for _, tc := range []struct{ from, to string }{
		{"Lists", "Sent"},
		{"Lists", "Lists/sub"},
		{"Nonexistent", "Foo"},
		{"Lists", "x%"},
	} {
		if err := a.RenameMailbox(ctx, tc.from, tc.to); err == nil {
			t.Errorf("rename %s to %s succeeded", tc.from, tc.to)
		}
	}

	// DELETE refuses Inbox and mailboxes with children; removes messages.
	if err := a.DeleteMailbox(ctx, "inbox"); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("delete Inbox: %v, want ErrNotAllowed", err)
	}
	if err := a.DeleteMailbox(ctx, "Archive/2024/golang"); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("delete with children: %v, want ErrNotAllowed", err)
	}
	if err := a.DeleteMailbox(ctx, "Archive/2024/golang/nuts"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Mailbox(ctx, "Archive/2024/golang/nuts"); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("deleted mailbox: %v, want ErrNoMailbox", err)
	}
	if err := a.DeleteMailbox(ctx, "Archive/2024/golang/nuts"); !errors.Is(err, ErrNoMailbox) {
		t.Errorf("delete twice: %v, want ErrNoMailbox", err)
	}
	if n := countFiles(t, a); n != 0 {
		t.Errorf("%d message files left after delete", n)
	}
	if used, _, _ := a.Quota(ctx); used != 0 {
		t.Errorf("usage %d after delete", used)
	}
	// Created again: a new UIDVALIDITY (RFC 9051 §2.3.1.1).
	again, err := a.CreateMailbox(ctx, "Archive/2024/golang/nuts", "")
	if err != nil || again.UIDValidity <= nuts.UIDValidity || again.UIDNext != 1 {
		t.Errorf("recreated %+v, %v (was %+v)", again, err, nuts)
	}
	checkConsistent(t, a)

	// Subscribe and unsubscribe are idempotent, also for absent mailboxes.
	for range 2 {
		if err := a.SubscribeMailbox(ctx, "Nowhere"); err != nil {
			t.Fatal(err)
		}
	}
	if subs, _ := a.Subscriptions(ctx); !slices.Contains(subs, "Nowhere") {
		t.Errorf("subscriptions %v lack Nowhere", subs)
	}
	for range 2 {
		if err := a.UnsubscribeMailbox(ctx, "Nowhere"); err != nil {
			t.Fatal(err)
		}
	}
	if subs, _ := a.Subscriptions(ctx); slices.Contains(subs, "Nowhere") {
		t.Errorf("subscriptions %v still have Nowhere", subs)
	}
}

// Renaming Inbox moves its messages to a new mailbox and leaves Inbox
// empty, its children in place (RFC 9051 §6.3.6).
func TestRenameInbox(t *testing.T) {
	ctx := context.Background()
	a := openTestAccount(t, AccountConfig{})
	if _, err := a.CreateMailbox(ctx, "Inbox/Sub", ""); err != nil {
		t.Fatal(err)
	}
	bodies := []string{"one", "two", "three"}
	for _, b := range bodies {
		deliver(t, a, Inbox, b)
	}
	if err := a.RenameMailbox(ctx, "INBOX", "Old/Mail"); err != nil {
		t.Fatal(err)
	}
	inbox, _ := a.Mailbox(ctx, Inbox)
	if inbox.Messages != 0 || inbox.UIDNext != 4 {
		t.Errorf("Inbox after rename %+v", inbox)
	}
	if _, err := a.Mailbox(ctx, "Inbox/Sub"); err != nil {
		t.Errorf("Inbox child: %v", err)
	}
	old, err := a.Mailbox(ctx, "Old/Mail")
	if err != nil || old.Messages != 3 || old.UIDNext != 4 {
		t.Fatalf("Old/Mail %+v, %v", old, err)
	}
	msgs, _ := a.Messages(ctx, old.ID, nil)
	for i, m := range msgs {
		if got := readMessage(t, a, m); got != testMessage(bodies[i]) {
			t.Errorf("message %d: %q", m.UID, got)
		}
	}
	checkConsistent(t, a)
}

func countFiles(t *testing.T, a *Account) int {
	t.Helper()
	n := 0
	filepath.WalkDir(filepath.Join(a.dir, "msg"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	return n
}

// Orphan files are removed when an account is opened, and repairs logged.
func TestRepairAtOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openMailStore(t, dir, map[string]AccountConfig{"alice": {}})
	a := account(t, s, "alice")
	deliver(t, a, Inbox, "kept")
	orphan := a.msgPath(12345)
	if err := os.MkdirAll(filepath.Dir(orphan), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(orphan, []byte("orphan"), 0o600); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(dir, "accounts", ".incoming", "in-123")
	if err := os.WriteFile(leftover, []byte("leftover"), 0o600); err != nil {
		t.Fatal(err)
	}
	problems, err := a.Check(ctx)
	if err != nil || len(problems) != 1 || !strings.HasPrefix(problems[0], "orphan file") {
		t.Fatalf("Check = %q, %v; want one orphan file", problems, err)
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
	if !strings.Contains(log.String(), "orphan file") {
		t.Errorf("repair not logged: %q", log.String())
	}
	for _, p := range []string{orphan, leftover} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed: %v", p, err)
		}
	}
	a = account(t, s, "alice")
	checkConsistent(t, a)
	inbox, _ := a.Mailbox(ctx, Inbox)
	if inbox.Messages != 1 {
		t.Errorf("Inbox has %d messages", inbox.Messages)
	}
}
