package policydkimsign

import (
	"context"
	"crypto"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/dkimkey"
	"github.com/switchyard-mta/switchyard/sdk/dnsresolve"
	"github.com/switchyard-mta/switchyard/sdk/dnstest"
	"github.com/switchyard-mta/switchyard/sdk/hostrpc"
	"github.com/switchyard-mta/switchyard/sdk/plugintest"
)

// testKey is a key file made for a test and the record that publishes it.
type testKey struct {
	domain, selector string
	file             string // Relative to the fixture's directory.
	signer           crypto.Signer
	record           string
}

// fixture is the plugin over real gRPC, configured with keys whose records
// a DNS server on loopback publishes.
type fixture struct {
	t    *testing.T
	dir  string
	c    hostrpc.Client
	logs *plugintest.LogBuffer
	dns  *dnsresolve.Resolver
	keys map[string]*testKey // By "selector._domainkey.domain".
}

// newKey writes a new key into dir.
func newKey(t testing.TB, dir, domain, selector string, rsa bool) *testKey {
	t.Helper()
	signer, pemData, err := dkimkey.Generate(rsa)
	if err != nil {
		t.Fatal(err)
	}
	record, err := dkimkey.Record(signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	file := domain + "." + selector + ".key"
	if err := os.WriteFile(filepath.Join(dir, file), pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	return &testKey{domain: domain, selector: selector, file: file, signer: signer, record: record}
}

// The keys of the standard fixture: example.org signs with ed25519 and
// RSA, rsa.example with RSA only.
func standardKeys(t *testing.T, dir string) []*testKey {
	return []*testKey{
		newKey(t, dir, "example.org", "e1", false),
		newKey(t, dir, "example.org", "r1", true),
		newKey(t, dir, "rsa.example", "s", true),
	}
}

// setup configures instance "dkim" with keys, each table given extra keys
// from extra (by index), and publishes their records.
func setup(t *testing.T, dir string, keys []*testKey, extra map[int]map[string]any) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: dir, logs: &plugintest.LogBuffer{}, keys: map[string]*testKey{}}
	s := newSigner(slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	f.c = plugintest.Connect(t, &sdk.Plugin{Name: "policy-dkimsign", Version: "0.1.0", Policy: policyInfo, Checker: s}, nil)

	var tables []any
	zones := map[string]*strings.Builder{}
	for i, k := range keys {
		tab := map[string]any{"domain": k.domain, "selector": k.selector, "key_file": k.file}
		for n, v := range extra[i] {
			tab[n] = v
		}
		tables = append(tables, tab)
		f.keys[k.selector+"._domainkey."+k.domain] = k
		if zones[k.domain] == nil {
			zones[k.domain] = &strings.Builder{}
		}
		zones[k.domain].WriteString(dkimkey.ZoneRecord(k.selector, k.domain, k.record) + "\n")
	}
	if err := f.c.Configure(t.Context(), &sdk.Configuration{Kind: sdk.KindPolicy, Instance: "dkim", Table: map[string]any{"keys": tables}, ConfigDir: dir}); err != nil {
		t.Fatalf("configure: %v", err)
	}
	var zs []dnstest.Zone
	for d, b := range zones {
		zs = append(zs, dnstest.Zone{Origin: d + ".", Records: b.String()})
	}
	srv := dnstest.NewServer(t, zs...)
	var err error
	if f.dns, err = dnsresolve.New(srv.Addr, nil); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) check(msg string, submission bool) (sdk.Verdict, error) {
	return f.c.Checker().Check(f.t.Context(), &sdk.CheckRequest{
		Instance: "dkim", Stage: sdk.StageData, Submission: submission, Account: "alice",
		From: "alice@example.org", Recipients: []string{"bob@example.net"},
		Size: int64(len(msg)), Message: strings.NewReader(msg),
	})
}

// sign checks msg as a submission and returns its signature fields.
func (f *fixture) sign(msg string) []string {
	f.t.Helper()
	v, err := f.check(msg, true)
	if err != nil {
		f.t.Fatalf("check: %v", err)
	}
	if v.Action != sdk.ActionContinue || v.Code != 0 || v.Text != "" || len(v.DeleteHeaders) != 0 {
		f.t.Fatalf("verdict %+v, want continue with headers only", v)
	}
	for _, h := range v.PrependHeaders {
		// One field: CRLF at the end, elsewhere only to fold (RFC 5322 §2.2.3).
		unfolded := strings.NewReplacer("\r\n ", "", "\r\n\t", "").Replace(h)
		if !strings.HasPrefix(h, "DKIM-Signature:") || !strings.HasSuffix(unfolded, "\r\n") || strings.Count(unfolded, "\r\n") != 1 {
			f.t.Fatalf("header %q, want a CRLF-terminated DKIM-Signature field", h)
		}
	}
	return v.PrependHeaders
}

// verify verifies msg with go-msgauth, looking keys up in the loopback DNS.
func (f *fixture) verify(msg string) []*dkim.Verification {
	f.t.Helper()
	vs, err := dkim.VerifyWithOptions(strings.NewReader(msg), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			txts, _, err := f.dns.LookupTXT(context.Background(), name)
			return txts, err
		},
	})
	if err != nil {
		f.t.Fatalf("verify: %v", err)
	}
	return vs
}

