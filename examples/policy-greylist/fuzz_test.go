package main

import (
	"bytes"
	"context"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
)

var quiet = slog.New(slog.DiscardHandler)

var defaultTiming = timing{delay: 300, window: 48 * 3600, lifetime: 35 * 86400, maxEntries: 1000}

// FuzzParseRecord: any line parses or not without panic, and what parses
// is written back as a line that parses to the same.
func FuzzParseRecord(f *testing.F) {
	for _, r := range []struct {
		k triplet
		e entry
	}{
		{triplet{netip.MustParsePrefix("192.0.2.0/24"), "a@example.net", "b@example.org"}, entry{first: 1, last: 1}},
		{triplet{netip.MustParsePrefix("2001:db8::/64"), "", "\"quoted local\"@example.org"}, entry{first: 1700000000, last: 1700000300, passed: true}},
		{triplet{netip.MustParsePrefix("10.0.0.0/8"), "\xff\x00\n", "ü@例え.jp"}, entry{first: 5, last: 9, passed: true}},
	} {
		f.Add(bytes.TrimSuffix(appendRecord(nil, r.k, r.e), []byte("\n")))
	}
	f.Add([]byte(`1 1 g 192.0.2.0/24 "a" "b" `))
	f.Add([]byte(`01 1 g 192.0.2.0/24 "a" "b"`))
	f.Add([]byte(`1 1 g ::ffff:192.0.2.0/120 "a" "b"`))
	f.Add([]byte("1 1 w 192.0.2.0/24 `a` \"b\""))
	f.Fuzz(func(t *testing.T, line []byte) {
		k, e, ok := parseRecord(line)
		if !ok {
			return
		}
		b := appendRecord(nil, k, e)
		if len(b) > maxLine+1 {
			t.Fatalf("record of %d bytes, max %d", len(b), maxLine)
		}
		k2, e2, ok := parseRecord(b[:len(b)-1])
		if !ok || k2 != k || e2 != e {
			t.Fatalf("%q parsed as %v %v, written as %q, parsed again as %v %v (%v)", line, k, e, b, k2, e2, ok)
		}
	})
}

// FuzzLoad: any file loads without panic, within the cap, and what it
// compacts to loads again to the same.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(fileHeader + "\n1 1 g 192.0.2.0/24 \"a\" \"b\"\n"))
	f.Add([]byte(fileHeader + "\n1700000000 1700000300 w 2001:db8::/64 \"a\" \"b\"\n1 1 g 192.0.2.0/24 \"a\" \"b"))
	f.Add([]byte(fileHeader))
	f.Add([]byte("\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "state.log")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		tm := defaultTiming
		tm.maxEntries = 3
		now := time.Unix(1700000400, 0)
		s, err := openStore(path, tm, now, quiet)
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		if len(s.m) > tm.maxEntries {
			t.Fatalf("%d entries loaded, max %d", len(s.m), tm.maxEntries)
		}
		s2, err := openStore(path, tm, now, quiet)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.close()
		if !maps.Equal(s.m, s2.m) {
			t.Fatalf("loaded %v, then %v from the compacted file", s.m, s2.m)
		}
	})
}

// FuzzCheck: whatever a peer sends as addresses, Check answers without
// panic, greylists a new triplet, and remembers it across a restart.
func FuzzCheck(f *testing.F) {
	f.Add("192.0.2.1:25", "a@example.net", "b@example.org")
	f.Add("[2001:db8::1]:25", "", "\"a b\"@example.org")
	f.Add("::ffff:192.0.2.1", "ȺȺȺ", "\xff")
	f.Add("pipe", "a", "b")
	f.Fuzz(func(t *testing.T, remote, from, rcpt string) {
		dir := t.TempDir()
		clk := newClock()
		ctx := context.Background()
		conf := &sdk.Configuration{Kind: sdk.KindPolicy, Instance: "g", Table: map[string]any{}, DataDir: dir}
		req := &sdk.CheckRequest{Instance: "g", Stage: sdk.StageRcpt, Conn: sdk.ConnInfo{RemoteAddr: remote}, From: from, Recipients: []string{rcpt}}

		c := newChecker(quiet, clk.now)
		if err := c.Configure(ctx, conf); err != nil {
			t.Fatal(err)
		}
		v, err := c.Check(ctx, req)
		if err != nil {
			if !strings.Contains(err.Error(), "not an IP address") && !strings.Contains(err.Error(), "longer than") {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if v.Action != sdk.ActionTempfail {
			t.Fatalf("new triplet: %+v", v)
		}
		c.instances["g"].store.close()

		clk.advance(5 * time.Minute)
		c = newChecker(quiet, clk.now)
		if err := c.Configure(ctx, conf); err != nil {
			t.Fatal(err)
		}
		defer c.instances["g"].store.close()
		if v, err := c.Check(ctx, req); err != nil || v.Action != sdk.ActionContinue {
			t.Fatalf("retry after a restart: %+v, %v", v, err)
		}
	})
}
