package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPassword(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)

	if err := s.SetPassword(ctx, "alice", "correct horse", nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, account, password string
		want                    bool
	}{
		{"right", "alice", "correct horse", true},
		{"wrong", "alice", "correct horsE", false},
		{"prefix", "alice", "correct", false},
		{"empty", "alice", "", false},
		{"unknown account", "bob", "correct horse", false},
		{"empty account", "", "correct horse", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := s.CheckPassword(ctx, tc.account, tc.password)
			if err != nil || ok != tc.want {
				t.Fatalf("CheckPassword = %v, %v; want %v, nil", ok, err, tc.want)
			}
		})
	}

	if has, err := s.HasPassword(ctx, "alice"); err != nil || !has {
		t.Fatalf("HasPassword(alice) = %v, %v", has, err)
	}
	if has, err := s.HasPassword(ctx, "bob"); err != nil || has {
		t.Fatalf("HasPassword(bob) = %v, %v", has, err)
	}

	// A new password replaces the old one.
	if err := s.SetPassword(ctx, "alice", "battery staple", nil); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.CheckPassword(ctx, "alice", "correct horse"); ok {
		t.Fatal("old password still accepted")
	}
	if ok, _ := s.CheckPassword(ctx, "alice", "battery staple"); !ok {
		t.Fatal("new password refused")
	}

	for _, bad := range []string{"", strings.Repeat("x", 73)} {
		if err := s.SetPassword(ctx, "alice", bad, nil); !errors.Is(err, ErrBadPassword) {
			t.Fatalf("SetPassword(%d bytes) = %v, want ErrBadPassword", len(bad), err)
		}
	}
}

// The clear password must not be on disk.
func TestPasswordNotStored(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	const pw = "a-very-recognisable-password"
	if err := s.SetPassword(ctx, "alice", pw, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	data, err := os.ReadFile(filepath.Join(dir, "accounts.db"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(pw)) {
		t.Fatal("clear password found in accounts.db")
	}
	if !bytes.Contains(data, []byte("$2a$10$")) {
		t.Fatal("no bcrypt cost-10 hash in accounts.db")
	}
}

// A missing password fails in about the time of a wrong one: both run bcrypt.
func TestMissingPasswordTiming(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if err := s.SetPassword(ctx, "alice", "secret", nil); err != nil {
		t.Fatal(err)
	}
	measure := func(account string) time.Duration {
		start := time.Now()
		if ok, err := s.CheckPassword(ctx, account, "guess"); ok || err != nil {
			t.Fatalf("CheckPassword(%s) = %v, %v", account, ok, err)
		}
		return time.Since(start)
	}
	wrong, missing := measure("alice"), measure("nobody")
	if missing < wrong/3 {
		t.Fatalf("missing account checked in %v, wrong password in %v: dummy hash not used", missing, wrong)
	}
}

func TestSecrets(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)

	if _, err := s.Secret(ctx, "alice", "SCRAM-SHA-256"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Secret before any = %v, want ErrNotFound", err)
	}
	derived := map[string][]byte{"SCRAM-SHA-256": []byte("k256"), "SCRAM-SHA-1": []byte("k1")}
	if err := s.SetPassword(ctx, "alice", "pw", derived); err != nil {
		t.Fatal(err)
	}
	derived["SCRAM-SHA-1"] = []byte("mutated by caller")
	if got, err := s.Secret(ctx, "alice", "SCRAM-SHA-1"); err != nil || string(got) != "k1" {
		t.Fatalf("Secret = %q, %v", got, err)
	}

	// SetSecrets replaces the set and keeps the password.
	if err := s.SetSecrets(ctx, "alice", map[string][]byte{"SCRAM-SHA-256": []byte("new")}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Secret(ctx, "alice", "SCRAM-SHA-256"); err != nil || string(got) != "new" {
		t.Fatalf("Secret after SetSecrets = %q, %v", got, err)
	}
	if _, err := s.Secret(ctx, "alice", "SCRAM-SHA-1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("dropped secret = %v, want ErrNotFound", err)
	}
	if ok, _ := s.CheckPassword(ctx, "alice", "pw"); !ok {
		t.Fatal("SetSecrets lost the password")
	}

	// A new password without derived secrets drops the old ones.
	if err := s.SetPassword(ctx, "alice", "pw2", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Secret(ctx, "alice", "SCRAM-SHA-256"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("secret survived password change: %v", err)
	}

	// Secrets without a password: no password check succeeds.
	if err := s.SetSecrets(ctx, "bob", map[string][]byte{"X": []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if has, _ := s.HasPassword(ctx, "bob"); has {
		t.Fatal("bob has a password")
	}
	if ok, _ := s.CheckPassword(ctx, "bob", ""); ok {
		t.Fatal("empty password accepted for account without password")
	}
}

func TestReopenAndInUse(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetPassword(ctx, "alice", "pw", nil); err != nil {
		t.Fatal(err)
	}

	// The lock is per open file, so a second Open in this process stands
	// in for a second process.
	if _, err := Open(ctx, dir); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open = %v, want ErrInUse", err)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ok, err := s.CheckPassword(ctx, "alice", "pw"); err != nil || !ok {
		t.Fatalf("after reopen CheckPassword = %v, %v", ok, err)
	}
}

func TestAuthCache(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetPassword(ctx, "alice", "first password", nil); err != nil {
		t.Fatal(err)
	}
	check := func(pw string, want bool) time.Duration {
		t.Helper()
		start := time.Now()
		ok, err := s.CheckPassword(ctx, "alice", pw)
		if err != nil || ok != want {
			t.Fatalf("CheckPassword(%q) = %v, %v; want %v", pw, ok, err, want)
		}
		return time.Since(start)
	}
	slow := check("first password", true)
	if fast := check("first password", true); fast > slow/4 {
		t.Errorf("second check took %v after %v: not cached", fast, slow)
	}
	// A cached success must not let another password in, nor outlive a change.
	check("wrong password", false)
	if err := s.SetPassword(ctx, "alice", "second password", nil); err != nil {
		t.Fatal(err)
	}
	check("first password", false)
	check("second password", true)
}

// Concurrent checks of the same credentials run bcrypt once.
func TestAuthCacheConcurrent(t *testing.T) {
	c := newAuthCache()
	var runs atomic.Int32
	release := make(chan struct{})
	compare := func() bool {
		runs.Add(1)
		<-release
		return true
	}
	var wg sync.WaitGroup
	results := make([]bool, 10)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = c.check("alice", "pw", "hash", compare)
		}()
	}
	time.Sleep(50 * time.Millisecond) // Let them all reach the flight.
	close(release)
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Fatalf("bcrypt ran %d times for 10 concurrent checks", n)
	}
	for i, ok := range results {
		if !ok {
			t.Fatalf("check %d failed", i)
		}
	}
	// A different password is its own flight, and a failure is not cached.
	if c.check("alice", "other", "hash", func() bool { return false }) {
		t.Fatal("wrong password accepted")
	}
	if !c.check("alice", "pw", "hash", func() bool { t.Fatal("cached success checked again"); return false }) {
		t.Fatal("cached success lost")
	}
}
