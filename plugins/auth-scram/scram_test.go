package authscram

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdg-go/scram"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/hostrpc"
	"github.com/switchyard-mta/switchyard/sdk/plugintest"
)

const testIterations = 4100 // Not the default, so tests see configuration apply.

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

// setup serves the plugin over real gRPC with a fake host and configures it
// with table, as the core does with [plugins.auth-scram.config].
func setup(t *testing.T, host sdk.Host, table map[string]any) *fixture {
	t.Helper()
	logs := &plugintest.LogBuffer{}
	m := newMechanism(slog.New(slog.NewJSONHandler(logs, nil)))
	c := plugintest.Connect(t, &sdk.Plugin{Name: "auth-scram", Version: "0.1.0", Mechanisms: mechanismNames, Mechanism: m, Configurer: m}, host)
	err := c.Configure(testCtx(t), &sdk.Configuration{Kind: sdk.KindPlugin, Instance: "auth-scram", KeyPath: "plugins.auth-scram.config", Table: table, Hostname: "mx.example.org"})
	if err != nil {
		t.Fatalf("configure: %v", err)
	}
	f := &fixture{c: c, logs: logs}
	f.host, _ = host.(*plugintest.Host)
	return f
}

func setupUsers(t *testing.T) *fixture {
	f := setup(t, &plugintest.Host{}, map[string]any{"iterations": int64(testIterations)})
	f.addUser(t, "alice@example.org", "alice", "correct horse")
	return f
}

// addUser stores the plugin's own derived secrets in the host, as the core
// does when a password is set.
func (f *fixture) addUser(t *testing.T, login, account, password string) {
	t.Helper()
	secrets, err := f.c.Mechanism().(sdk.Deriver).Derive(testCtx(t), account, password)
	if err != nil {
		t.Fatalf("derive: %v", err)
	}
	for name, s := range secrets {
		f.host.SetSecret(login, name, sdk.Credential{Account: account, Login: login, Secret: s})
	}
}

// attempt is one login by a real SCRAM client.
type attempt struct {
	mech        string
	user, pass  string
	authz       string
	flag        string               // GS2 flag the client uses: "n", "y" or "p".
	cb          scram.ChannelBinding // The client's view of the channel, with "p".
	tls         *sdk.TLSInfo         // The server's view of the channel.
	noInitial   bool                 // Send client-first after an empty challenge.
	tamperFinal func(string) string
	offered     []string // sdk.ConnInfo.Offered; nil: the core did not say.
}

// login runs a with xdg-go/scram's client against the plugin over RPC. It
// returns the outcome and the server-first-message, if the exchange got
// that far. On success, the client must verify the server's signature.
func (f *fixture) login(t *testing.T, a attempt) (*sdk.AuthOutcome, string) {
	t.Helper()
	ctx := testCtx(t)
	fam, _, _ := lookupFamily(a.mech)
	client, err := fam.hash.NewClient(a.user, a.pass, a.authz)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	var conv *scram.ClientConversation
	switch a.flag {
	case "n":
		conv = client.NewConversation()
	case "y":
		conv = client.NewConversationAdvertisingChannelBinding()
	case "p":
		conv = client.NewConversationWithChannelBinding(a.cb)
	}
	ex, err := f.c.Mechanism().Start(ctx, a.mech, sdk.ConnInfo{Protocol: "smtp", RemoteAddr: "127.0.0.1:2525", TLS: a.tls, Offered: a.offered})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	c1, err := conv.Step("")
	if err != nil {
		t.Fatalf("client-first: %v", err)
	}
	if a.noInitial {
		ch, out, err := ex.Next(ctx, nil)
		if err != nil || out != nil || len(ch) != 0 {
			t.Fatalf("without initial response: challenge %q, outcome %+v, err %v; want an empty challenge", ch, out, err)
		}
	}
	ch, out, err := ex.Next(ctx, []byte(c1))
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	if out != nil {
		return out, ""
	}
	s1 := string(ch)
	c2, err := conv.Step(s1)
	if err != nil {
		t.Fatalf("client on server-first %q: %v", s1, err)
	}
	if a.tamperFinal != nil {
		c2 = a.tamperFinal(c2)
	}
	ch, out, err = ex.Next(ctx, []byte(c2))
	if err != nil || out == nil {
		t.Fatalf("after client-final: challenge %q, outcome %+v, err %v; want an outcome", ch, out, err)
	}
	if out.Success {
		if _, err := conv.Step(string(out.FinalData)); err != nil || !conv.Valid() {
			t.Fatalf("client rejects server-final %q: %v", out.FinalData, err)
		}
	}
	return out, s1
}

