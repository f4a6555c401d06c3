package imapd

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/switchyard-mta/switchyard/core/authlimit"
	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/sasl"
	"github.com/switchyard-mta/switchyard/sdk"
)

// fakeMechs is a mechanism host: every name is served by a fakeExchange,
// but those in down, whose plugin is not running.
type fakeMechs struct {
	mu    sync.Mutex
	down  map[string]bool
	conns []sdk.ConnInfo // Of every Start.
	ended chan string    // An exchange's context ended, with the mechanism.
}

func (f *fakeMechs) Mechanisms() []string {
	return []string{"CRAM-MD5", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}
}

func (f *fakeMechs) Mechanism(name string) (sdk.Mechanism, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down[name] {
		return nil, errors.New("plugin down")
	}
	return f, nil
}

func (f *fakeMechs) setDown(mech string, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down[mech] = down
}

func (f *fakeMechs) Start(ctx context.Context, mech string, conn sdk.ConnInfo) (sdk.Exchange, error) {
	f.mu.Lock()
	f.conns = append(f.conns, conn)
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.ended <- mech
	}()
	return &fakeExchange{mech: mech}, nil
}

// fakeExchange takes "login password", as initial response or in answer
// to its first challenge: "who?", or for SCRAM names an empty one, as
// SCRAM asks for client-first. alice's password is "secret"; "ghost" is an
// account the listener does not know; password "temp" is a temporary
// failure and "hang" never answers. SCRAM names succeed with additional
// data "v=done".
type fakeExchange struct {
	mech  string
	asked bool
}

func (e *fakeExchange) Next(ctx context.Context, resp []byte) ([]byte, *sdk.AuthOutcome, error) {
	if resp == nil && !e.asked {
		e.asked = true
		if strings.HasPrefix(e.mech, "SCRAM") {
			return []byte{}, nil, nil
		}
		return []byte("who?"), nil, nil
	}
	login, password, _ := strings.Cut(string(resp), " ")
	switch {
	case password == "hang":
		<-ctx.Done()
		return nil, nil, ctx.Err()
	case password == "temp":
		return nil, &sdk.AuthOutcome{Temporary: true, Reason: "lookup failed"}, nil
	case login == "ghost":
		return nil, &sdk.AuthOutcome{Success: true, Account: "ghost", Login: login}, nil
	case login != "alice" || password != "secret":
		return nil, &sdk.AuthOutcome{Login: login, Reason: "wrong"}, nil
	}
	o := &sdk.AuthOutcome{Success: true, Account: "alice", Login: login}
	if strings.HasPrefix(e.mech, "SCRAM") {
		o.FinalData = []byte("v=done")
	}
	return nil, o, nil
}

// fakeClient is the client side of fakeExchange for go-imap's client: it
// answers any challenge but the additional data with its credentials, and
// that with an empty response (RFC 4422 §5).
type fakeClient struct {
	mech, login, password string
	ir                    bool // Send the credentials as initial response.
	challenges            []string
}

func (c *fakeClient) Start() (string, []byte, error) {
	if c.ir {
		return c.mech, []byte(c.login + " " + c.password), nil
	}
	return c.mech, nil, nil
}

func (c *fakeClient) Next(challenge []byte) ([]byte, error) {
	c.challenges = append(c.challenges, string(challenge))
	if string(challenge) == "v=done" {
		return []byte{}, nil
	}
	return []byte(c.login + " " + c.password), nil
}

// startSASL serves a listener of kind with the fake mechanisms, in their
// default order unless order is set.
// withPlus is the order the tests offer: the default offers no -PLUS
// (core/sasl.Default), and these tests run it.
var withPlus = []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"}

