package authflow

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/core/authlimit"
	"github.com/switchyard-mta/switchyard/core/internal/testlog"
	"github.com/switchyard-mta/switchyard/core/sasl"
	"github.com/switchyard-mta/switchyard/core/store"
	"github.com/switchyard-mta/switchyard/sdk"
)

// accounts maps logins to account names.
type accounts map[string]string

func (a accounts) AccountByLogin(login string) (string, bool) {
	account, ok := a[login]
	return account, ok
}

// passwords holds each account's password; it fails with err, or panics.
type passwords struct {
	pw      map[string]string
	err     error
	panics  bool
	checked []string // Names checked, in order.
}

func (p *passwords) CheckPassword(ctx context.Context, account, password string) (bool, error) {
	if p.panics {
		panic("password store bug")
	}
	p.checked = append(p.checked, account)
	if p.err != nil {
		return false, p.err
	}
	pw, ok := p.pw[account]
	return ok && pw == password, nil
}

// test is a Flow of one client, alice's and bob's accounts, and a limiter
// that refuses a second attempt while the first is counted or in progress.
type test struct {
	*Flow
	pw       *passwords
	logs     *testlog.Buffer
	accepted []string
}

func newTest(t *testing.T) *test {
	limit := authlimit.New()
	limit.MaxFailures = 1
	limit.Delay, limit.MaxDelay = time.Millisecond, time.Millisecond
	tt := &test{
		pw:   &passwords{pw: map[string]string{"alice": "secret", "bob": "hunter2"}},
		logs: &testlog.Buffer{},
	}
	tt.Flow = &Flow{
		Limiter:  limit,
		Accounts: accounts{"alice": "alice", "alice@example.org": "alice", "bob": "bob"},
		Timeout:  time.Second,
		IP:       netip.MustParseAddr("192.0.2.1"),
		Log:      slog.New(slog.NewTextHandler(tt.logs, nil)),
		// As imapd's.
		SuccessAttrs: []slog.Attr{slog.Bool("tls", true)},
		Accept: func(account string) error {
			tt.accepted = append(tt.accepted, account)
			return nil
		},
	}
	tt.Passwords = tt.pw
	return tt
}

// free reports whether the client may begin an attempt at once: those
// before were not counted as failures, and none is left in progress.
func (tt *test) free(t *testing.T) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	att, err := tt.Begin(ctx, "TEST")
	att.Abandon()
	return err == nil
}

func (tt *test) wantLog(t *testing.T, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(tt.logs.String(), l) {
			t.Errorf("log lacks %q:\n%s", l, tt.logs)
		}
	}
}

func TestPasswordSuccess(t *testing.T) {
	tt := newTest(t)
	tt.Limiter.MaxFailures = 2
	if err := tt.Password(t.Context(), sasl.Plain, "", "alice", "wrong"); err != ErrInvalid {
		t.Fatalf("wrong password: %v", err)
	}
	if err := tt.Password(t.Context(), sasl.Plain, "alice", "alice@example.org", "secret"); err != nil {
		t.Fatalf("Password: %v", err)
	}
	if !slices.Equal(tt.accepted, []string{"alice"}) {
		t.Errorf("accepted %q, want alice", tt.accepted)
	}
	tt.wantLog(t, `level=INFO msg=authenticated mech=PLAIN login=alice@example.org account=alice tls=true`)
	// The success forgot the failure before it: two more fit in MaxFailures.
	for i := range 2 {
		if err := tt.Password(t.Context(), sasl.Login, "", "alice", "wrong"); err != ErrInvalid {
			t.Fatalf("failure %d after the success: %v", i+1, err)
		}
	}
	if err := tt.Password(t.Context(), sasl.Login, "", "alice", "secret"); err != ErrTooMany {
		t.Fatalf("after MaxFailures: %v, want ErrTooMany", err)
	}

	// Without SuccessAttrs (smtpd), the line ends with the account.
	tt = newTest(t)
	tt.SuccessAttrs = nil
	if err := tt.Password(t.Context(), sasl.Plain, "", "bob", "hunter2"); err != nil {
		t.Fatalf("Password: %v", err)
	}
	tt.wantLog(t, "level=INFO msg=authenticated mech=PLAIN login=bob account=bob\n")
}

