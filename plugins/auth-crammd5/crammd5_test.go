package authcrammd5

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/hostrpc"
	"github.com/switchyard-mta/switchyard/sdk/plugintest"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type fixture struct {
	c    hostrpc.Client
	host *plugintest.Host
	logs *plugintest.LogBuffer
}

// setup serves the plugin over real gRPC with host and configures it as the
// core does, with the server's hostname.
func setup(t *testing.T, host sdk.Host) *fixture {
	t.Helper()
	logs := &plugintest.LogBuffer{}
	m := newMechanism(slog.New(slog.NewJSONHandler(logs, nil)))
	c := plugintest.Connect(t, &sdk.Plugin{Name: "auth-crammd5", Version: "0.1.0", Mechanisms: []string{mechanismName}, Mechanism: m, Configurer: m}, host)
	if err := c.Configure(testCtx(t), &sdk.Configuration{Kind: sdk.KindPlugin, Instance: "auth-crammd5", Hostname: "mx.example.org"}); err != nil {
		t.Fatalf("configure: %v", err)
	}
	f := &fixture{c: c, logs: logs}
	f.host, _ = host.(*plugintest.Host)
	return f
}

// addUser stores the plugin's own derived secret in the host, as the core
// does when a password is set.
func (f *fixture) addUser(t *testing.T, login, account, password string) {
	t.Helper()
	secrets, err := f.c.Mechanism().(sdk.Deriver).Derive(testCtx(t), account, password)
	if err != nil {
		t.Fatalf("derive: %v", err)
	}
	if len(secrets) != 1 || secrets[mechanismName] == nil {
		t.Fatalf("derived %v, want one CRAM-MD5 secret", secrets)
	}
	f.host.SetSecret(login, mechanismName, sdk.Credential{Account: account, Login: login, Secret: secrets[mechanismName]})
}

// clientResponse is what an RFC 2195 client answers: username, space and
// the lower-case hex HMAC-MD5 of the challenge keyed with the password.
func clientResponse(user, password string, challenge []byte) []byte {
	mac := hmac.New(md5.New, []byte(password))
	mac.Write(challenge)
	return []byte(user + " " + hex.EncodeToString(mac.Sum(nil)))
}

var challengeRe = regexp.MustCompile(`^<[0-9]+\.[0-9]+@mx\.example\.org>$`)

// login runs an exchange and answers the challenge with respond.
func (f *fixture) login(t *testing.T, respond func(challenge []byte) []byte) *sdk.AuthOutcome {
	t.Helper()
	ctx := testCtx(t)
	ex, err := f.c.Mechanism().Start(ctx, mechanismName, sdk.ConnInfo{Protocol: "imap", RemoteAddr: "127.0.0.1:1143"})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	ch, out, err := ex.Next(ctx, nil)
	if err != nil || out != nil || !challengeRe.Match(ch) {
		t.Fatalf("challenge %q, outcome %+v, err %v; want <random.timestamp@mx.example.org>", ch, out, err)
	}
	ch2, out, err := ex.Next(ctx, respond(ch))
	if err != nil || out == nil {
		t.Fatalf("after response: challenge %q, outcome %+v, err %v; want an outcome", ch2, out, err)
	}
	return out
}

