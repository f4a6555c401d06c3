package sasl

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/plugintest"
)

// fakePlugins serves mechanisms by name; a name mapped to nil is down.
type fakePlugins struct {
	names []string
	mechs map[string]sdk.Mechanism
}

func (f *fakePlugins) Mechanisms() []string { return f.names }

func (f *fakePlugins) Mechanism(name string) (sdk.Mechanism, error) {
	m := f.mechs[name]
	if m == nil {
		return nil, errors.New("plugin down")
	}
	return m, nil
}

func TestOrder(t *testing.T) {
	all := []string{"CRAM-MD5", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"}
	tests := []struct {
		name       string
		configured []string
		served     []string
		want       []string
		wantErr    string
	}{
		{"default, nothing served", nil, nil, []string{"PLAIN", "LOGIN"}, ""},
		// No -PLUS by default: clients that cannot bind over TLS 1.3 pick it
		// as the strongest and fail (GNU SASL in neomutt).
		{"default, strongest first", nil, all,
			[]string{"SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"}, ""},
		{"default, EXTERNAL ranked first, unranked after ranked", nil, []string{"XOAUTH2", "EXTERNAL", "SCRAM-SHA-1"},
			[]string{"EXTERNAL", "SCRAM-SHA-1", "XOAUTH2", "PLAIN", "LOGIN"}, ""},
		{"configured", []string{"PLAIN", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"}, all, []string{"PLAIN", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"}, ""},
		{"configured, -PLUS alone", []string{"SCRAM-SHA-1-PLUS"}, all, []string{"SCRAM-SHA-1-PLUS"}, ""},
		{"configured, not served", []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-512"}, all, nil,
			"SCRAM-SHA-512: no loaded plugin serves it (served: CRAM-MD5, SCRAM-SHA-256-PLUS, SCRAM-SHA-256, SCRAM-SHA-1-PLUS, SCRAM-SHA-1; built in: PLAIN, LOGIN)"},
		{"configured, nothing served", []string{"CRAM-MD5"}, nil, nil, "CRAM-MD5: no loaded plugin serves it"},
		{"configured twice", []string{"LOGIN", "LOGIN"}, nil, nil, "LOGIN: listed twice (also at 0)"},
		{"configured without -PLUS", []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1"}, all, []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Order(tt.configured, tt.served)
			if tt.wantErr != "" {
				var oe *OrderError
				if err == nil || err.Error() != tt.wantErr || !errors.As(err, &oe) || oe.Index != len(tt.configured)-1 {
					t.Fatalf("error %v, want %q at the last index", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestOffered(t *testing.T) {
	s, err := New(Options{Mechanisms: []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"}, Plugins: &fakePlugins{names: []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "LOGIN"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Mechanisms(true), []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "PLAIN", "LOGIN"}; !reflect.DeepEqual(got, want) {
		t.Errorf("with TLS: %q, want %q", got, want)
	}
	if got, want := s.Mechanisms(false), []string{"SCRAM-SHA-256", "PLAIN", "LOGIN"}; !reflect.DeepEqual(got, want) {
		t.Errorf("without TLS: %q, want %q", got, want)
	}
	if s.Offered("SCRAM-SHA-256-PLUS", false) || !s.Offered("SCRAM-SHA-256-PLUS", true) || s.Offered("CRAM-MD5", true) {
		t.Error("Offered wrong")
	}
	// A plugin serving LOGIN replaces the built-in one.
	if !s.Builtin("PLAIN") || s.Builtin("LOGIN") || s.Builtin("SCRAM-SHA-256") {
		t.Error("Builtin wrong")
	}
	_, err = s.Start(t.Context(), "SCRAM-SHA-256-PLUS", sdk.ConnInfo{}, nil)
	if !errors.Is(err, ErrUnknownMechanism) {
		t.Errorf("-PLUS without TLS: %v, want ErrUnknownMechanism", err)
	}
	_, err = s.Start(t.Context(), "PLAIN", sdk.ConnInfo{}, nil)
	if !errors.Is(err, ErrUnknownMechanism) {
		t.Errorf("built-in PLAIN: %v, want ErrUnknownMechanism", err)
	}
}

// script is an in-process mechanism: it answers each response with the
// next challenge of its script, then with the outcome, or blocks in Next
// (hang) until its context ends.
type script struct {
	challenges []string
	outcome    sdk.AuthOutcome
	err        error // From Next, instead of the outcome.
	hang       bool
	startErr   error

	mu        sync.Mutex
	responses []string // As received; "<nil>" for nil.
	ended     chan struct{}
}

func (m *script) Start(ctx context.Context, mech string, conn sdk.ConnInfo) (sdk.Exchange, error) {
	if m.startErr != nil {
		return nil, m.startErr
	}
	m.ended = make(chan struct{})
	go func() { <-ctx.Done(); close(m.ended) }()
	return &scriptExchange{m: m}, nil
}

type scriptExchange struct {
	m *script
	n int
}

func (e *scriptExchange) Next(ctx context.Context, resp []byte) ([]byte, *sdk.AuthOutcome, error) {
	m := e.m
	m.mu.Lock()
	if resp == nil {
		m.responses = append(m.responses, "<nil>")
	} else {
		m.responses = append(m.responses, string(resp))
	}
	m.mu.Unlock()
	if m.hang {
		<-ctx.Done()
		return nil, nil, ctx.Err()
	}
	if e.n < len(m.challenges) {
		e.n++
		return []byte(m.challenges[e.n-1]), nil, nil
	}
	if m.err != nil {
		return nil, nil, m.err
	}
	o := m.outcome
	return nil, &o, nil
}

// run drives an exchange as go-smtp does: Next with each client response
// until done; it returns the challenges sent and the final error.
func run(ex *Exchange, responses ...[]byte) (challenges []string, err error) {
	for i := 0; ; i++ {
		var r []byte
		if i < len(responses) {
			r = responses[i]
		}
		c, done, err := ex.Next(r)
		if done || err != nil {
			return challenges, err
		}
		challenges = append(challenges, string(c))
	}
}

var errAnswer = errors.New("protocol answer")

func TestExchange(t *testing.T) {
	tls := sdk.ConnInfo{TLS: &sdk.TLSInfo{}}
	tests := []struct {
		name      string
		mech      *script
		rpc       bool // Over real gRPC (plugintest), not in-process.
		responses [][]byte
		wantChall []string
		wantResp  []string
		want      Outcome
	}{
		{
			name:      "success with final data",
			mech:      &script{challenges: []string{"", "server-first"}, outcome: sdk.AuthOutcome{Success: true, Account: "alice", Login: "alice@example.org", FinalData: []byte("v=final")}},
			responses: [][]byte{nil, []byte("client-first"), []byte("client-final"), {}},
			wantChall: []string{"", "server-first", "v=final"},
			wantResp:  []string{"<nil>", "client-first", "client-final"},
			want:      Outcome{Mechanism: "M", Success: true, Account: "alice", Login: "alice@example.org"},
		},
		{
			name:      "success with final data over RPC",
			mech:      &script{challenges: []string{"server-first"}, outcome: sdk.AuthOutcome{Success: true, Account: "alice", Login: "alice", FinalData: []byte("v=final")}},
			rpc:       true,
			responses: [][]byte{[]byte("client-first"), []byte("client-final"), {}},
			wantChall: []string{"server-first", "v=final"},
			wantResp:  []string{"client-first", "client-final"},
			want:      Outcome{Mechanism: "M", Success: true, Account: "alice", Login: "alice"},
		},
		{
			name:      "final data answered with data",
			mech:      &script{outcome: sdk.AuthOutcome{Success: true, Account: "alice", FinalData: []byte("v=final")}},
			responses: [][]byte{[]byte("ir"), []byte("junk")},
			wantChall: []string{"v=final"},
			wantResp:  []string{"ir"},
			want:      Outcome{Mechanism: "M", Reason: "non-empty response to the additional data with success"},
		},
		{
			name:      "success without final data",
			mech:      &script{outcome: sdk.AuthOutcome{Success: true, Account: "bob", Login: "bob"}},
			responses: [][]byte{{}},
			wantResp:  []string{""},
			want:      Outcome{Mechanism: "M", Success: true, Account: "bob", Login: "bob"},
		},
		{
			name:      "failure",
			mech:      &script{challenges: []string{"c"}, outcome: sdk.AuthOutcome{Login: "bob", Reason: "wrong digest"}},
			responses: [][]byte{nil, []byte("r")},
			wantChall: []string{"c"},
			wantResp:  []string{"<nil>", "r"},
			want:      Outcome{Mechanism: "M", Login: "bob", Reason: "wrong digest"},
		},
		{
			name:     "temporary outcome",
			mech:     &script{outcome: sdk.AuthOutcome{Temporary: true, Reason: "host lookup failed"}},
			wantResp: []string{"<nil>"},
			want:     Outcome{Mechanism: "M", Temporary: true, Reason: "host lookup failed"},
		},
		{
			name:     "success without account",
			mech:     &script{outcome: sdk.AuthOutcome{Success: true, Login: "x"}},
			wantResp: []string{"<nil>"},
			want:     Outcome{Mechanism: "M", Temporary: true, Login: "x", Reason: "plugin reported success without an account"},
		},
		{
			name:     "plugin error",
			mech:     &script{err: errors.New("boom")},
			wantResp: []string{"<nil>"},
			want:     Outcome{Mechanism: "M", Temporary: true, Reason: "boom"},
		},
		{
			name:     "hung plugin",
			mech:     &script{hang: true},
			wantResp: []string{"<nil>"},
			want:     Outcome{Mechanism: "M", Temporary: true, Reason: "plugin did not answer within 200ms"},
		},
		{
			// The sdk's RPC client does not pass Next's deadline on; the
			// step deadline must still hold.
			name:     "hung plugin over RPC",
			mech:     &script{hang: true},
			rpc:      true,
			wantResp: []string{"<nil>"},
			want:     Outcome{Mechanism: "M", Temporary: true, Reason: "plugin did not answer within 200ms"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m sdk.Mechanism = tt.mech
			if tt.rpc {
				m = plugintest.Connect(t, &sdk.Plugin{Name: "script", Mechanisms: []string{"M"}, Mechanism: tt.mech}, nil).Mechanism()
			}
			s, err := New(Options{Plugins: &fakePlugins{names: []string{"M"}, mechs: map[string]sdk.Mechanism{"M": m}}, StepTimeout: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			var got []Outcome
			ex, err := s.Start(t.Context(), "M", tls, func(o Outcome) error {
				got = append(got, o)
				return fmt.Errorf("%w: %v", errAnswer, o.Success)
			})
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			chall, err := run(ex, tt.responses...)
			if d := time.Since(t0); d > time.Second {
				t.Errorf("exchange took %v", d)
			}
			if !errors.Is(err, errAnswer) {
				t.Errorf("Next returned %v, not finish's error", err)
			}
			if !reflect.DeepEqual(chall, tt.wantChall) {
				t.Errorf("challenges %q, want %q", chall, tt.wantChall)
			}
			if len(got) != 1 || !reflect.DeepEqual(got[0], tt.want) {
				t.Errorf("outcomes %+v, want one %+v", got, tt.want)
			}
			tt.mech.mu.Lock()
			resp := tt.mech.responses
			tt.mech.mu.Unlock()
			if !reflect.DeepEqual(resp, tt.wantResp) {
				t.Errorf("plugin got %q, want %q", resp, tt.wantResp)
			}
			// The plugin's exchange context ends with the exchange.
			select {
			case <-tt.mech.ended:
			case <-time.After(2 * time.Second):
				t.Error("plugin's exchange context not canceled")
			}
			if _, done, err := ex.Next(nil); !done || err == nil {
				t.Errorf("Next after the end: %v, %v", done, err)
			}
		})
	}
}

func TestStartUnavailable(t *testing.T) {
	tests := []struct {
		name string
		mech sdk.Mechanism
	}{
		{"plugin down", nil},
		{"start fails", &script{startErr: errors.New("no stream")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Options{Plugins: &fakePlugins{names: []string{"M"}, mechs: map[string]sdk.Mechanism{"M": tt.mech}}})
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Start(t.Context(), "M", sdk.ConnInfo{}, nil)
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("Start: %v, want ErrUnavailable", err)
			}
		})
	}
}

// Close abandons an exchange: the plugin's context ends.
func TestClose(t *testing.T) {
	m := &script{challenges: []string{"c"}}
	s, err := New(Options{Plugins: &fakePlugins{names: []string{"M"}, mechs: map[string]sdk.Mechanism{"M": m}}})
	if err != nil {
		t.Fatal(err)
	}
	ex, err := s.Start(t.Context(), "M", sdk.ConnInfo{}, func(Outcome) error { t.Error("finish called"); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if c, done, err := ex.Next(nil); string(c) != "c" || done || err != nil {
		t.Fatalf("Next: %q %v %v", c, done, err)
	}
	ex.Close()
	ex.Close()
	select {
	case <-m.ended:
	case <-time.After(time.Second):
		t.Fatal("plugin's context not canceled")
	}
}

func TestAdvertisedExternal(t *testing.T) {
	s, err := New(Options{Plugins: &fakePlugins{names: []string{"EXTERNAL", "SCRAM-SHA-256"}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Advertised(true, true), []string{"EXTERNAL", "SCRAM-SHA-256", "PLAIN", "LOGIN"}; !reflect.DeepEqual(got, want) {
		t.Errorf("with a client key: %q, want %q", got, want)
	}
	if got, want := s.Advertised(true, false), []string{"SCRAM-SHA-256", "PLAIN", "LOGIN"}; !reflect.DeepEqual(got, want) {
		t.Errorf("without: %q, want %q", got, want)
	}
	if got, want := s.Advertised(false, true), []string{"SCRAM-SHA-256", "PLAIN", "LOGIN"}; !reflect.DeepEqual(got, want) {
		t.Errorf("without TLS: %q, want %q", got, want)
	}
	// Not announced, still offered: an attempt fails like a bad password.
	if !s.Offered("EXTERNAL", true) || s.Offered("EXTERNAL", false) {
		t.Error("EXTERNAL offered wrong")
	}
}

// preAuther is a mechanism whose PreAuth answers outcome, or err, or
// blocks until its context ends (hang).
type preAuther struct {
	script
	outcome *sdk.AuthOutcome
	err     error
	hang    bool
	got     sdk.ConnInfo
}

func (p *preAuther) PreAuth(ctx context.Context, conn sdk.ConnInfo) (*sdk.AuthOutcome, error) {
	p.got = conn
	if p.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return p.outcome, p.err
}

func TestPreAuth(t *testing.T) {
	withCert := sdk.ConnInfo{Protocol: "imap", TLS: &sdk.TLSInfo{PeerCertificates: make([]*x509.Certificate, 1)}}
	tests := []struct {
		name   string
		mech   sdk.Mechanism // Serving EXTERNAL; nil: down.
		conn   sdk.ConnInfo
		ok     bool
		want   Outcome
		served []string
	}{
		{"success", &preAuther{outcome: &sdk.AuthOutcome{Success: true, Account: "alice", Login: "alice@example.org"}}, withCert, true,
			Outcome{Mechanism: "EXTERNAL", Success: true, Account: "alice", Login: "alice@example.org"}, nil},
		{"unknown key", &preAuther{outcome: &sdk.AuthOutcome{Reason: "unknown key"}}, withCert, true,
			Outcome{Mechanism: "EXTERNAL", Reason: "unknown key"}, nil},
		{"no certificate", &preAuther{}, sdk.ConnInfo{TLS: &sdk.TLSInfo{}}, false, Outcome{}, nil},
		{"no TLS", &preAuther{}, sdk.ConnInfo{}, false, Outcome{}, nil},
		{"no EXTERNAL", &preAuther{}, withCert, false, Outcome{}, []string{"SCRAM-SHA-256"}},
		{"plugin down", nil, withCert, true, Outcome{Mechanism: "EXTERNAL", Temporary: true, Reason: "plugin down"}, nil},
		{"plugin error", &preAuther{err: errors.New("boom")}, withCert, true, Outcome{Mechanism: "EXTERNAL", Temporary: true, Reason: "boom"}, nil},
		{"success without account", &preAuther{outcome: &sdk.AuthOutcome{Success: true, Login: "x"}}, withCert, true,
			Outcome{Mechanism: "EXTERNAL", Temporary: true, Login: "x", Reason: "plugin reported success without an account"}, nil},
		{"no outcome", &preAuther{}, withCert, true, Outcome{Mechanism: "EXTERNAL", Temporary: true, Reason: "plugin returned no outcome"}, nil},
		{"not a PreAuther", &script{}, withCert, false, Outcome{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			served := tt.served
			if served == nil {
				served = []string{"EXTERNAL"}
			}
			mechs := map[string]sdk.Mechanism{}
			if tt.mech != nil {
				mechs["EXTERNAL"] = tt.mech
			}
			s, err := New(Options{Plugins: &fakePlugins{names: served, mechs: mechs}})
			if err != nil {
				t.Fatal(err)
			}
			got, ok := s.PreAuth(t.Context(), tt.conn)
			if ok != tt.ok || got != tt.want {
				t.Errorf("got %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestPreAuthHung(t *testing.T) {
	s, err := New(Options{StepTimeout: 50 * time.Millisecond, Plugins: &fakePlugins{names: []string{"EXTERNAL"}, mechs: map[string]sdk.Mechanism{"EXTERNAL": &preAuther{hang: true}}}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	o, ok := s.PreAuth(t.Context(), sdk.ConnInfo{TLS: &sdk.TLSInfo{PeerCertificates: make([]*x509.Certificate, 1)}})
	if !ok || !o.Temporary || time.Since(start) > time.Second {
		t.Errorf("hung plugin: %+v, %v after %v; want a temporary outcome within the step deadline", o, ok, time.Since(start))
	}
}
