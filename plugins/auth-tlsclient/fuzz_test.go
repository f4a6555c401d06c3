package authtlsclient

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/plugintest"
)

// FuzzAuthzid runs EXTERNAL with a fuzzed authorization identity, as the
// initial response or after the empty challenge, with alice's known key or
// an unknown one. Invariant: it succeeds exactly for the known key with an
// identity that is empty or one of her addresses in any case (at most 320
// bytes of UTF-8 without NUL), as account alice with that address as the
// key's account lists it; nothing is accepted after the outcome.
func FuzzAuthzid(f *testing.F) {
	alice, other := certificate(f, false), certificate(f, false)
	key := sdk.TLSKey{Account: "alice", Login: "alice@example.org", Name: "phone", Addresses: []string{"alice@example.org", "A.Smith@example.com"}}
	host := &plugintest.Host{}
	host.SetTLSPublicKey(spkiHash(alice), key)
	m := &mechanism{log: slog.New(slog.DiscardHandler), host: host}
	for _, s := range []string{"", "alice@example.org", "ALICE@example.org", "a.smith@EXAMPLE.com", "bob@example.org",
		"alice@example.org\x00", "alice@example.org ", "\xff", strings.Repeat("a", 321), "alice"} {
		f.Add([]byte(s), true, true)
	}
	f.Add([]byte("alice@example.org"), false, true)
	f.Add([]byte(""), true, false)
	f.Fuzz(func(t *testing.T, authzid []byte, initial, known bool) {
		ctx := context.Background()
		cert := other
		if known {
			cert = alice
		}
		ex, err := m.Start(ctx, mechanismName, conn("imap", cert))
		if err != nil {
			t.Fatal(err)
		}
		if !initial {
			c, o, err := ex.Next(ctx, nil)
			if err != nil || o != nil || len(c) != 0 {
				t.Fatalf("no initial response: challenge %q, %+v, %v; want an empty challenge", c, o, err)
			}
		}
		_, o, err := ex.Next(ctx, authzid)
		if err != nil || o == nil {
			t.Fatalf("outcome %+v, %v", o, err)
		}
		id := string(authzid)
		valid := len(authzid) <= maxAuthzid && utf8.Valid(authzid) && !strings.ContainsRune(id, 0)
		match := id == "" || slices.ContainsFunc(key.Addresses, func(a string) bool { return strings.EqualFold(a, id) })
		if want := known && valid && match; o.Success != want || o.Temporary {
			t.Fatalf("authzid %q, known key %v: %+v, want success %v", authzid, known, o, want)
		}
		if o.Success && (o.Account != "alice" || !slices.Contains(key.Addresses, o.Login)) {
			t.Fatalf("authzid %q: logged in as %q of %q", authzid, o.Login, o.Account)
		}
		if _, o, _ := ex.Next(ctx, []byte("alice@example.org")); o == nil || o.Success {
			t.Fatalf("after the outcome: %+v", o)
		}
	})
}