var (
	tls13 = &sdk.TLSInfo{Version: tls.VersionTLS13, Exporter: bytes.Repeat([]byte{0x13}, 32), ServerEndPoint: bytes.Repeat([]byte{0xe1}, 32)}
	tls12 = &sdk.TLSInfo{Version: tls.VersionTLS12, Unique: bytes.Repeat([]byte{0x12}, 12), ServerEndPoint: bytes.Repeat([]byte{0xe2}, 32)}
	// A core bug filling tls-unique on TLS 1.3 must not make it usable.
	tls13Unique = &sdk.TLSInfo{Version: tls.VersionTLS13, Exporter: tls13.Exporter, Unique: tls12.Unique, ServerEndPoint: tls13.ServerEndPoint}
)

func binding(t scram.ChannelBindingType, data []byte) scram.ChannelBinding {
	return scram.ChannelBinding{Type: t, Data: data}
}

func TestLogin(t *testing.T) {
	f := setupUsers(t)
	exporter := scram.ChannelBindingTLSExporter
	unique := scram.ChannelBindingTLSUnique
	endpoint := scram.ChannelBindingTLSServerEndpoint
	type row struct {
		name       string
		a          attempt
		wantReason string // Empty: success.
	}
	var rows []row
	for _, base := range []string{"SCRAM-SHA-256", "SCRAM-SHA-1"} {
		plus := base + "-PLUS"
		rows = append(rows,
			row{base + " plain", attempt{mech: base, flag: "n"}, ""},
			row{base + " no initial response", attempt{mech: base, flag: "n", noInitial: true}, ""},
			row{base + " y without TLS", attempt{mech: base, flag: "y"}, ""},
			row{base + " n over TLS 1.3", attempt{mech: base, flag: "n", tls: tls13}, ""},
			row{plus + " tls-exporter TLS 1.3", attempt{mech: plus, flag: "p", tls: tls13, cb: binding(exporter, tls13.Exporter)}, ""},
			row{plus + " tls-server-end-point TLS 1.3", attempt{mech: plus, flag: "p", tls: tls13, cb: binding(endpoint, tls13.ServerEndPoint)}, ""},
			row{plus + " tls-unique TLS 1.2", attempt{mech: plus, flag: "p", tls: tls12, cb: binding(unique, tls12.Unique), noInitial: true}, ""},
			row{plus + " tls-server-end-point TLS 1.2", attempt{mech: plus, flag: "p", tls: tls12, cb: binding(endpoint, tls12.ServerEndPoint)}, ""},
			row{base + " own authzid", attempt{mech: base, flag: "n", authz: "Alice@example.org"}, ""},

			row{base + " wrong password", attempt{mech: base, flag: "n", pass: "wrong horse"}, "proof invalid"},
			row{plus + " wrong password", attempt{mech: plus, flag: "p", tls: tls13, cb: binding(exporter, tls13.Exporter), pass: "wrong horse"}, "proof invalid"},
			row{plus + " tampered tls-exporter", attempt{mech: plus, flag: "p", tls: tls13, cb: binding(exporter, tls12.ServerEndPoint)}, "channel binding mismatch"},
			row{plus + " tampered tls-unique", attempt{mech: plus, flag: "p", tls: tls12, cb: binding(unique, []byte("0123456789ab"))}, "channel binding mismatch"},
			row{plus + " tampered tls-server-end-point", attempt{mech: plus, flag: "p", tls: tls12, cb: binding(endpoint, tls13.ServerEndPoint)}, "channel binding mismatch"},
			row{base + " downgrade y over TLS 1.3", attempt{mech: base, flag: "y", tls: tls13}, "downgrade"},
			row{base + " downgrade y over TLS 1.2", attempt{mech: base, flag: "y", tls: tls12}, "downgrade"},
			row{base + " downgrade y where -PLUS offered", attempt{mech: base, flag: "y", tls: tls13, offered: []string{plus, base}}, "downgrade"},
			// The default offers no -PLUS: a client able to bind says so with y.
			row{base + " y over TLS where no -PLUS offered", attempt{mech: base, flag: "y", tls: tls13, offered: []string{base, "PLAIN"}}, ""},
			row{plus + " without TLS", attempt{mech: plus, flag: "p", cb: binding(exporter, tls13.Exporter)}, "without TLS"},
			row{plus + " with flag n", attempt{mech: plus, flag: "n", tls: tls13}, "requires channel binding"},
			row{plus + " with flag y", attempt{mech: plus, flag: "y", tls: tls13}, "requires channel binding"},
			row{base + " with flag p (Cyrus SASL)", attempt{mech: base, flag: "p", tls: tls13, cb: binding(exporter, tls13.Exporter)}, ""},
			row{base + " with flag p, tampered", attempt{mech: base, flag: "p", tls: tls12, cb: binding(unique, []byte("0123456789ab"))}, "channel binding mismatch"},
			row{base + " with flag p without TLS", attempt{mech: base, flag: "p", cb: binding(exporter, tls13.Exporter)}, "without TLS"},
			row{plus + " tls-unique on TLS 1.3", attempt{mech: plus, flag: "p", tls: tls13Unique, cb: binding(unique, tls12.Unique)}, "not available"},
			row{plus + " tls-exporter on TLS 1.2", attempt{mech: plus, flag: "p", tls: tls12, cb: binding(exporter, tls13.Exporter)}, "not available"},
			row{base + " foreign authzid", attempt{mech: base, flag: "n", authz: "bob@example.org"}, "authorization identity"},
			row{base + " tampered nonce", attempt{mech: base, flag: "n", tamperFinal: func(s string) string { return strings.Replace(s, ",r=", ",r=x", 1) }}, "nonce"},
		)
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			a := r.a
			if a.user == "" {
				a.user = "alice@example.org"
			}
			if a.pass == "" {
				a.pass = "correct horse"
			}
			out, _ := f.login(t, a)
			if r.wantReason == "" {
				if !out.Success || out.Account != "alice" || out.Login != "alice@example.org" || !strings.HasPrefix(string(out.FinalData), "v=") {
					t.Fatalf("outcome %+v, want success as alice with v=", out)
				}
				return
			}
			if out.Success || out.Temporary || !strings.Contains(out.Reason, r.wantReason) {
				t.Fatalf("outcome %+v, want a failure with reason containing %q", out, r.wantReason)
			}
		})
	}
}

