package authcrammd5

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"log/slog"
	"strings"
	"testing"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/plugintest"
)

// fuzzUser is an account the CRAM-MD5 fuzz target knows; placeholder in a
// fuzzed response stands for the hex digest of the challenge with its password.
type fuzzUser struct {
	login, account, password, placeholder string
}

var fuzzUsers = []fuzzUser{
	{"alice@example.org", "alice", "tanstaaftanstaaf", "DIGESTA"},
	// A login with a space, and a password longer than a block (RFC 2104 §2).
	{"bob smith", "bob", strings.Repeat("long password ", 6), "DIGESTB"},
}

// FuzzResponse answers the challenge with a fuzzed response, in which
// DIGESTA and DIGESTB stand for the right digests of alice's and bob's
// passwords. Invariant: the exchange succeeds exactly when the response is
// a known login (in any case, as the core's lookups are), a space and the
// HMAC-MD5 of the challenge keyed with that login's password in 32 hex
// digits (RFC 2195 §2), as the right account; an initial response always
// fails (the server speaks first); nothing is accepted after the outcome.
func FuzzResponse(f *testing.F) {
	host := &plugintest.Host{}
	m := newMechanism(slog.New(slog.DiscardHandler))
	m.cfg = settings{host: host, hostname: "mx.example.org"}
	for _, u := range fuzzUsers {
		secrets, err := m.Derive(context.Background(), u.account, u.password)
		if err != nil {
			f.Fatal(err)
		}
		host.SetSecret(u.login, mechanismName, sdk.Credential{Account: u.account, Login: u.login, Secret: secrets[mechanismName]})
	}
	for _, r := range []string{
		"alice@example.org DIGESTA",
		"ALICE@example.org DIGESTA",
		"alice@example.org DIGESTB",
		"bob smith DIGESTB",
		"bob smith  DIGESTB",
		"bob DIGESTB",
		"alice@example.org " + strings.Repeat("0", 32),
		"alice@example.org DIGESTA0",
		"alice@example.org\tDIGESTA",
		"alice@example.org DIGESTA ",
		"nobody DIGESTA",
		" DIGESTA",
		"",
	} {
		f.Add(r, false)
	}
	f.Add("alice@example.org DIGESTA", true)
	f.Fuzz(func(t *testing.T, resp string, initial bool) {
		ctx := context.Background()
		ex, err := m.Start(ctx, mechanismName, sdk.ConnInfo{Protocol: "smtp"})
		if err != nil {
			t.Fatal(err)
		}
		var challenge []byte
		if !initial {
			var out *sdk.AuthOutcome
			challenge, out, err = ex.Next(ctx, nil)
			if err != nil || out != nil || len(challenge) == 0 {
				t.Fatalf("challenge %q, %+v, %v", challenge, out, err)
			}
		}
		digests := map[string]string{} // Login, lower case, to its right digest.
		for _, u := range fuzzUsers {
			mac := hmac.New(md5.New, []byte(u.password))
			mac.Write(challenge)
			d := hex.EncodeToString(mac.Sum(nil))
			digests[strings.ToLower(u.login)] = d
			resp = strings.ReplaceAll(resp, u.placeholder, d)
		}
		_, out, err := ex.Next(ctx, []byte(resp))
		if err != nil || out == nil {
			t.Fatalf("response %q: %+v, %v; want an outcome", resp, out, err)
		}
		// The oracle: RFC 2195 §2 read without the plugin's code.
		var want *fuzzUser
		for i, u := range fuzzUsers {
			login, digest := resp[:min(len(u.login), len(resp))], resp[min(len(u.login), len(resp)):]
			if strings.EqualFold(login, u.login) && strings.HasPrefix(digest, " ") && strings.EqualFold(digest[1:], digests[strings.ToLower(u.login)]) {
				want = &fuzzUsers[i]
			}
		}
		switch {
		case initial && out.Success:
			t.Fatalf("initial response %q succeeded", resp)
		case initial:
		case want == nil && out.Success:
			t.Fatalf("response %q to %q succeeded as %q; it is not a right digest", resp, challenge, out.Account)
		case want != nil && (!out.Success || out.Account != want.account || out.Login != want.login):
			t.Fatalf("response %q to %q: %+v; want success as %s", resp, challenge, out, want.account)
		}
		if ch, again, err := ex.Next(ctx, []byte(resp)); err != nil || again == nil || again.Success || ch != nil {
			t.Fatalf("response after the outcome: %q, %+v, %v", ch, again, err)
		}
	})
}
