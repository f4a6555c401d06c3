package policymsgauth

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/dnstest"
)

// FuzzCheck checks a fuzzed message from a fixed envelope, in process,
// against the test zones on a loopback DNS server. Invariants: no panic and
// no error; one header field that parses strictly as Authentication-Results
// (RFC 8601 §2.2) naming this server, in printable US-ASCII with CRLF line
// ends and no line over 998 octets; deletions only of existing
// Authentication-Results fields, each once, in order; a verdict that is
// continue, quarantine, or reject with 550 5.7.1.
func FuzzCheck(f *testing.F) {
	keys(f)
	msg := message("a@example.com")
	ed := sign(f, msg, "example.com", "ed", edKey)
	for _, s := range []string{
		msg,
		ed,
		sign(f, ed, "example.com", "rsa", rsaKey),
		strings.Replace(ed, "Hello.", "Bye.", 1),
		"Authentication-Results: mx.example.org; dmarc=pass\r\nAuthentication-Results: (c) \"MX.example.org\" 1; none\r\n" + msg,
		"From: a@example.com\r\nFrom: b@example.net\r\n\r\n",
		"From: =?utf-8?q?=C3=A9?= <x@bücher.example>, y@example.net\r\n\r\n",
		"DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=rsa; h=from; bh=; b=\r\nFrom: a@example.com\r\n\r\n",
		"DKIM-Signature: v=1; d=\"x\r\n\ty\"; s=a\\b; a=ed25519-sha256; b=\x00\xff\r\n" + msg,
		"From: a@example.com\n\nbare LF\n",
		" leading continuation\r\nFrom: a@pctr.example.net\r\n",
		"From: a@example.com",
		"",
	} {
		f.Add([]byte(s))
	}
	dns := dnstest.NewServer(f, zones(f)...)
	dns.SetFault("tmp._domainkey.example.com.", dnstest.ServFail)
	c := newChecker(slog.New(slog.DiscardHandler))
	c.percent = func() int { return 50 }
	ctx := context.Background()
	if err := c.Configure(ctx, &sdk.Configuration{Kind: sdk.KindPlugin, Hostname: hostname}); err != nil {
		f.Fatal(err)
	}
	table := map[string]any{"resolver": dns.Addr, "timeout": "2s"}
	if err := c.Configure(ctx, &sdk.Configuration{Kind: sdk.KindPolicy, Instance: "msgauth", Table: table, Hostname: hostname}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		v, err := c.Check(ctx, &sdk.CheckRequest{
			Instance: "msgauth", Stage: sdk.StageData,
			Conn: sdk.ConnInfo{Protocol: "smtp", RemoteAddr: "192.0.2.1:40000"},
			Helo: "mail.example.com", From: "bounce@example.com", Recipients: []string{"rcpt@example.org"},
			Size: int64(len(msg)), Message: bytes.NewReader(msg),
		})
		if err != nil {
			t.Fatalf("check: %v", err)
		}
		if len(v.PrependHeaders) != 1 {
			t.Fatalf("prepended %q", v.PrependHeaders)
		}
		id, results, err := parseAR(v.PrependHeaders[0])
		if err != nil {
			t.Fatalf("%v\n%s", err, v.PrependHeaders[0])
		}
		if id != hostname || len(results) < 5 {
			t.Fatalf("id %q, %d results:\n%s", id, len(results), v.PrependHeaders[0])
		}
		n := 0
		for _, fl := range parseHeader(msg).fields {
			if fl.key == authResultsKey {
				n++
			}
		}
		last := 0
		for _, r := range v.DeleteHeaders {
			if r.Name != authResultsName || r.Index <= last || r.Index > n {
				t.Fatalf("delete %+v of %d fields: %+v", r, n, v.DeleteHeaders)
			}
			last = r.Index
		}
		switch v.Action {
		case sdk.ActionContinue, sdk.ActionQuarantine:
		case sdk.ActionReject:
			if v.Code != 550 || v.EnhancedCode != "5.7.1" {
				t.Fatalf("reject %+v", v)
			}
		default:
			t.Fatalf("verdict %+v", v)
		}
	})
}