const message = "From: Alice <alice@example.org>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: Hello\r\n" +
	"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"X-Unsigned: 1\r\n" +
	"\r\n" +
	"Hi Bob,\r\n" +
	"\r\n" +
	"a line with  spaces \r\n" +
	"\r\n\r\n"

// fromAt is message with another From field value.
func fromAt(from string) string {
	return strings.Replace(message, "From: Alice <alice@example.org>", "From: "+from, 1)
}

func TestSignVerify(t *testing.T) {
	dir := t.TempDir()
	f := setup(t, dir, standardKeys(t, dir), nil)
	for _, tc := range []struct {
		name   string
		msg    string
		domain string
		keys   []string // Selectors, in order.
		algos  []string
	}{
		{"dual", message, "example.org", []string{"e1", "r1"}, []string{"ed25519-sha256", "rsa-sha256"}},
		{"rsa only", fromAt("bob@rsa.example"), "rsa.example", []string{"s"}, []string{"rsa-sha256"}},
		{"subdomain", fromAt("bob@a.b.Example.ORG"), "example.org", []string{"e1", "r1"}, []string{"ed25519-sha256", "rsa-sha256"}},
		{"folded From", strings.Replace(message, "From: Alice <", "From: \"Alice, A.\"\r\n\t<", 1), "example.org", []string{"e1", "r1"}, nil},
		{"encoded display name", strings.Replace(message, "From: Alice", "From: =?koi8-r?b?4czJ08E=?=", 1), "example.org", []string{"e1", "r1"}, nil},
		{"header only", "From: alice@example.org\r\nSubject: x\r\n", "example.org", []string{"e1", "r1"}, nil},
		{"header only, last line unterminated", "From: alice@example.org\r\nSubject: x", "example.org", []string{"e1", "r1"}, nil},
		{"empty body", "From: alice@example.org\r\n\r\n", "example.org", []string{"e1", "r1"}, nil},
		{"large body", message + strings.Repeat("0123456789 abcdef\r\n", 100000), "example.org", []string{"e1", "r1"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sigs := f.sign(tc.msg)
			if len(sigs) != len(tc.keys) {
				t.Fatalf("%d signatures, want %d:\n%s", len(sigs), len(tc.keys), sigs)
			}
			msg := tc.msg
			if !strings.Contains(msg, "\r\n\r\n") {
				// go-msgauth cannot read a message without a body; the
				// signature is of an empty one.
				msg = strings.TrimSuffix(msg, "\r\n") + "\r\n\r\n"
			}
			vs := f.verify(strings.Join(sigs, "") + msg)
			if len(vs) != len(tc.keys) {
				t.Fatalf("%d verifications, want %d", len(vs), len(tc.keys))
			}
			for i, v := range vs {
				if v.Err != nil {
					t.Errorf("signature %d: %v\n%s", i, v.Err, sigs[i])
				}
				if v.Domain != tc.domain || !strings.Contains(sigs[i], " s="+tc.keys[i]+";") {
					t.Errorf("signature %d: d=%s, want %s and s=%s:\n%s", i, v.Domain, tc.domain, tc.keys[i], sigs[i])
				}
				if tc.algos != nil && !strings.Contains(sigs[i], " a="+tc.algos[i]+";") {
					t.Errorf("signature %d: want a=%s:\n%s", i, tc.algos[i], sigs[i])
				}
				if !strings.Contains(sigs[i], " c=relaxed/relaxed;") {
					t.Errorf("signature %d: want c=relaxed/relaxed:\n%s", i, sigs[i])
				}
				if n := countFold(v.HeaderKeys, "From"); n != 2 {
					t.Errorf("signature %d: From %d times in h=%v, want 2 (oversigned)", i, n, v.HeaderKeys)
				}
				if slices.Contains(v.HeaderKeys, "X-Unsigned") || !v.Expiration.IsZero() {
					t.Errorf("signature %d: h=%v, x=%v", i, v.HeaderKeys, v.Expiration)
				}
			}
		})
	}
	if !strings.Contains(f.logs.String(), `"msg":"signed","instance":"dkim"`) {
		t.Errorf("no debug log of signing:\n%s", f.logs)
	}
}