func TestLogin(t *testing.T) {
	f := setup(t, &plugintest.Host{})
	long := strings.Repeat("long password ", 10) // Over one block: HMAC hashes the key first.
	f.addUser(t, "alice@example.org", "alice", "tanstaaftanstaaf")
	f.addUser(t, "bob smith", "bob", long)
	f.addUser(t, "carol@example.org", "carol", "pässwörd")
	const alice, pw = "alice@example.org", "tanstaaftanstaaf"
	for _, tc := range []struct {
		name       string
		user, pass string
		edit       func(resp []byte) []byte // Changes the response; nil keeps it.
		wantAcct   string
		wantReason string
	}{
		{"right password", alice, pw, nil, "alice", ""},
		{"username in other case", "ALICE@example.org", pw, nil, "alice", ""},
		{"upper-case hex", alice, pw, bytes.ToUpper, "alice", ""},
		{"long password, space in username", "bob smith", long, nil, "bob", ""},
		{"UTF-8 password", "carol@example.org", "pässwörd", nil, "carol", ""},

		{"wrong password", alice, "tanstaaftanstaag", nil, "", "wrong digest"},
		{"unknown user", "nobody@example.org", pw, nil, "", "unknown user"},
		{"empty", alice, pw, func([]byte) []byte { return []byte{} }, "", "malformed"},
		{"no space", alice, pw, func([]byte) []byte { return []byte(alice) }, "", "malformed"},
		{"digest only", "", pw, func(r []byte) []byte { return r[1:] }, "", "malformed"},
		{"empty username", "", pw, nil, "", "username"},
		{"username not UTF-8", "\xff", pw, nil, "", "username"},
		{"short digest", alice, pw, func(r []byte) []byte { return r[:len(r)-2] }, "", "malformed"},
		{"odd digest", alice, pw, func(r []byte) []byte { return r[:len(r)-1] }, "", "malformed"},
		{"digest not hex", alice, pw, func([]byte) []byte { return []byte(alice + " " + strings.Repeat("zz", 16)) }, "", "malformed"},
		{"trailing space", alice, pw, func(r []byte) []byte { return append(r, ' ') }, "", "malformed"},
		{"too long", strings.Repeat("a", 5000), pw, nil, "", "bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := f.login(t, func(c []byte) []byte {
				r := clientResponse(tc.user, tc.pass, c)
				if tc.edit != nil {
					r = tc.edit(r)
				}
				return r
			})
			if tc.wantReason == "" {
				if !out.Success || out.Account != tc.wantAcct || out.Login == "" {
					t.Fatalf("outcome %+v, want success as %s", out, tc.wantAcct)
				}
				return
			}
			if out.Success || out.Temporary || !strings.Contains(out.Reason, tc.wantReason) {
				t.Fatalf("outcome %+v, want a failure with reason containing %q", out, tc.wantReason)
			}
		})
	}
	// A digest of another challenge (a replay) fails.
	out := f.login(t, func([]byte) []byte { return clientResponse(alice, pw, []byte("<1.2@mx.example.org>")) })
	if out.Success || !strings.Contains(out.Reason, "wrong digest") {
		t.Fatalf("replayed digest: outcome %+v", out)
	}
}

func TestChallengesDiffer(t *testing.T) {
	f := setup(t, &plugintest.Host{})
	seen := map[string]bool{}
	for range 20 {
		ex, err := f.c.Mechanism().Start(testCtx(t), mechanismName, sdk.ConnInfo{})
		if err != nil {
			t.Fatal(err)
		}
		ch, _, err := ex.Next(testCtx(t), nil)
		if err != nil || seen[string(ch)] {
			t.Fatalf("challenge %q repeated or err %v", ch, err)
		}
		seen[string(ch)] = true
	}
}

func TestInitialResponse(t *testing.T) {
	f := setup(t, &plugintest.Host{})
	f.addUser(t, "alice@example.org", "alice", "secret")
	for _, ir := range [][]byte{{}, clientResponse("alice@example.org", "secret", []byte("<1.2@mx.example.org>"))} {
		ex, err := f.c.Mechanism().Start(testCtx(t), mechanismName, sdk.ConnInfo{})
		if err != nil {
			t.Fatal(err)
		}
		ch, out, err := ex.Next(testCtx(t), ir)
		if err != nil || out == nil || out.Success || !strings.Contains(out.Reason, "initial response") {
			t.Fatalf("initial response %q: challenge %q, outcome %+v, err %v; want a failure", ir, ch, out, err)
		}
	}
}

// failingHost fails every lookup, as a core whose store is down.
type failingHost struct{}

func (failingHost) Secret(ctx context.Context, username, mechanism string) (*sdk.Credential, error) {
	return nil, errors.New("store offline")
}

func (failingHost) TLSPublicKey(ctx context.Context, spkiSHA256 []byte) (*sdk.TLSKey, error) {
	return nil, errors.New("store offline")
}