// An unknown login gets the same answer as a wrong password, after a
// password check of its own, and counts alike.
func TestPasswordInvalid(t *testing.T) {
	for _, tc := range []struct{ name, login, reason string }{
		{"wrong password", "alice", "wrong password"},
		{"unknown login", "carol", "unknown login"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tt := newTest(t)
			if err := tt.Password(t.Context(), sasl.Plain, "", tc.login, "wrong"); err != ErrInvalid {
				t.Fatalf("Password: %v, want ErrInvalid", err)
			}
			if len(tt.pw.checked) != 1 {
				t.Errorf("passwords checked: %q, want one", tt.pw.checked)
			}
			if len(tt.accepted) != 0 {
				t.Errorf("accepted %q", tt.accepted)
			}
			tt.wantLog(t, `level=INFO msg="authentication failed" mech=PLAIN login=`+tc.login+` reason="`+tc.reason+`"`)
			// Counted: the client's next attempt is refused unchecked.
			if err := tt.Password(t.Context(), sasl.Plain, "", "alice", "secret"); err != ErrTooMany {
				t.Fatalf("next attempt: %v, want ErrTooMany", err)
			}
			if len(tt.pw.checked) != 1 {
				t.Errorf("refused attempt checked a password: %q", tt.pw.checked)
			}
			tt.wantLog(t, `level=WARN msg="authentication refused: too many failures from this address" mech=PLAIN login=alice`)
		})
	}
}

// An attempt waits for one in progress that could still fail, and a
// failure beyond the free ones is answered after the limiter's delay.
func TestLimiterWaits(t *testing.T) {
	tt := newTest(t)
	att, err := tt.Begin(t.Context(), "TEST")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tt.Password(t.Context(), sasl.Plain, "", "alice", "secret") }()
	select {
	case err := <-done:
		t.Fatalf("Password did not wait for the attempt in progress: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	Cancel(nil, att)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Password after the cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Password still waiting after the attempt in progress ended")
	}

	// A wait that outlasts the caller's context is a refusal.
	att, _ = tt.Begin(t.Context(), "TEST")
	defer att.Abandon()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := tt.Password(ctx, sasl.Plain, "", "alice", "secret"); err != ErrTooMany {
		t.Fatalf("wait past ctx: %v, want ErrTooMany", err)
	}

	tt = newTest(t)
	tt.Limiter.MaxFailures, tt.Limiter.FreeFailures = 10, 0
	tt.Limiter.Delay, tt.Limiter.MaxDelay = 200*time.Millisecond, time.Second
	start := time.Now()
	if err := tt.Password(t.Context(), sasl.Plain, "", "alice", "wrong"); err != ErrInvalid {
		t.Fatalf("Password: %v", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("failure answered after %v, want the 200ms delay", d)
	}
}

// An authzid naming another account fails; a protocol that has a reply
// for it gets ErrAuthzid, not counted, one that has not ErrInvalid.
func TestAuthzid(t *testing.T) {
	tt := newTest(t)
	tt.RefuseAuthzid = true
	if err := tt.Password(t.Context(), sasl.Plain, "bob", "alice", "secret"); err != ErrAuthzid {
		t.Fatalf("refused: %v, want ErrAuthzid", err)
	}
	tt.wantLog(t, `level=INFO msg="authentication failed" mech=PLAIN login=alice reason="authorization identity is another account" authzid=bob`)
	if len(tt.accepted) != 0 || !tt.free(t) {
		t.Errorf("accepted %q, or the attempt was counted", tt.accepted)
	}
	if err := tt.Password(t.Context(), sasl.Plain, "alice@example.org", "alice", "secret"); err != nil {
		t.Fatalf("authzid of the login's own account: %v", err)
	}

	tt = newTest(t)
	if err := tt.Password(t.Context(), sasl.Plain, "bob", "alice", "secret"); err != ErrInvalid {
		t.Fatalf("without RefuseAuthzid: %v, want ErrInvalid", err)
	}
	if len(tt.accepted) != 0 || tt.free(t) {
		t.Errorf("accepted %q, or the failure was not counted", tt.accepted)
	}
}