func startSASL(t *testing.T, kind string, order []string, modify func(*Config)) (*testServer, *fakeMechs) {
	t.Helper()
	mechs := &fakeMechs{down: map[string]bool{}, ended: make(chan string, 100)}
	if order == nil {
		order = withPlus
	}
	s, err := sasl.New(sasl.Options{Plugins: mechs, Mechanisms: order, StepTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, kind, func(c *Config) {
		c.SASL = s
		if modify != nil {
			modify(c)
		}
	})
	return ts, mechs
}

// dialTLSVersion connects to an imaps server with TLS version v.
func (ts *testServer) dialTLSVersion(t *testing.T, v uint16) (*raw, tls.ConnectionState) {
	t.Helper()
	cfg := clientTLS(t)
	cfg.MinVersion, cfg.MaxVersion = v, v
	nc, err := tls.Dial("tcp", ts.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	r := &raw{t: t, nc: nc, r: bufio.NewReader(nc)}
	r.line()
	return r, nc.ConnectionState()
}

const allAuth = "AUTH=SCRAM-SHA-256-PLUS AUTH=SCRAM-SHA-256 AUTH=CRAM-MD5 AUTH=PLAIN AUTH=LOGIN"

// AUTH= lists the mechanisms in order once TLS is up, after STARTTLS or
// at once on imaps, with SASL-IR; before TLS, LOGINDISABLED and none.
func TestSASLCapabilities(t *testing.T) {
	ts, _ := startSASL(t, config.KindIMAP, nil, nil)
	r, greeting := ts.dialRaw(t)
	if strings.Contains(greeting, "AUTH=") || !strings.Contains(greeting, " LOGINDISABLED") || !strings.Contains(greeting, " SASL-IR") {
		t.Errorf("greeting before TLS: %s", greeting)
	}
	if _, res := r.cmd("AUTHENTICATE SCRAM-SHA-256 %s", b64("alice secret")); !strings.HasPrefix(res, "NO [PRIVACYREQUIRED]") {
		t.Errorf("AUTHENTICATE before TLS: %s", res)
	}
	r.starttls()
	caps := strings.Join(r.ok("CAPABILITY"), "\n")
	if !strings.HasSuffix(caps, " SASL-IR LITERAL- "+allAuth) || strings.Contains(caps, "LOGINDISABLED") {
		t.Errorf("capabilities after STARTTLS: %s", caps)
	}

	ts, _ = startSASL(t, config.KindIMAPS, nil, nil)
	if _, greeting := ts.dialRaw(t); !strings.Contains(greeting, allAuth+"]") {
		t.Errorf("imaps greeting: %s", greeting)
	}
	// A configured order without PLAIN: AUTHENTICATE PLAIN is refused;
	// the LOGIN command is not a SASL mechanism and works.
	ts, _ = startSASL(t, config.KindIMAPS, []string{"CRAM-MD5"}, nil)
	r, greeting = ts.dialRaw(t)
	if !strings.Contains(greeting, " AUTH=CRAM-MD5]") {
		t.Errorf("greeting with [auth] mechanisms = [CRAM-MD5]: %s", greeting)
	}
	if _, res := r.cmd("AUTHENTICATE PLAIN %s", b64("\x00alice\x00secret")); !strings.HasPrefix(res, "NO ") {
		t.Errorf("AUTHENTICATE PLAIN not offered: %s", res)
	}
	r.ok("LOGIN alice secret")
}

// AUTHENTICATE runs plugin exchanges, with and without SASL-IR, and
// answers their outcomes; the built-in PLAIN and LOGIN work alongside.
func TestSASLAuthenticate(t *testing.T) {
	ts, mechs := startSASL(t, config.KindIMAPS, nil, nil)
	ts.errorsLogged = true // The plugin naming an unknown account.
	failed := "NO [AUTHENTICATIONFAILED]"
	unavailable := "NO [UNAVAILABLE]"
	tests := []struct {
		name     string
		command  string
		exchange []string // Continuation request expected, then the line sent.
		down     bool
		want     string        // Prefix of the tagged response.
		maxTime  time.Duration // 0: 1s.
	}{
		{name: "SCRAM with additional data", command: "AUTHENTICATE SCRAM-SHA-256",
			exchange: []string{"+ ", b64("alice secret"), "+ " + b64("v=done"), ""}, want: "OK [CAPABILITY "},
		{name: "-PLUS with SASL-IR", command: "AUTHENTICATE SCRAM-SHA-256-PLUS " + b64("alice secret"),
			exchange: []string{"+ " + b64("v=done"), "="}, want: "OK "},
		{name: "lower case mechanism", command: "AUTHENTICATE scram-sha-256 " + b64("alice secret"),
			exchange: []string{"+ " + b64("v=done"), ""}, want: "OK "},
		{name: "response to additional data", command: "AUTHENTICATE SCRAM-SHA-256 " + b64("alice secret"),
			exchange: []string{"+ " + b64("v=done"), b64("more")}, want: failed},
		{name: "CRAM-MD5", command: "AUTHENTICATE CRAM-MD5", exchange: []string{"+ " + b64("who?"), b64("alice secret")}, want: "OK "},
		{name: "wrong password", command: "AUTHENTICATE CRAM-MD5", exchange: []string{"+ " + b64("who?"), b64("alice nope")}, want: failed},
		{name: "empty initial response", command: "AUTHENTICATE CRAM-MD5 =", want: failed},
		{name: "temporary", command: "AUTHENTICATE SCRAM-SHA-256 " + b64("alice temp"), want: unavailable},
		{name: "hung plugin", command: "AUTHENTICATE SCRAM-SHA-256 " + b64("alice hang"), want: unavailable, maxTime: 2 * time.Second},
		{name: "plugin down", command: "AUTHENTICATE SCRAM-SHA-256-PLUS " + b64("alice secret"), down: true, want: unavailable},
		{name: "unknown account", command: "AUTHENTICATE CRAM-MD5 " + b64("ghost x"), want: unavailable},
		{name: "not offered", command: "AUTHENTICATE SCRAM-SHA-1 " + b64("alice secret"), want: "NO "},
		{name: "cancelled", command: "AUTHENTICATE CRAM-MD5", exchange: []string{"+ " + b64("who?"), "*"}, want: "BAD "},
		{name: "not base64", command: "AUTHENTICATE CRAM-MD5", exchange: []string{"+ " + b64("who?"), "!!!"}, want: "BAD "},
		{name: "built-in PLAIN", command: "AUTHENTICATE PLAIN " + b64("\x00alice\x00secret"), want: "OK "},
		{name: "built-in PLAIN, wrong password", command: "AUTHENTICATE PLAIN " + b64("\x00alice\x00nope"), want: failed},
		{name: "built-in LOGIN", command: "AUTHENTICATE LOGIN",
			exchange: []string{"+ " + b64("Username:"), b64("alice@example.org"), "+ " + b64("Password:"), b64("secret")}, want: "OK "},
		{name: "built-in LOGIN with SASL-IR", command: "AUTHENTICATE LOGIN " + b64("alice"),
			exchange: []string{"+ " + b64("Password:"), b64("nope")}, want: failed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mech := strings.ToUpper(strings.Fields(tt.command)[1])
			mechs.setDown(mech, tt.down)
			defer mechs.setDown(mech, false)
			r, _ := ts.dialRaw(t)
			t0 := time.Now()
			r.write("a " + tt.command)
			for i := 0; i < len(tt.exchange); i += 2 {
				if cont := r.line(); cont != tt.exchange[i] {
					t.Fatalf("got %q, want continuation %q", cont, tt.exchange[i])
				}
				r.write(tt.exchange[i+1])
			}
			res := r.line()
			if max := cmpOr(tt.maxTime, time.Second); time.Since(t0) > max {
				t.Errorf("answered after %v, want at most %v", time.Since(t0), max)
			}
			if !strings.HasPrefix(res, "a "+tt.want) {
				t.Fatalf("got %q, want prefix %q", res, "a "+tt.want)
			}
			// The session is alice's after OK only.
			_, sel := r.cmd("SELECT INBOX")
			if ok := strings.HasPrefix(sel, "OK"); ok != strings.HasPrefix(tt.want, "OK") {
				t.Errorf("SELECT after %q: %s", res, sel)
			}
		})
	}
	logs := ts.logs.String()
	for _, want := range []string{" mech=SCRAM-SHA-256 login=alice account=alice", `reason=wrong`, `reason="lookup failed"`, `account=ghost`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

// cmpOr is cmp.Or for durations.
func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// go-imap's client authenticates through the plugins too, acknowledging
// the additional data with an empty response.
func TestSASLClient(t *testing.T) {
	ts, _ := startSASL(t, config.KindIMAP, nil, nil)
	tests := []struct {
		client  fakeClient
		wantErr imap.ResponseCode // "": success.
		want    string            // Challenges seen.
	}{
		{client: fakeClient{mech: "SCRAM-SHA-256-PLUS", login: "alice", password: "secret", ir: true}, want: "v=done"},
		{client: fakeClient{mech: "SCRAM-SHA-256", login: "alice", password: "secret", ir: true}, want: "v=done"},
		{client: fakeClient{mech: "CRAM-MD5", login: "alice", password: "secret"}, want: "who?"},
		{client: fakeClient{mech: "CRAM-MD5", login: "alice", password: "nope"}, wantErr: imap.ResponseCodeAuthenticationFailed, want: "who?"},
		{client: fakeClient{mech: "SCRAM-SHA-256", login: "alice", password: "temp", ir: true}, wantErr: imap.ResponseCodeUnavailable},
	}
	for _, tt := range tests {
		c := ts.client(t, "", "", nil)
		err := c.Authenticate(&tt.client)
		var ie *imap.Error
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%s %s: %v", tt.client.mech, tt.client.password, err)
		case tt.wantErr != "" && (!errors.As(err, &ie) || ie.Code != tt.wantErr):
			t.Errorf("%s %s: got %v, want NO [%s]", tt.client.mech, tt.client.password, err, tt.wantErr)
		}
		if got := strings.Join(tt.client.challenges, ","); got != tt.want {
			t.Errorf("%s %s: challenges %q, want %q", tt.client.mech, tt.client.password, got, tt.want)
		}
		if tt.wantErr == "" {
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				t.Errorf("%s: SELECT after AUTHENTICATE: %v", tt.client.mech, err)
			}
		}
	}
}

// The plugin gets the connection's TLS state with channel-binding data:
// tls-exporter on TLS 1.3, tls-unique on 1.2, tls-server-end-point on both.
func TestSASLConnInfo(t *testing.T) {
	ts, mechs := startSASL(t, config.KindIMAPS, nil, nil)
	for i, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		r, cs := ts.dialTLSVersion(t, v)
		r.write("a AUTHENTICATE SCRAM-SHA-256-PLUS " + b64("alice secret"))
		r.line()
		r.write("")
		if res := r.line(); !strings.HasPrefix(res, "a OK") {
			t.Fatalf("TLS %x: %s", v, res)
		}
		mechs.mu.Lock()
		ci := mechs.conns[i]
		mechs.mu.Unlock()
		if ci.Protocol != "imap" || ci.Listener != "imaps-test" || ci.LocalAddr != ts.addr || ci.TLS == nil || ci.TLS.Version != v {
			t.Fatalf("conn info %+v", ci)
		}
		endPoint := sha256.Sum256(cs.PeerCertificates[0].Raw) // ECDSA with SHA-256.
		if string(ci.TLS.ServerEndPoint) != string(endPoint[:]) {
			t.Errorf("TLS %x: end point %x, want %x", v, ci.TLS.ServerEndPoint, endPoint)
		}
		if v == tls.VersionTLS13 {
			exporter, err := cs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
			if err != nil {
				t.Fatal(err)
			}
			if string(ci.TLS.Exporter) != string(exporter) || ci.TLS.Unique != nil {
				t.Errorf("TLS 1.3: exporter %x, want %x; unique %x", ci.TLS.Exporter, exporter, ci.TLS.Unique)
			}
		} else if len(cs.TLSUnique) == 0 || string(ci.TLS.Unique) != string(cs.TLSUnique) || ci.TLS.Exporter != nil {
			t.Errorf("TLS 1.2: unique %x, want %x; exporter %x", ci.TLS.Unique, cs.TLSUnique, ci.TLS.Exporter)
		}
	}
	// After STARTTLS too.
	ts, mechs = startSASL(t, config.KindIMAP, nil, nil)
	r, _ := ts.dialRaw(t)
	r.starttls()
	r.write("a AUTHENTICATE SCRAM-SHA-256-PLUS " + b64("alice secret"))
	r.line()
	r.write("")
	if res := r.line(); !strings.HasPrefix(res, "a OK") {
		t.Fatalf("after STARTTLS: %s", res)
	}
	if ci := mechs.conns[0]; ci.TLS == nil || ci.TLS.Exporter == nil || ci.Listener != "imap-test" {
		t.Errorf("conn info after STARTTLS: %+v", ci)
	}
}