func countFold(l []string, s string) int {
	n := 0
	for _, e := range l {
		if strings.EqualFold(e, s) {
			n++
		}
	}
	return n
}

// The h= list: configured fields as often as present, From once more,
// unlisted fields left out.
func TestHeaderKeys(t *testing.T) {
	dir := t.TempDir()
	keys := standardKeys(t, dir)
	f := setup(t, dir, keys, map[int]map[string]any{1: {"headers": []any{"from", "Subject", "X-Custom", "subject"}}})
	msg := strings.Replace(message, "X-Unsigned: 1\r\n", "X-Custom: a\r\nx-custom: b\r\nTo: carol@example.net\r\n", 1)
	sigs := f.sign(msg)
	vs := f.verify(strings.Join(sigs, "") + msg)
	want := [][]string{
		{"From", "From", "Subject", "Date", "To", "To", "Message-ID"}, // In the order of defaultHeaders.
		{"from", "from", "Subject", "X-Custom", "X-Custom"},
	}
	for i, v := range vs {
		if v.Err != nil || !slices.Equal(v.HeaderKeys, want[i]) {
			t.Errorf("signature %d: %v, h=%v, want %v", i, v.Err, v.HeaderKeys, want[i])
		}
	}
}

// What a signature must not survive.
func TestTampering(t *testing.T) {
	dir := t.TempDir()
	f := setup(t, dir, standardKeys(t, dir), nil)
	sigs := strings.Join(f.sign(message), "")
	for _, tc := range []struct {
		name string
		msg  string
		err  string
	}{
		{"body changed", strings.Replace(message, "Hi Bob", "Hi Eve", 1), "body hash did not verify"},
		{"line added to the body", message + "P.S.\r\n", "body hash did not verify"},
		{"subject changed", strings.Replace(message, "Subject: Hello", "Subject: Hellp", 1), "signature did not verify"},
		{"From added on top", "From: mallory@example.org\r\n" + message, "signature did not verify"},
		{"From added below", strings.Replace(message, "\r\n\r\n", "\r\nFrom: mallory@example.org\r\n\r\n", 1), "signature did not verify"},
		{"Reply-To added", "Reply-To: mallory@example.com\r\n" + message, ""},
	} {
		vs := f.verify(sigs + tc.msg)
		for i, v := range vs {
			if tc.err == "" {
				// Not listed in h=: an addition does not break it.
				if v.Err != nil {
					t.Errorf("%s: signature %d: %v", tc.name, i, v.Err)
				}
			} else if v.Err == nil || !strings.Contains(v.Err.Error(), tc.err) {
				t.Errorf("%s: signature %d: %v, want %q", tc.name, i, v.Err, tc.err)
			}
		}
	}
	// Relaxed canonicalization: white space changes in transit are fine.
	relaxed := strings.Replace(strings.Replace(message, "Subject: Hello", "subject:  Hello ", 1), "with  spaces \r\n", "with spaces\r\n", 1)
	for i, v := range f.verify(sigs + relaxed) {
		if v.Err != nil {
			t.Errorf("relaxed: signature %d: %v", i, v.Err)
		}
	}
}

func TestExpiration(t *testing.T) {
	dir := t.TempDir()
	f := setup(t, dir, standardKeys(t, dir), map[int]map[string]any{0: {"expiration": "720h"}})
	before := time.Now().Truncate(time.Second)
	sigs := f.sign(message)
	vs := f.verify(strings.Join(sigs, "") + message)
	if !strings.Contains(sigs[0], " x=") || strings.Contains(sigs[1], " x=") {
		t.Fatalf("x= on the first key only, want:\n%s", sigs)
	}
	exp := vs[0].Expiration
	if vs[0].Err != nil || exp.Before(before.Add(720*time.Hour)) || exp.After(time.Now().Add(720*time.Hour)) {
		t.Errorf("x=%v (%v), want 720h from now", exp, vs[0].Err)
	}
}