// The server's failures are temporary, logged, and not counted.
func TestTemporary(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*test)
		run   func(*testing.T, *test) error
		log   string
	}{
		{"password store fails", func(tt *test) { tt.pw.err = errors.New("disk on fire") }, password,
			`level=ERROR msg="authentication: checking password" mech=PLAIN login=alice err="disk on fire"`},
		{"account cannot be opened", func(tt *test) { tt.Accept = func(string) error { return errors.New("store closed") } }, password,
			`level=ERROR msg="authentication: opening account" mech=PLAIN login=alice account=alice err="store closed"`},
		{"mechanism says temporary", nil, end(sasl.Outcome{Temporary: true, Login: "alice", Reason: "secret lookup failed"}),
			`level=WARN msg="authentication: temporary failure" mech=SCRAM-SHA-256 login=alice reason="secret lookup failed"`},
		{"mechanism names no account", nil, end(sasl.Outcome{Success: true, Account: "mallory", Login: "alice"}),
			`level=ERROR msg="authentication: plugin named an unknown account" mech=SCRAM-SHA-256 login=alice account=mallory`},
		{"mechanism names a login, not an account", nil, end(sasl.Outcome{Success: true, Account: "alice@example.org", Login: "alice"}),
			`level=ERROR msg="authentication: plugin named an unknown account" mech=SCRAM-SHA-256 login=alice account=alice@example.org`},
		{"plugin down", nil, func(t *testing.T, tt *test) error {
			ex, att, err := tt.Start(t.Context(), server(t, plugins{"X-TEST": nil}), "X-TEST", sdk.ConnInfo{}, nil)
			if ex != nil || att != nil {
				t.Errorf("Start failed with %v but returned an exchange or an attempt", err)
			}
			return err
		}, `level=WARN msg="authentication unavailable" mech=X-TEST err="sasl: mechanism temporarily unavailable: X-TEST: plugin down"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tt := newTest(t)
			if tc.setup != nil {
				tc.setup(tt)
			}
			if err := tc.run(t, tt); err != ErrTemporary {
				t.Fatalf("got %v, want ErrTemporary", err)
			}
			tt.wantLog(t, tc.log)
			if !tt.free(t) {
				t.Error("the attempt was counted, or is still in progress")
			}
		})
	}
}

func password(t *testing.T, tt *test) error {
	return tt.Password(t.Context(), sasl.Plain, "", "alice", "secret")
}

// end ends an attempt with o, as a mechanism that decided without a
// password does.
func end(o sasl.Outcome) func(*testing.T, *test) error {
	o.Mechanism = "SCRAM-SHA-256"
	return func(t *testing.T, tt *test) error {
		att, err := tt.Begin(t.Context(), o.Mechanism)
		if err != nil {
			t.Fatal(err)
		}
		return tt.End(t.Context(), att, o)
	}
}

// A panic in a mechanism, the password check or the session's Accept
// goes on to the protocol's recovery, which answers with a temporary
// failure; the attempt is abandoned, neither counted nor left in progress.
func TestPanicIsTemporary(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*test)
		run   func(*testing.T, *test) error
	}{
		{"password check", func(tt *test) { tt.pw.panics = true }, password},
		{"Accept after a password", func(tt *test) { tt.Accept = func(string) error { panic("session bug") } }, password},
		{"Accept after a mechanism", func(tt *test) { tt.Accept = func(string) error { panic("session bug") } },
			end(sasl.Outcome{Success: true, Account: "alice", Login: "alice"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tt := newTest(t)
			tc.setup(tt)
			func() {
				defer func() {
					if v := recover(); v == nil {
						t.Error("the panic did not reach the caller")
					}
				}()
				tc.run(t, tt)
			}()
			if !tt.free(t) {
				t.Error("the attempt was counted, or is still in progress")
			}
		})
	}
}

// plugins serves mechanisms by name; a name mapped to nil is down.
type plugins map[string]sdk.Mechanism

func (p plugins) Mechanisms() []string { return slices.Sorted(maps.Keys(p)) }

func (p plugins) Mechanism(name string) (sdk.Mechanism, error) {
	if m := p[name]; m != nil {
		return m, nil
	}
	return nil, errors.New("plugin down")
}

func server(t *testing.T, p plugins) *sasl.Server {
	t.Helper()
	ss, err := sasl.New(sasl.Options{Plugins: p})
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

// mech ends its exchange with outcome at the first response.
type mech struct {
	outcome sdk.AuthOutcome
	ctx     context.Context // The exchange's.
}

func (m *mech) Start(ctx context.Context, name string, conn sdk.ConnInfo) (sdk.Exchange, error) {
	m.ctx = ctx
	return m, nil
}

func (m *mech) Next(ctx context.Context, response []byte) ([]byte, *sdk.AuthOutcome, error) {
	o := m.outcome
	return nil, &o, nil
}

// A plugin's exchange ends the attempt with its outcome through the
// protocol's Answer, whose error its last Next returns.
func TestStart(t *testing.T) {
	errReply := errors.New("protocol reply")
	for _, tc := range []struct {
		name     string
		outcome  sdk.AuthOutcome
		want     error // From End.
		accepted []string
		free     bool // Not counted.
		log      string
	}{
		{"success", sdk.AuthOutcome{Success: true, Account: "alice", Login: "alice@example.org"}, nil, []string{"alice"}, true,
			`level=INFO msg=authenticated mech=X-TEST login=alice@example.org account=alice tls=true`},
		{"failure", sdk.AuthOutcome{Login: "alice", Reason: "proof mismatch"}, ErrInvalid, nil, false,
			`level=INFO msg="authentication failed" mech=X-TEST login=alice reason="proof mismatch"`},
		{"temporary", sdk.AuthOutcome{Temporary: true, Reason: "no secret"}, ErrTemporary, nil, true,
			`level=WARN msg="authentication: temporary failure" mech=X-TEST login="" reason="no secret"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tt := newTest(t)
			var got error
			answered := 0
			answer := func(end func() error) error {
				answered++
				got = end()
				return errReply
			}
			ex, att, err := tt.Start(t.Context(), server(t, plugins{"X-TEST": &mech{outcome: tc.outcome}}), "X-TEST", sdk.ConnInfo{}, answer)
			if err != nil || ex == nil || att == nil {
				t.Fatalf("Start: %v, %v, %v", ex, att, err)
			}
			if _, done, err := ex.Next(nil); !done || err != errReply {
				t.Errorf("Next: done %v, %v; want the answer's error", done, err)
			}
			if answered != 1 || got != tc.want {
				t.Errorf("answered %d times, end returned %v; want once, %v", answered, got, tc.want)
			}
			if !slices.Equal(tt.accepted, tc.accepted) {
				t.Errorf("accepted %q, want %q", tt.accepted, tc.accepted)
			}
			tt.wantLog(t, tc.log)
			Cancel(ex, att) // Does nothing once ended.
			if tt.free(t) != tc.free {
				t.Errorf("free after the outcome: %v, want %v", !tc.free, tc.free)
			}
		})
	}
}