// A cancelled exchange ends when the next AUTHENTICATE starts, which
// works, and an exchange in progress ends when the client hangs up.
func TestSASLCancel(t *testing.T) {
	ts, mechs := startSASL(t, config.KindIMAPS, nil, nil)
	ended := func(what string) {
		t.Helper()
		select {
		case <-mechs.ended:
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: plugin exchange not ended", what)
		}
	}
	r, _ := ts.dialRaw(t)
	r.write("a AUTHENTICATE CRAM-MD5")
	r.line()
	r.write("*")
	if res := r.line(); !strings.HasPrefix(res, "a BAD ") {
		t.Fatalf("cancel: %s", res)
	}
	r.write("b AUTHENTICATE CRAM-MD5 " + b64("alice secret"))
	ended("cancelled")
	if res := r.line(); !strings.HasPrefix(res, "b OK ") {
		t.Fatalf("AUTHENTICATE after cancel: %s", res)
	}
	ended("succeeded")

	r, _ = ts.dialRaw(t)
	r.write("a AUTHENTICATE CRAM-MD5")
	r.line()
	r.nc.Close()
	ended("hung up")
}

// Plugin failures count in the limiter like LOGIN's; temporary ones do not.
func TestSASLAuthLimit(t *testing.T) {
	limit := authlimit.New()
	limit.FreeFailures, limit.Delay, limit.MaxFailures = 1, 10*time.Millisecond, 2
	ts, _ := startSASL(t, config.KindIMAPS, nil, func(c *Config) { c.AuthLimit = limit })
	r, _ := ts.dialRaw(t)
	for range 3 {
		if _, res := r.cmd("AUTHENTICATE SCRAM-SHA-256 %s", b64("alice temp")); !strings.HasPrefix(res, "NO [UNAVAILABLE]") {
			t.Fatalf("temporary failure: %s", res)
		}
	}
	for range 2 {
		if _, res := r.cmd("AUTHENTICATE CRAM-MD5 %s", b64("alice nope")); !strings.HasPrefix(res, "NO [AUTHENTICATIONFAILED]") {
			t.Fatalf("wrong password: %s", res)
		}
	}
	if _, res := r.cmd("AUTHENTICATE CRAM-MD5 %s", b64("alice secret")); !strings.HasPrefix(res, "NO [UNAVAILABLE] Too many") {
		t.Errorf("after 2 failures: %s", res)
	}
	r.expectClosed()
	r, _ = ts.dialRaw(t)
	if _, res := r.cmd("LOGIN alice secret"); !strings.HasPrefix(res, "NO [UNAVAILABLE] Too many") {
		t.Errorf("LOGIN after 2 failures: %s", res)
	}
}