// Messages signed for nobody: continue without headers, a debug line.
func TestNotSigned(t *testing.T) {
	dir := t.TempDir()
	f := setup(t, dir, standardKeys(t, dir), nil)
	for _, tc := range []struct {
		name, msg  string
		submission bool
		reason     string
	}{
		{"not submission", message, false, "not an authenticated submission"},
		{"no From", strings.Replace(message, "From:", "Sender:", 1), true, "no From field"},
		{"two From fields", "From: alice@example.org\r\n" + message, true, "several From fields"},
		{"two From addresses", fromAt("alice@example.org, carol@example.org"), true, "From field with 2 addresses"},
		{"group", fromAt("undisclosed:;"), true, "From field with 0 addresses"},
		{"unparsable", fromAt("alice@"), true, "From field: "},
		{"address literal", fromAt("alice@[192.0.2.1]"), true, "address literal"},
		{"other domain", fromAt("alice@example.net"), true, "no keys for From domain example.net"},
		{"suffix is not a parent", fromAt("alice@badexample.org"), true, "no keys for From domain badexample.org"},
		{"empty", "", true, "no From field"},
		{"leading white space", " " + message, true, "header section starts with white space"},
	} {
		v, err := f.check(tc.msg, tc.submission)
		if err != nil || v.Action != sdk.ActionContinue || len(v.PrependHeaders) != 0 {
			t.Errorf("%s: %+v, %v; want continue without headers", tc.name, v, err)
		}
		if !strings.Contains(f.logs.String(), tc.reason) {
			t.Errorf("%s: no debug line with %q:\n%s", tc.name, tc.reason, f.logs)
		}
	}
	v, err := f.c.Checker().Check(t.Context(), &sdk.CheckRequest{Instance: "dkim", Stage: sdk.StageRcpt, Submission: true, Recipients: []string{"b@example.net"}})
	if err != nil || v.Action != sdk.ActionContinue || v.PrependHeaders != nil {
		t.Errorf("rcpt stage: %+v, %v", v, err)
	}
	d, err := f.c.Describe(t.Context())
	if err != nil || d.Policy == nil || !slices.Equal(d.Policy.Stages, []sdk.Stage{sdk.StageData}) || d.Policy.Body != sdk.BodyFull {
		t.Errorf("describe: %+v, %v", d, err)
	}
}

// Check failures are errors, for the instance's on_error.
func TestCheckErrors(t *testing.T) {
	dir := t.TempDir()
	f := setup(t, dir, standardKeys(t, dir), nil)
	// More than announced: Size is a lie, or the stream carries more.
	big := message + strings.Repeat("x", sizeMargin+1)
	_, err := f.c.Checker().Check(t.Context(), &sdk.CheckRequest{Instance: "dkim", Stage: sdk.StageData, Submission: true, Size: int64(len(message)), Message: strings.NewReader(big)})
	if err == nil || !strings.Contains(err.Error(), "larger than its announced size") {
		t.Errorf("oversized message: %v", err)
	}
	// Exactly Size plus the margin is still read.
	exact := message + strings.Repeat("x", sizeMargin)
	v, err := f.c.Checker().Check(t.Context(), &sdk.CheckRequest{Instance: "dkim", Stage: sdk.StageData, Submission: true, Size: int64(len(message)), Message: strings.NewReader(exact)})
	if err != nil || len(v.PrependHeaders) != 2 {
		t.Errorf("message of size plus margin: %+v, %v", v, err)
	}
	hugeHeader := "From: alice@example.org\r\nX-Big: " + strings.Repeat("y", maxHeader) + "\r\n\r\nbody\r\n"
	if _, err := f.check(hugeHeader, true); err == nil || !strings.Contains(err.Error(), "header section over") {
		t.Errorf("huge header section: %v", err)
	}
	if _, err := f.c.Checker().Check(t.Context(), &sdk.CheckRequest{Instance: "other", Stage: sdk.StageData, Submission: true, Message: strings.NewReader(message)}); err == nil || !strings.Contains(err.Error(), `"other" is not configured`) {
		t.Errorf("unconfigured instance: %v", err)
	}
	// The unread stream of a message not signed is drained: the next check works.
	if v, err := f.check(fromAt("a@example.net")+strings.Repeat("z", 1<<20), true); err != nil || len(v.PrependHeaders) != 0 {
		t.Errorf("unsigned large message: %+v, %v", v, err)
	}
	if sigs := f.sign(message); len(sigs) != 2 {
		t.Errorf("after: %d signatures", len(sigs))
	}
}