// A mechanism not offered is sasl.ErrUnknownMechanism; a cancelled
// exchange ends the plugin's and proves nothing.
func TestStartUnknownAndCancel(t *testing.T) {
	tt := newTest(t)
	m := &mech{}
	ss := server(t, plugins{"X-TEST": m})
	_, _, err := tt.Start(t.Context(), ss, "X-NONE", sdk.ConnInfo{}, nil)
	if !errors.Is(err, sasl.ErrUnknownMechanism) {
		t.Fatalf("unknown mechanism: %v", err)
	}
	if !tt.free(t) {
		t.Error("unknown mechanism counted")
	}
	ex, att, err := tt.Start(t.Context(), ss, "X-TEST", sdk.ConnInfo{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	Cancel(ex, att)
	if m.ctx.Err() == nil {
		t.Error("the plugin's exchange goes on after Cancel")
	}
	if !tt.free(t) {
		t.Error("cancelled exchange counted or still in progress")
	}
	Cancel(nil, nil)
}

// keys is a store of TLS client keys; it fails with err.
type keys struct {
	k    map[string]store.TLSPublicKey // By fingerprint.
	err  error
	used []string
}

func (k *keys) TLSPublicKey(ctx context.Context, fp string) (store.TLSPublicKey, error) {
	if k.err != nil {
		return store.TLSPublicKey{}, k.err
	}
	key, ok := k.k[fp]
	if !ok {
		return key, store.ErrNotFound
	}
	return key, nil
}

func (k *keys) TLSPublicKeyUsed(ctx context.Context, fp string, t time.Time) error {
	k.used = append(k.used, fp)
	return nil
}

// withKey gives the test's client alice's key; it returns the store.
func withKey(tt *test) *keys {
	hash := make([]byte, 32)
	fp := store.TLSFingerprint(hash)
	ks := &keys{k: map[string]store.TLSPublicKey{fp: {Fingerprint: fp, Account: "alice", LoginAddress: "alice@example.org", Name: "phone"}}}
	tt.Keys, tt.ClientKey = ks, hash
	return ks
}

// With alice's key, a login to bob fails and is counted, whatever the
// mechanism; alice by any of her logins succeeds.
func TestKeyBindsAccount(t *testing.T) {
	tt := newTest(t)
	withKey(tt)
	if err := tt.Password(t.Context(), sasl.Plain, "", "bob", "hunter2"); err != ErrInvalid {
		t.Fatalf("PLAIN as bob with alice's key: %v, want ErrInvalid", err)
	}
	if tt.free(t) {
		t.Error("the login to another account was not counted")
	}
	tt.wantLog(t, `msg="authentication failed" mech=PLAIN login=bob key=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA key_account=alice reason="the TLS client key is of another account"`)

	tt = newTest(t)
	withKey(tt)
	ss := server(t, plugins{"SCRAM-SHA-256": &mech{outcome: sdk.AuthOutcome{Success: true, Account: "bob", Login: "bob"}}})
	if err := runExchange(t, tt, ss, "SCRAM-SHA-256"); err != ErrInvalid {
		t.Fatalf("SCRAM as bob with alice's key: %v, want ErrInvalid", err)
	}
	if len(tt.accepted) != 0 {
		t.Errorf("accepted %q", tt.accepted)
	}

	tt = newTest(t)
	ks := withKey(tt)
	if err := tt.Password(t.Context(), sasl.Plain, "", "alice@example.org", "secret"); err != nil {
		t.Fatalf("PLAIN as alice's address with her key: %v", err)
	}
	if len(ks.used) != 0 {
		t.Errorf("a password login recorded the key's use: %q", ks.used)
	}
}

// runExchange runs a plugin exchange of mech to its end, the flow's error
// returned as the protocol's answer.
func runExchange(t *testing.T, tt *test, ss *sasl.Server, mech string) error {
	t.Helper()
	var flowErr error
	ex, _, err := tt.Start(t.Context(), ss, mech, sdk.ConnInfo{TLS: &sdk.TLSInfo{}}, func(end func() error) error {
		flowErr = end()
		return flowErr
	})
	if err != nil {
		return err
	}
	ex.Next(nil)
	return flowErr
}

func TestExternalNamesKey(t *testing.T) {
	tt := newTest(t)
	ks := withKey(tt)
	ss := server(t, plugins{"EXTERNAL": &mech{outcome: sdk.AuthOutcome{Success: true, Account: "alice", Login: "alice@example.org"}}})
	if err := runExchange(t, tt, ss, "EXTERNAL"); err != nil {
		t.Fatalf("EXTERNAL: %v", err)
	}
	tt.wantLog(t, `msg=authenticated mech=EXTERNAL login=alice@example.org account=alice tls=true key=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA key_name=phone`)
	if len(ks.used) != 1 {
		t.Errorf("use recorded %d times, want once", len(ks.used))
	}
}

func TestKeyErrors(t *testing.T) {
	// A store failing to read the key: temporary, not counted.
	tt := newTest(t)
	ks := withKey(tt)
	ks.err = errors.New("disk on fire")
	if err := tt.Password(t.Context(), sasl.Plain, "", "alice", "secret"); err != ErrTemporary {
		t.Fatalf("key store failing: %v, want ErrTemporary", err)
	}
	if !tt.free(t) {
		t.Error("a store failure was counted")
	}
	// A key of an account no longer configured binds nothing.
	tt = newTest(t)
	ks = withKey(tt)
	for fp, k := range ks.k {
		k.Account = "carol"
		ks.k[fp] = k
	}
	if err := tt.Password(t.Context(), sasl.Plain, "", "bob", "hunter2"); err != nil {
		t.Fatalf("key of a removed account: %v", err)
	}
}

// preAuth serves EXTERNAL with a PreAuth answering outcome.
type preAuth struct {
	mech
	pre sdk.AuthOutcome
}

func (p *preAuth) PreAuth(ctx context.Context, conn sdk.ConnInfo) (*sdk.AuthOutcome, error) {
	o := p.pre
	return &o, nil
}

func TestPreAuth(t *testing.T) {
	withCert := sdk.ConnInfo{TLS: &sdk.TLSInfo{PeerCertificates: []*x509.Certificate{{}}}}
	for _, tc := range []struct {
		name     string
		pre      sdk.AuthOutcome
		conn     sdk.ConnInfo
		want     error
		accepted []string
		log      string
	}{
		{"known key", sdk.AuthOutcome{Success: true, Account: "alice", Login: "alice@example.org"}, withCert, nil, []string{"alice"},
			`msg=authenticated mech=EXTERNAL login=alice@example.org preauth=true account=alice tls=true key=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA key_name=phone`},
		{"unknown key", sdk.AuthOutcome{Reason: "unknown key"}, withCert, ErrInvalid, nil, ""},
		{"no certificate", sdk.AuthOutcome{Success: true, Account: "alice"}, sdk.ConnInfo{TLS: &sdk.TLSInfo{}}, ErrInvalid, nil, ""},
		{"plugin trouble", sdk.AuthOutcome{Temporary: true, Reason: "host lookup failed"}, withCert, ErrTemporary, nil,
			`msg="pre-authentication: temporary failure" mech=EXTERNAL login="" preauth=true reason="host lookup failed"`},
		{"unknown account", sdk.AuthOutcome{Success: true, Account: "carol"}, withCert, ErrTemporary, nil, `pre-authentication: plugin named an unknown account`},
		{"account not the key's", sdk.AuthOutcome{Success: true, Account: "bob"}, withCert, ErrInvalid, nil, `reason="the TLS client key is of another account"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tt := newTest(t)
			withKey(tt)
			ss := server(t, plugins{"EXTERNAL": &preAuth{pre: tc.pre}})
			if err := tt.PreAuth(t.Context(), ss, tc.conn); err != tc.want {
				t.Fatalf("PreAuth: %v, want %v", err, tc.want)
			}
			if !slices.Equal(tt.accepted, tc.accepted) {
				t.Errorf("accepted %q, want %q", tt.accepted, tc.accepted)
			}
			if tc.log != "" {
				tt.wantLog(t, tc.log)
			}
			if !tt.free(t) {
				t.Error("pre-authentication was counted as an attempt")
			}
		})
	}
}