func TestTemporaryFailures(t *testing.T) {
	f := setup(t, failingHost{})
	out := f.login(t, func(c []byte) []byte { return clientResponse("alice@example.org", "x", c) })
	if out.Success || !out.Temporary || !strings.Contains(out.Reason, "store offline") {
		t.Fatalf("host down: outcome %+v, want a temporary failure", out)
	}

	f = setup(t, &plugintest.Host{})
	f.host.SetSecret("broken@example.org", mechanismName, sdk.Credential{Account: "broken", Secret: []byte("{CRAM-MD5}00")})
	out = f.login(t, func(c []byte) []byte { return clientResponse("broken@example.org", "x", c) })
	if out.Success || !out.Temporary || !strings.Contains(out.Reason, "stored secret") {
		t.Fatalf("corrupt secret: outcome %+v, want a temporary failure", out)
	}

	// Unconfigured: no host yet.
	m := newMechanism(slog.New(slog.DiscardHandler))
	c := plugintest.Connect(t, &sdk.Plugin{Name: "auth-crammd5", Mechanisms: []string{mechanismName}, Mechanism: m, Configurer: m}, &plugintest.Host{})
	ex, err := c.Mechanism().Start(testCtx(t), mechanismName, sdk.ConnInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if _, out, err := ex.Next(testCtx(t), nil); err != nil || out == nil || !out.Temporary {
		t.Fatalf("unconfigured: outcome %+v, err %v; want a temporary failure", out, err)
	}
}

func TestDerive(t *testing.T) {
	f := setup(t, &plugintest.Host{})
	d := f.c.Mechanism().(sdk.Deriver)
	for _, password := range []string{"password", "tanstaaftanstaaf", strings.Repeat("x", 100)} {
		s, err := d.Derive(testCtx(t), "alice", password)
		if err != nil {
			t.Fatal(err)
		}
		secret := s[mechanismName]
		if bytes.Contains(secret, []byte(password)) || bytes.Contains(secret, []byte(hex.EncodeToString([]byte(password)))) {
			t.Errorf("secret %q contains the password", secret)
		}
		p, err := decodePads(secret)
		if err != nil {
			t.Fatalf("%q: %v", secret, err)
		}
		// The stored states give the same HMAC as the key itself.
		challenge := []byte("<1896.697170952@postoffice.reston.mci.net>")
		got, err := p.digest(challenge)
		mac := hmac.New(md5.New, []byte(password))
		mac.Write(challenge)
		if err != nil || !bytes.Equal(got, mac.Sum(nil)) {
			t.Errorf("%q: digest from states %x, %v; HMAC-MD5 is %x", password, got, err, mac.Sum(nil))
		}
	}
	// The example of RFC 2195 §2.
	p := derivePads("tanstaaftanstaaf")
	if got, _ := p.digest([]byte("<1896.697170952@postoffice.reston.mci.net>")); hex.EncodeToString(got) != "b913a602c7eda7a495b4e6e7334d3890" {
		t.Errorf("RFC 2195 example: digest %x", got)
	}
	// Dovecot's `doveadm pw -s CRAM-MD5 -p password`, whose layout this is.
	if got := string(derivePads("password").encode()); got != "CRAM-MD5$9186d855e11eba527a7a52ca82b313e180d62234f0acc9051b527243d41e2740" {
		t.Errorf("secret of \"password\" is %s, not Dovecot's", got)
	}
	if _, err := d.Derive(testCtx(t), "alice", ""); err == nil {
		t.Errorf("deriving from an empty password succeeded")
	}
	for _, bad := range []string{"", "CRAM-MD5$", "CRAM-MD5$" + strings.Repeat("0", 62), "CRAM-MD5$" + strings.Repeat("g", 64), "{CRAM-MD5}" + strings.Repeat("0", 64)} {
		if _, err := decodePads([]byte(bad)); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func TestConfigure(t *testing.T) {
	f := setup(t, &plugintest.Host{})
	var ces sdk.ConfigErrors
	err := f.c.Configure(testCtx(t), &sdk.Configuration{Kind: sdk.KindPlugin, Table: map[string]any{"hostname": "x"}, CheckOnly: true})
	if !errors.As(err, &ces) || !strings.Contains(err.Error(), "hostname: unknown key") {
		t.Fatalf("unknown key: %v", err)
	}
	if err := f.c.Configure(testCtx(t), &sdk.Configuration{Kind: sdk.KindMechanism, Instance: "CRAM-MD5"}); err != nil {
		t.Fatalf("mechanism kind: %v", err)
	}
}

func TestLog(t *testing.T) {
	f := setup(t, &plugintest.Host{})
	f.addUser(t, "alice@example.org", "alice", "tanstaaftanstaaf")
	f.login(t, func(c []byte) []byte { return clientResponse("alice@example.org", "tanstaaftanstaaf", c) })
	f.login(t, func(c []byte) []byte { return clientResponse("nobody@example.org", "tanstaaftanstaaf", c) })
	lines := strings.Split(strings.TrimSpace(f.logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want one per outcome:\n%s", len(lines), f.logs)
	}
	for i, want := range []string{
		`"mechanism":"CRAM-MD5","login":"alice@example.org","account":"alice","result":"success","reason":""`,
		`"mechanism":"CRAM-MD5","login":"nobody@example.org","account":"","result":"failure","reason":"unknown user"`,
	} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("log line %d: %s\nwant it to contain %s", i, lines[i], want)
		}
	}
	if strings.Contains(f.logs.String(), "tanstaaf") {
		t.Errorf("log contains a password:\n%s", f.logs)
	}
}
