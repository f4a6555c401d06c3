package policydkimsign

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/switchyard-mta/switchyard/sdk"
)

// FuzzCheck signs fuzzed messages from an authenticated submitter.
// Invariants: no panic, no error (the message is readable and within its
// size), and a message signed whose lines all end in CRLF, as the core
// passes them, verifies with go-msgauth against the published key.
func FuzzCheck(f *testing.F) {
	dir := f.TempDir()
	k := newKey(f, dir, "example.org", "e1", false)
	s := newSigner(slog.New(slog.DiscardHandler))
	table := map[string]any{"keys": []any{map[string]any{"domain": "example.org", "selector": "e1", "key_file": k.file}}}
	if err := s.Configure(f.Context(), &sdk.Configuration{Kind: sdk.KindPolicy, Instance: "dkim", Table: table, ConfigDir: dir}); err != nil {
		f.Fatal(err)
	}
	for _, m := range []string{
		message, fromAt("a@b.c.example.org"), fromAt("\"x\" <a@example.org>, b@example.org"), "From: a@example.org\r\n",
		"From: a@example.org", "From: a@example.org\r\n\r\n", "From: a@example.org\n\nbody\n", "\r\n\r\n", "",
		"From:\r\n a@example.org\r\n\r\nx", " From: a@example.org\r\n\r\n", "From: =?utf-8?q?=C3=A9?= <a@example.org>\r\n\r\n",
		"From: a@bücher.example.org\r\n\r\n", "From: a@example.org\r\nFrom: b@example.org\r\n\r\n", "From: a@example.org\r\r\n\r\n",
	} {
		f.Add([]byte(m))
	}
	lookup := func(name string) ([]string, error) {
		if name == "e1._domainkey.example.org" {
			return []string{k.record}, nil
		}
		return nil, errors.New("no such record")
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		v, err := s.Check(t.Context(), &sdk.CheckRequest{Instance: "dkim", Stage: sdk.StageData, Submission: true, Size: int64(len(msg)), Message: strings.NewReader(string(msg))})
		if err != nil {
			t.Fatalf("check: %v", err)
		}
		if v.Action != sdk.ActionContinue || len(v.PrependHeaders) > 1 {
			t.Fatalf("verdict %+v", v)
		}
		if len(v.PrependHeaders) == 0 {
			return
		}
		m := string(msg)
		if !strings.HasSuffix(m, "\r\n") || strings.Count(m, "\n") != strings.Count(m, "\r\n") || strings.Count(m, "\r") != strings.Count(m, "\r\n") {
			return // Not as the core passes messages.
		}
		if !strings.Contains(m, "\r\n\r\n") && !strings.HasPrefix(m, "\r\n") {
			m += "\r\n" // A header section only: signed with an empty body.
		}
		vs, err := dkim.VerifyWithOptions(strings.NewReader(v.PrependHeaders[0]+m), &dkim.VerifyOptions{LookupTXT: lookup})
		if err != nil || len(vs) != 1 || vs[0].Err != nil {
			t.Fatalf("signed message does not verify: %v %+v\n%s%q", err, vs, v.PrependHeaders[0], m)
		}
	})
}