// serverFirst splits a server-first-message into its salt and iterations.
func serverFirst(t *testing.T, s1 string) ([]byte, int) {
	t.Helper()
	fields := strings.Split(s1, ",")
	if len(fields) != 3 || !strings.HasPrefix(fields[1], "s=") || !strings.HasPrefix(fields[2], "i=") {
		t.Fatalf("server-first-message %q", s1)
	}
	salt, err := base64.StdEncoding.DecodeString(fields[1][2:])
	if err != nil {
		t.Fatalf("salt in %q: %v", s1, err)
	}
	iters, err := strconv.Atoi(fields[2][2:])
	if err != nil {
		t.Fatalf("iterations in %q: %v", s1, err)
	}
	return salt, iters
}

func TestUnknownUser(t *testing.T) {
	f := setupUsers(t)
	_, known := f.login(t, attempt{mech: "SCRAM-SHA-256", flag: "n", user: "alice@example.org", pass: "correct horse"})
	knownSalt, knownIters := serverFirst(t, known)

	salts := map[string]string{}
	for _, user := range []string{"nobody@example.org", "NOBODY@example.org", "other@example.org"} {
		for _, mech := range []string{"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1"} {
			a := attempt{mech: mech, flag: "n", user: user, pass: "correct horse"}
			if strings.HasSuffix(mech, "-PLUS") {
				a.flag, a.tls, a.cb = "p", tls13, binding(scram.ChannelBindingTLSExporter, tls13.Exporter)
			}
			out, s1 := f.login(t, a)
			if out.Success || out.Temporary || out.Reason != "unknown user" {
				t.Fatalf("%s %s: outcome %+v, want failure for unknown user", mech, user, out)
			}
			if s1 == "" {
				t.Fatalf("%s %s: exchange ended before server-first", mech, user)
			}
			salt, iters := serverFirst(t, s1)
			if len(salt) != len(knownSalt) || iters != knownIters || iters != testIterations {
				t.Fatalf("%s %s: fake salt of %d bytes and %d iterations; known user has %d bytes, %d", mech, user, len(salt), iters, len(knownSalt), knownIters)
			}
			key := strings.TrimSuffix(mech, "-PLUS") + " " + strings.ToLower(user)
			if prev, ok := salts[key]; ok && prev != string(salt) {
				t.Fatalf("%s: salt changed between attempts", key)
			}
			salts[key] = string(salt)
		}
	}
	if salts["SCRAM-SHA-256 nobody@example.org"] == salts["SCRAM-SHA-256 other@example.org"] {
		t.Fatalf("two unknown users share a salt")
	}
	if salts["SCRAM-SHA-256 nobody@example.org"] == salts["SCRAM-SHA-1 nobody@example.org"] {
		t.Fatalf("one unknown user has the same salt for SHA-1 and SHA-256")
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
	f := setup(t, &failingHost{}, nil)
	out, _ := f.login(t, attempt{mech: "SCRAM-SHA-256", flag: "n", user: "alice@example.org", pass: "x"})
	if out.Success || !out.Temporary || !strings.Contains(out.Reason, "store offline") {
		t.Fatalf("host down: outcome %+v, want a temporary failure", out)
	}

	f = setupUsers(t)
	f.host.SetSecret("broken@example.org", "SCRAM-SHA-256", sdk.Credential{Account: "broken", Secret: []byte("SCRAM-SHA-256$4096:AAAA$AAAA")})
	out, _ = f.login(t, attempt{mech: "SCRAM-SHA-256", flag: "n", user: "broken@example.org", pass: "x"})
	if out.Success || !out.Temporary || !strings.Contains(out.Reason, "stored secret") {
		t.Fatalf("corrupt secret: outcome %+v, want a temporary failure", out)
	}
}

func TestMalformed(t *testing.T) {
	f := setupUsers(t)
	ctx := testCtx(t)
	for _, tc := range []struct {
		name  string
		mech  string
		tls   *sdk.TLSInfo
		first string
	}{
		{"empty", "SCRAM-SHA-256", nil, ""},
		{"flag only", "SCRAM-SHA-256", nil, "n"},
		{"header only", "SCRAM-SHA-256", nil, "n,,"},
		{"no nonce", "SCRAM-SHA-256", nil, "n,,n=alice@example.org"},
		{"fields swapped", "SCRAM-SHA-256", nil, "n,,r=abc,n=alice@example.org"},
		{"bad flag", "SCRAM-SHA-256", nil, "x,,n=alice@example.org,r=abc"},
		{"unknown binding type", "SCRAM-SHA-256-PLUS", tls13, "p=tls-foo,,n=alice@example.org,r=abc"},
		{"empty binding type", "SCRAM-SHA-256-PLUS", tls13, "p=,,n=alice@example.org,r=abc"},
		{"extension", "SCRAM-SHA-256", nil, "n,,m=ext,n=alice@example.org,r=abc"},
		{"bad name encoding", "SCRAM-SHA-256", nil, "n,,n=al=ice,r=abc"},
		{"bad authzid encoding", "SCRAM-SHA-256", nil, "n,a=b=b,n=alice@example.org,r=abc"},
		{"authzid without a=", "SCRAM-SHA-256", nil, "n,bob,n=alice@example.org,r=abc"},
		{"empty username", "SCRAM-SHA-256", nil, "n,,n=,r=abc"},
		{"username not UTF-8", "SCRAM-SHA-1", nil, "n,,n=\xff\xfe,r=abc"},
		{"binary", "SCRAM-SHA-1", nil, "\x00\x01\x02,\x03"},
		{"too long", "SCRAM-SHA-256", nil, "n,,n=alice@example.org,r=" + strings.Repeat("a", 5000)},
	} {
		t.Run("client-first "+tc.name, func(t *testing.T) {
			ex, err := f.c.Mechanism().Start(ctx, tc.mech, sdk.ConnInfo{TLS: tc.tls})
			if err != nil {
				t.Fatal(err)
			}
			ch, out, err := ex.Next(ctx, []byte(tc.first))
			if err != nil || out == nil || out.Success || out.Temporary {
				t.Fatalf("challenge %q, outcome %+v, err %v; want a failure", ch, out, err)
			}
		})
	}

	const c1 = "n,,n=alice@example.org,r=clientnonce"
	proof := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, tc := range []struct {
		name  string
		final string // NONCE stands for the combined nonce.
	}{
		{"empty", ""},
		{"binding only", "c=biws"},
		{"no proof", "c=biws,r=NONCE"},
		{"binding not base64", "c=!!,r=NONCE,p=" + proof},
		{"binding of flag y", "c=eSws,r=NONCE,p=" + proof},
		{"nonce of client only", "c=biws,r=clientnonce,p=" + proof},
		{"proof not base64", "c=biws,r=NONCE,p=###"},
		{"proof too short", "c=biws,r=NONCE,p=AAAA"},
		{"wrong proof", "c=biws,r=NONCE,p=" + proof},
		{"fields swapped", "r=NONCE,c=biws,p=" + proof},
		{"too long", "c=biws,r=NONCE,p=" + strings.Repeat("A", 5000)},
	} {
		t.Run("client-final "+tc.name, func(t *testing.T) {
			ex, err := f.c.Mechanism().Start(ctx, "SCRAM-SHA-256", sdk.ConnInfo{})
			if err != nil {
				t.Fatal(err)
			}
			ch, out, err := ex.Next(ctx, []byte(c1))
			if err != nil || out != nil {
				t.Fatalf("client-first: outcome %+v, err %v", out, err)
			}
			nonce, _, _ := strings.Cut(strings.TrimPrefix(string(ch), "r="), ",")
			if !strings.HasPrefix(nonce, "clientnonce") || len(nonce) <= len("clientnonce") {
				t.Fatalf("server-first %q does not extend the client nonce", ch)
			}
			final := strings.ReplaceAll(tc.final, "NONCE", nonce)
			ch, out, err = ex.Next(ctx, []byte(final))
			if err != nil || out == nil || out.Success || out.Temporary {
				t.Fatalf("challenge %q, outcome %+v, err %v; want a failure", ch, out, err)
			}
		})
	}
}

func TestDerive(t *testing.T) {
	f := setupUsers(t)
	ctx := testCtx(t)
	const password = "correct horse"
	d := f.c.Mechanism().(sdk.Deriver)
	s1, err := d.Derive(ctx, "alice", password)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := d.Derive(ctx, "alice", password)
	if err != nil {
		t.Fatal(err)
	}
	if len(s1) != 2 {
		t.Fatalf("derived %d secrets, want SCRAM-SHA-256 and SCRAM-SHA-1", len(s1))
	}
	for _, fam := range families {
		a, b := s1[fam.name], s2[fam.name]
		if bytes.Equal(a, b) {
			t.Errorf("%s: two derivations are equal: the salt is not random", fam.name)
		}
		for _, leak := range []string{password, base64.StdEncoding.EncodeToString([]byte(password)), base64.RawStdEncoding.EncodeToString([]byte(password))} {
			if bytes.Contains(a, []byte(leak)) {
				t.Errorf("%s: secret %q contains the password", fam.name, a)
			}
		}
		sc, err := decodeSecret(fam, a)
		if err != nil {
			t.Fatalf("%s: %v", fam.name, err)
		}
		if sc.Iters != testIterations || len(sc.Salt) != saltLen || !strings.HasPrefix(string(a), fam.name+"$"+strconv.Itoa(testIterations)+":") {
			t.Errorf("%s: secret %q, want %d iterations and a %d-byte salt", fam.name, a, testIterations, saltLen)
		}
	}
	if _, err := d.Derive(ctx, "alice", ""); err == nil {
		t.Errorf("deriving from an empty password succeeded")
	}

	// Passwords are SASLprep'ed (RFC 5802 §2.2): a soft hyphen maps to nothing.
	f.addUser(t, "carol@example.org", "carol", "pass\u00adword")
	if out, _ := f.login(t, attempt{mech: "SCRAM-SHA-256", flag: "n", user: "carol@example.org", pass: "password"}); !out.Success {
		t.Errorf("SASLprep'ed password: outcome %+v", out)
	}

	// An unconfigured plugin derives with the default count.
	g := setup(t, &plugintest.Host{}, nil)
	s3, err := g.c.Mechanism().(sdk.Deriver).Derive(ctx, "alice", password)
	if err != nil {
		t.Fatal(err)
	}
	if sc, err := decodeSecret(families[0], s3["SCRAM-SHA-256"]); err != nil || sc.Iters != defaultIterations {
		t.Errorf("default iterations: %+v, %v", sc.KeyFactors, err)
	}
}

func TestDecodeSecret(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	good := "SCRAM-SHA-256$4096:c2FsdA==$" + key + ":" + key
	if _, err := decodeSecret(families[0], []byte(good)); err != nil {
		t.Fatalf("%s: %v", good, err)
	}
	for _, s := range []string{
		"",
		"SCRAM-SHA-1$4096:c2FsdA==$" + key + ":" + key, // Other family.
		"SCRAM-SHA-256$4096:c2FsdA==$" + key,
		"SCRAM-SHA-256$0:c2FsdA==$" + key + ":" + key,
		"SCRAM-SHA-256$x:c2FsdA==$" + key + ":" + key,
		"SCRAM-SHA-256$4096:$" + key + ":" + key,
		"SCRAM-SHA-256$4096:!!$" + key + ":" + key,
		"SCRAM-SHA-256$4096:c2FsdA==$AAAA:" + key,
		"SCRAM-SHA-256$4096:c2FsdA==$" + key + ":" + key + "$",
	} {
		if _, err := decodeSecret(families[0], []byte(s)); err == nil {
			t.Errorf("%q decoded", s)
		}
	}
}

func TestConfigure(t *testing.T) {
	m := newMechanism(slog.New(slog.DiscardHandler))
	c := plugintest.Connect(t, &sdk.Plugin{Name: "auth-scram", Mechanisms: mechanismNames, Mechanism: m, Configurer: m}, &plugintest.Host{})
	for _, tc := range []struct {
		name  string
		kind  sdk.Kind
		table map[string]any
		want  string // Empty: accepted.
	}{
		{"defaults", sdk.KindPlugin, nil, ""},
		{"minimum", sdk.KindPlugin, map[string]any{"iterations": int64(4096)}, ""},
		{"higher", sdk.KindPlugin, map[string]any{"iterations": int64(100000)}, ""},
		{"too few", sdk.KindPlugin, map[string]any{"iterations": int64(1000)}, "iterations: 1000 is out of range"},
		{"zero", sdk.KindPlugin, map[string]any{"iterations": int64(0)}, "iterations: 0 is out of range"},
		{"too many", sdk.KindPlugin, map[string]any{"iterations": int64(1 << 30)}, "iterations:"},
		{"wrong type", sdk.KindPlugin, map[string]any{"iterations": "many"}, "iterations:"},
		{"unknown key", sdk.KindPlugin, map[string]any{"iteration": int64(4096)}, "iteration: unknown key"},
		{"mechanism table", sdk.KindMechanism, map[string]any{"iterations": int64(4096)}, "plugins.<name>.config"},
		{"mechanism without table", sdk.KindMechanism, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Configure(testCtx(t), &sdk.Configuration{Kind: tc.kind, Instance: "auth-scram", Table: tc.table, CheckOnly: true})
			var ces sdk.ConfigErrors
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.want != "" && (!errors.As(err, &ces) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want ConfigErrors containing %q", err, tc.want)
			}
		})
	}
	// CheckOnly applies nothing.
	if got := m.config().iterations; got != defaultIterations {
		t.Fatalf("CheckOnly changed iterations to %d", got)
	}
	// Unconfigured: no host, a temporary failure.
	ex, err := c.Mechanism().Start(testCtx(t), "SCRAM-SHA-256", sdk.ConnInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if _, out, err := ex.Next(testCtx(t), []byte("n,,n=alice,r=abc")); err != nil || out == nil || !out.Temporary {
		t.Fatalf("unconfigured: outcome %+v, err %v; want a temporary failure", out, err)
	}
	// A mechanism the plugin did not describe is the core's error, not the client's.
	ex, err = c.Mechanism().Start(testCtx(t), "SCRAM-SHA-512", sdk.ConnInfo{})
	if err == nil {
		_, _, err = ex.Next(testCtx(t), nil) // Over RPC, Start is sent with the first Next.
	}
	if err == nil || !strings.Contains(err.Error(), "not served") {
		t.Fatalf("unknown mechanism: err %v", err)
	}
}

func TestLog(t *testing.T) {
	f := setupUsers(t)
	f.login(t, attempt{mech: "SCRAM-SHA-256-PLUS", flag: "p", tls: tls13, cb: binding(scram.ChannelBindingTLSExporter, tls13.Exporter), user: "alice@example.org", pass: "correct horse"})
	f.login(t, attempt{mech: "SCRAM-SHA-1", flag: "n", user: "alice@example.org", pass: "correct horsf"})
	lines := strings.Split(strings.TrimSpace(f.logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want one per outcome:\n%s", len(lines), f.logs)
	}
	for i, want := range []string{
		`"mechanism":"SCRAM-SHA-256-PLUS","login":"alice@example.org","account":"alice","result":"success","reason":"","tls":"TLS 1.3","protocol":"smtp","remote":"127.0.0.1:2525","binding":"tls-exporter"`,
		`"mechanism":"SCRAM-SHA-1","login":"alice@example.org","account":"","result":"failure","reason":"client-final-message: challenge proof invalid"`,
	} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("log line %d: %s\nwant it to contain %s", i, lines[i], want)
		}
	}
	if strings.Contains(f.logs.String(), "horse") || strings.Contains(f.logs.String(), "horsf") {
		t.Errorf("log contains a password:\n%s", f.logs)
	}
}