// A reader that fails, in-process: an unreadable message is an error.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n > 0 {
		n := copy(p, message[:min(len(message), r.n, len(p))])
		r.n -= n
		return n, nil
	}
	return 0, errors.New("stream broken")
}

func TestUnreadable(t *testing.T) {
	dir := t.TempDir()
	keys := standardKeys(t, dir)
	s := newSigner(slog.New(slog.DiscardHandler))
	table := map[string]any{"keys": []any{map[string]any{"domain": "example.org", "selector": "e1", "key_file": keys[0].file}}}
	if err := s.Configure(t.Context(), &sdk.Configuration{Kind: sdk.KindPolicy, Instance: "dkim", Table: table, ConfigDir: dir}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 30, len(message)} {
		_, err := s.Check(t.Context(), &sdk.CheckRequest{Instance: "dkim", Stage: sdk.StageData, Submission: true, Message: &failingReader{n: n}})
		if err == nil || !strings.Contains(err.Error(), "stream broken") {
			t.Errorf("failing after %d bytes: %v", n, err)
		}
	}
	if _, err := s.Check(t.Context(), &sdk.CheckRequest{Instance: "dkim", Stage: sdk.StageData, Submission: true}); err == nil {
		t.Errorf("no message: no error")
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	keys := standardKeys(t, dir)
	os.WriteFile(filepath.Join(dir, "notakey.pem"), []byte("hello\n"), 0o600)
	small, _ := os.ReadFile("../../sdk/dkimkey/testdata/rsa512.pem")
	os.WriteFile(filepath.Join(dir, "small.pem"), small, 0o600)
	good := func(over map[string]any) map[string]any {
		m := map[string]any{"domain": "example.org", "selector": "e1", "key_file": keys[0].file}
		for k, v := range over {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	c := plugintest.Connect(t, &sdk.Plugin{Name: "policy-dkimsign", Policy: policyInfo, Checker: newSigner(slog.New(slog.DiscardHandler))}, nil)
	for _, tc := range []struct {
		name  string
		table map[string]any
		want  []string // "key: text" of each error.
	}{
		{"no keys", map[string]any{}, []string{"keys: at least one"}},
		{"empty keys", map[string]any{"keys": []any{}}, []string{"keys: at least one"}},
		{"unknown key", map[string]any{"keys": []any{good(map[string]any{"selektor": "x"})}}, []string{"keys.selektor: unknown key"}},
		{"unknown top key", map[string]any{"key": "x"}, []string{"key: unknown key"}},
		{"missing", map[string]any{"keys": []any{map[string]any{}}}, []string{"keys[0].domain: required", "keys[0].selector: required", "keys[0].key_file: required"}},
		{"bad names", map[string]any{"keys": []any{good(nil), good(map[string]any{"domain": "exa mple.org", "selector": "s_1"})}}, []string{"keys[1].domain: invalid domain name", "keys[1].selector: selector \"s_1\": character '_'"}},
		{"too long", map[string]any{"keys": []any{good(map[string]any{"domain": strings.Repeat("a.", 100) + "org", "selector": strings.Repeat("s", 60)})}}, []string{"keys[0].selector: " + strings.Repeat("s", 60) + "._domainkey."}},
		{"duplicate", map[string]any{"keys": []any{good(nil), good(map[string]any{"key_file": keys[1].file, "domain": "EXAMPLE.org."})}}, []string{"keys[1].selector: e1 is also the selector of keys[0] for example.org"}},
		{"absent file", map[string]any{"keys": []any{good(map[string]any{"key_file": "absent.pem"})}}, []string{"keys[0].key_file: open " + filepath.Join(dir, "absent.pem") + ": no such file"}},
		{"not a key", map[string]any{"keys": []any{good(map[string]any{"key_file": "notakey.pem"})}}, []string{"keys[0].key_file: " + filepath.Join(dir, "notakey.pem") + ": unusable key: no PEM"}},
		{"small rsa", map[string]any{"keys": []any{good(map[string]any{"key_file": filepath.Join(dir, "small.pem")})}}, []string{"keys[0].key_file: ", "RSA key of 512 bits"}},
		{"expiration not a duration", map[string]any{"keys": []any{good(map[string]any{"expiration": "30d"})}}, []string{`keys[0].expiration: "30d" is not a duration`}},
		{"expiration short", map[string]any{"keys": []any{good(map[string]any{"expiration": "59m"})}}, []string{"keys[0].expiration: 59m0s is under 1h0m0s"}},
		{"expiration type", map[string]any{"keys": []any{good(map[string]any{"expiration": int64(720)})}}, []string{"keys.expiration: "}},
		{"headers without From", map[string]any{"keys": []any{good(map[string]any{"headers": []any{"To", "Subject"}})}}, []string{"keys[0].headers: must include From"}},
		{"headers empty", map[string]any{"keys": []any{good(map[string]any{"headers": []any{}})}}, []string{"keys[0].headers: must include From"}},
		{"bad header name", map[string]any{"keys": []any{good(map[string]any{"headers": []any{"From", "Sub ject", "X:"}})}}, []string{`keys[0].headers[1]: "Sub ject" is not a header field name`, `keys[0].headers[2]: "X:" is not`}},
	} {
		err := c.Configure(t.Context(), &sdk.Configuration{Kind: sdk.KindPolicy, Instance: "bad", Table: tc.table, ConfigDir: dir})
		var ces sdk.ConfigErrors
		if !errors.As(err, &ces) {
			t.Errorf("%s: %v, want ConfigErrors", tc.name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v\nwant an error containing %q", tc.name, err, w)
			}
		}
		if tc.name != "small rsa" && len(ces) != len(tc.want) {
			t.Errorf("%s: %d errors, want %d: %v", tc.name, len(ces), len(tc.want), err)
		}
	}
	// The instance was never configured: a check of it fails, not signs.
	if _, err := c.Checker().Check(t.Context(), &sdk.CheckRequest{Instance: "bad", Stage: sdk.StageData, Submission: true, Message: strings.NewReader(message)}); err == nil {
		t.Errorf("check of an instance that failed to configure: no error")
	}
	// A plugin-wide table takes no keys.
	if err := c.Configure(t.Context(), &sdk.Configuration{Kind: sdk.KindPlugin, Instance: "policy-dkimsign", Table: map[string]any{"x": int64(1)}}); err == nil {
		t.Errorf("plugin table with a key: no error")
	}
}

// mta config check validates, reads the keys, and keeps nothing.
func TestCheckOnly(t *testing.T) {
	dir := t.TempDir()
	keys := standardKeys(t, dir)
	s := newSigner(slog.New(slog.DiscardHandler))
	table := map[string]any{"keys": []any{map[string]any{"domain": "example.org", "selector": "e1", "key_file": filepath.Join(dir, keys[0].file)}}}
	if err := s.Configure(t.Context(), &sdk.Configuration{Kind: sdk.KindPolicy, Instance: "dkim", Table: table, CheckOnly: true}); err != nil {
		t.Fatal(err)
	}
	if len(s.instances) != 0 {
		t.Errorf("check-only configuration kept: %v", s.instances)
	}
	table["keys"].([]any)[0].(map[string]any)["key_file"] = "absent"
	if err := s.Configure(t.Context(), &sdk.Configuration{Kind: sdk.KindPolicy, Instance: "dkim", Table: table, CheckOnly: true, ConfigDir: dir}); err == nil {
		t.Errorf("check-only with an absent key file: no error")
	}
}

// A world-readable key file works, with a warning.
func TestKeyFileMode(t *testing.T) {
	dir := t.TempDir()
	k := newKey(t, dir, "example.org", "e1", false)
	os.Chmod(filepath.Join(dir, k.file), 0o644)
	var logs plugintest.LogBuffer
	s := newSigner(slog.New(slog.NewJSONHandler(&logs, nil)))
	table := map[string]any{"keys": []any{map[string]any{"domain": "example.org", "selector": "e1", "key_file": k.file}}}
	if err := s.Configure(t.Context(), &sdk.Configuration{Kind: sdk.KindPolicy, Instance: "dkim", Table: table, ConfigDir: dir}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "readable by every user") || !strings.Contains(logs.String(), `"key":"keys[0].key_file"`) {
		t.Errorf("no warning:\n%s", logs.String())
	}
}
