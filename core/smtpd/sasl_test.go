package smtpd

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	gosasl "github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/core/authlimit"
	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/sasl"
	"github.com/switchyard-mta/switchyard/sdk"
)

// fakeMechs is a mechanism host: every name is served by a fakeMech, but
// those in down, whose plugin is not running.
type fakeMechs struct {
	mu    sync.Mutex
	down  map[string]bool
	conns []sdk.ConnInfo // Of every Start.
	ended chan string    // An exchange's context ended, with the mechanism.
}

var fakeNames = []string{"CRAM-MD5", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}

func (f *fakeMechs) Mechanisms() []string { return fakeNames }

func (f *fakeMechs) Mechanism(name string) (sdk.Mechanism, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down[name] {
		return nil, errors.New("plugin down")
	}
	return f, nil
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

// fakeExchange asks "who?" (unless there is an initial response) and takes
// "login password". alice's password is "secret"; "ghost" is an account
// the listener does not know; password "temp" is a temporary failure and
// "hang" never answers. SCRAM names succeed with additional data "v=done".
type fakeExchange struct {
	mech  string
	asked bool
}

func (e *fakeExchange) Next(ctx context.Context, resp []byte) ([]byte, *sdk.AuthOutcome, error) {
	if resp == nil && !e.asked {
		e.asked = true
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

// fakeClient answers "who?" with its credentials and additional data with
// an empty response (RFC 4954 §4), recording the challenges.
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
	if string(challenge) == "who?" {
		return []byte(c.login + " " + c.password), nil
	}
	return []byte{}, nil
}

// startSASL serves a submissions listener with the fake mechanisms.
// withPlus is the order the tests offer: the default offers no -PLUS
// (core/sasl.Default), and these tests run it.
var withPlus = []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"}

func startSASL(t *testing.T, step time.Duration, modify func(*Config)) (*testServer, *fakeMechs) {
	t.Helper()
	mechs := &fakeMechs{down: map[string]bool{}, ended: make(chan string, 100)}
	s, err := sasl.New(sasl.Options{Plugins: mechs, Mechanisms: withPlus, StepTimeout: step})
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, config.KindSubmissions, func(c *Config) {
		c.SASL = s
		if modify != nil {
			modify(c)
		}
	})
	return ts, mechs
}

func dialTLS(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.DialTLS(addr, clientTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPluginAuth(t *testing.T) {
	ts, mechs := startSASL(t, 300*time.Millisecond, nil)
	c := dialTLS(t, ts.addr)
	if ok, list := c.Extension("AUTH"); !ok || list != "SCRAM-SHA-256-PLUS SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN" {
		t.Errorf("AUTH %q, want the configured order", list)
	}
	tests := []struct {
		name           string
		client         fakeClient
		down           bool
		wantCode       int    // 0: success.
		wantEnh        string // With wantCode.
		wantChallenges string
		maxTime        time.Duration // 0: 1s.
	}{
		{name: "SCRAM with additional data", client: fakeClient{mech: "SCRAM-SHA-256", login: "alice", password: "secret"},
			wantChallenges: "who?,v=done"},
		{name: "-PLUS with initial response", client: fakeClient{mech: "SCRAM-SHA-256-PLUS", login: "alice", password: "secret", ir: true},
			wantChallenges: "v=done"},
		{name: "CRAM-MD5", client: fakeClient{mech: "CRAM-MD5", login: "alice", password: "secret"}, wantChallenges: "who?"},
		{name: "wrong password", client: fakeClient{mech: "CRAM-MD5", login: "alice", password: "nope"},
			wantCode: 535, wantEnh: "5.7.8", wantChallenges: "who?"},
		{name: "temporary", client: fakeClient{mech: "SCRAM-SHA-256", login: "alice", password: "temp", ir: true},
			wantCode: 454, wantEnh: "4.7.0"},
		{name: "hung plugin", client: fakeClient{mech: "SCRAM-SHA-256", login: "alice", password: "hang", ir: true},
			wantCode: 454, wantEnh: "4.7.0", maxTime: 2 * time.Second},
		{name: "plugin down", client: fakeClient{mech: "SCRAM-SHA-256", login: "alice", password: "secret"}, down: true,
			wantCode: 454, wantEnh: "4.7.0"},
		{name: "unknown account", client: fakeClient{mech: "CRAM-MD5", login: "ghost", password: "x", ir: true},
			wantCode: 454, wantEnh: "4.7.0"},
		{name: "not offered", client: fakeClient{mech: "SCRAM-SHA-1", login: "alice", password: "secret"},
			wantCode: 504, wantEnh: "5.7.4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mechs.mu.Lock()
			mechs.down[tc.client.mech] = tc.down
			mechs.mu.Unlock()
			c := dialTLS(t, ts.addr)
			t0 := time.Now()
			err := c.Auth(&tc.client)
			if d, max := time.Since(t0), cmpOr(tc.maxTime, time.Second); d > max {
				t.Errorf("AUTH took %v, want at most %v", d, max)
			}
			if got := strings.Join(tc.client.challenges, ","); got != tc.wantChallenges {
				t.Errorf("challenges %q, want %q", got, tc.wantChallenges)
			}
			if tc.wantCode != 0 {
				wantCode(t, err, tc.wantCode, tc.wantEnh)
				if err := c.Mail("alice@example.org", nil); err == nil {
					t.Error("MAIL accepted after failed AUTH")
				}
				return
			}
			if err != nil {
				t.Fatalf("AUTH: %v", err)
			}
			// The session's account is alice: she may send as herself.
			if err := c.Mail("alice@example.org", nil); err != nil {
				t.Errorf("MAIL after AUTH: %v", err)
			}
		})
	}
	if !strings.Contains(ts.logs.String(), " mech=SCRAM-SHA-256 login=alice account=alice") {
		t.Error("no log line for the plugin login")
	}
}

// cmpOr is cmp.Or for durations.
func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// The plugin gets the connection's TLS state with channel-binding data.
func TestPluginAuthConnInfo(t *testing.T) {
	ts, mechs := startSASL(t, 0, nil)
	c, err := smtp.DialTLS(ts.addr, clientTLS(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(&fakeClient{mech: "SCRAM-SHA-256-PLUS", login: "alice", password: "secret"}); err != nil {
		t.Fatal(err)
	}
	cs, _ := c.TLSConnectionState()
	exporter, err := cs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
	if err != nil {
		t.Fatal(err)
	}
	endPoint := sha256.Sum256(cs.PeerCertificates[0].Raw) // ECDSA with SHA-256.
	mechs.mu.Lock()
	defer mechs.mu.Unlock()
	if len(mechs.conns) != 1 {
		t.Fatalf("%d exchanges", len(mechs.conns))
	}
	ci := mechs.conns[0]
	if ci.Protocol != "smtp" || ci.Listener != "test-submissions" || ci.LocalAddr != ts.addr || ci.TLS == nil {
		t.Fatalf("conn info %+v", ci)
	}
	if ci.TLS.Version != tls.VersionTLS13 || string(ci.TLS.Exporter) != string(exporter) || string(ci.TLS.ServerEndPoint) != string(endPoint[:]) {
		t.Errorf("TLS info %+v; want exporter %x, end point %x", ci.TLS, exporter, endPoint)
	}
}

// A client that cancels with "*" (RFC 4954 §4) gets 501; go-smtp does
// not tell the session, so the plugin's exchange ends with the next AUTH
// (or the session, or its time limit). Disconnecting ends it at once.
func TestPluginAuthCancel(t *testing.T) {
	ts, mechs := startSASL(t, 0, nil)
	for _, hangup := range []bool{false, true} {
		nc, err := tls.Dial("tcp", ts.addr, clientTLS(t))
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		tc := textproto.NewConn(nc)
		for _, step := range []struct {
			cmd  string
			code int
		}{{"", 220}, {"EHLO client.test", 250}, {"AUTH CRAM-MD5", 334}} {
			if step.cmd != "" {
				tc.PrintfLine("%s", step.cmd)
			}
			if _, msg, err := tc.ReadResponse(step.code); err != nil {
				t.Fatalf("%q: %v %s", step.cmd, err, msg)
			}
		}
		if hangup {
			nc.Close()
		} else {
			tc.PrintfLine("*")
			if _, msg, err := tc.ReadResponse(501); err != nil {
				t.Fatalf("cancel: %v %s", err, msg)
			}
			// The session goes on: a new AUTH works.
			tc.PrintfLine("AUTH CRAM-MD5 %s", base64.StdEncoding.EncodeToString([]byte("alice secret")))
			if _, msg, err := tc.ReadResponse(235); err != nil {
				t.Fatalf("AUTH after cancel: %v %s", err, msg)
			}
		}
		// Both exchanges end: the cancelled one and the one that succeeded.
		ends := 2
		if hangup {
			ends = 1
		}
		for range ends {
			select {
			case <-mechs.ended:
			case <-time.After(2 * time.Second):
				t.Fatalf("hangup %v: plugin exchange not ended", hangup)
			}
		}
		nc.Close()
	}
}

// Plugin failures count in the limiter like PLAIN's; temporary ones do not.
func TestPluginAuthLimit(t *testing.T) {
	limit := authlimit.New()
	limit.FreeFailures, limit.Delay, limit.MaxFailures = 1, 10*time.Millisecond, 2
	ts, _ := startSASL(t, 0, func(c *Config) { c.AuthLimit = limit })
	// A connection per attempt: go-smtp's client follows a failure with
	// "*", which the server counts as a bad command.
	for range 3 {
		err := dialTLS(t, ts.addr).Auth(&fakeClient{mech: "SCRAM-SHA-256", login: "alice", password: "temp"})
		wantCode(t, err, 454, "4.7.0")
	}
	for range 2 {
		err := dialTLS(t, ts.addr).Auth(&fakeClient{mech: "SCRAM-SHA-256", login: "alice", password: "wrong"})
		wantCode(t, err, 535, "5.7.8")
	}
	err := dialTLS(t, ts.addr).Auth(&fakeClient{mech: "SCRAM-SHA-256", login: "alice", password: "secret"})
	wantCode(t, err, 421, "4.7.0")
	err = dialTLS(t, ts.addr).Auth(gosasl.NewPlainClient("", "alice", "secret"))
	wantCode(t, err, 421, "4.7.0")
}
