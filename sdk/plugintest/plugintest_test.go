package plugintest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/plugintest"
)

// recorder is a transport, mechanism and checker in one, recording what it got.
type recorder struct {
	cfg  *sdk.Configuration
	req  *sdk.DeliverRequest
	body []byte
}

type recorderConfig struct {
	Host   string   `toml:"host"`
	Port   int      `toml:"port"`
	Ratio  float64  `toml:"ratio"`
	Names  []string `toml:"names"`
	Nested struct {
		On bool `toml:"on"`
	} `toml:"nested"`
}

func (r *recorder) Configure(ctx context.Context, c *sdk.Configuration) error {
	var cfg recorderConfig
	if err := c.Decode(&cfg); err != nil {
		return err
	}
	if cfg.Port > 65535 {
		return sdk.ConfigErrors{{Key: "port", Msg: "out of range"}}
	}
	r.cfg = c
	if c.Host != nil {
		if _, err := c.Host.Secret(ctx, "nobody", "X"); !errors.Is(err, sdk.ErrNotFound) {
			return errors.New("host lookup of unknown user did not say not found")
		}
	}
	return nil
}

func (r *recorder) Deliver(ctx context.Context, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	r.req = req
	var err error
	r.body, err = io.ReadAll(req.Message)
	if err != nil {
		return nil, err
	}
	res := &sdk.DeliverResult{}
	for i, rc := range req.Recipients {
		st, stage := sdk.StatusDelivered, sdk.StageData
		if i == 1 {
			st, stage = sdk.StatusPermanent, sdk.StageRcpt
		}
		res.Recipients = append(res.Recipients, sdk.RecipientResult{Address: rc.Address, Status: st, Code: 250 + 300*i, EnhancedCode: "2.0.0", Text: "ok", RemoteHost: "mx.example", RemoteIP: "127.0.0.1", TLS: sdk.TLSUse{Verification: sdk.VerifyDANE, Version: "TLS1.3"}, Stage: stage})
	}
	return res, nil
}

// Mechanism: "TEST" asks for a password and checks it through the host.
type mech struct{ host sdk.Host }

type exchange struct {
	m    *mech
	conn sdk.ConnInfo
	step int
}

func (m *mech) Start(ctx context.Context, name string, conn sdk.ConnInfo) (sdk.Exchange, error) {
	return &exchange{m: m, conn: conn}, nil
}

func (e *exchange) Next(ctx context.Context, resp []byte) ([]byte, *sdk.AuthOutcome, error) {
	e.step++
	if e.step == 1 {
		if resp != nil {
			return nil, &sdk.AuthOutcome{Reason: "unexpected initial response"}, nil
		}
		return []byte("who?"), nil, nil
	}
	user, pass, _ := strings.Cut(string(resp), ":")
	c, err := e.m.host.Secret(ctx, user, "TEST")
	if err != nil || string(c.Secret) != pass {
		return nil, &sdk.AuthOutcome{Reason: "bad password"}, nil
	}
	if e.conn.TLS == nil || string(e.conn.TLS.Exporter) != "exp" {
		return nil, &sdk.AuthOutcome{Reason: "no binding"}, nil
	}
	return nil, &sdk.AuthOutcome{Success: true, Account: c.Account, Login: user, FinalData: []byte("v=ok")}, nil
}

func (m *mech) Derive(ctx context.Context, account, password string) (map[string][]byte, error) {
	h := sha256.Sum256([]byte(password))
	return map[string][]byte{"TEST": h[:]}, nil
}

type checker struct{ got []byte }

func (c *checker) Check(ctx context.Context, req *sdk.CheckRequest) (sdk.Verdict, error) {
	if req.Stage == sdk.StageData {
		c.got, _ = io.ReadAll(req.Message)
		return sdk.Verdict{Action: sdk.ActionReject, Code: 554, EnhancedCode: "5.7.1", Text: "spam", PrependHeaders: []string{"X-Test: 1\r\n"}, DeleteHeaders: []sdk.HeaderRef{{Name: "Authentication-Results", Index: 2}}}, nil
	}
	return sdk.Verdict{Action: sdk.ActionContinue}, nil
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestTransportOverRPC(t *testing.T) {
	rec := &recorder{}
	c := plugintest.Connect(t, &sdk.Plugin{Name: "rec", Version: "1.2.3", Transport: rec}, &plugintest.Host{})

	d, err := c.Describe(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "rec" || d.Version != "1.2.3" || !d.Transport || d.Policy != nil || len(d.Mechanisms) != 0 {
		t.Fatalf("describe: %+v", d)
	}

	table := map[string]any{"host": "h", "port": int64(25), "ratio": 0.5, "names": []any{"a", "b"}, "nested": map[string]any{"on": true}}
	if err := c.Configure(ctx(t), &sdk.Configuration{Kind: sdk.KindTransport, Instance: "smarthost", Table: table, ConfigDir: "/etc/x", DataDir: "/var/x"}); err != nil {
		t.Fatalf("configure: %v", err)
	}
	if rec.cfg.Instance != "smarthost" || rec.cfg.ConfigDir != "/etc/x" || !reflect.DeepEqual(rec.cfg.Table, table) {
		t.Fatalf("configuration arrived as %+v", rec.cfg)
	}

	for _, tc := range []struct {
		name  string
		table map[string]any
		want  string
	}{
		{"unknown key", map[string]any{"hots": "x"}, "hots: unknown key"},
		{"wrong type", map[string]any{"port": "25"}, "port:"},
		{"plugin check", map[string]any{"port": int64(70000)}, "port: out of range"},
	} {
		err := c.Configure(ctx(t), &sdk.Configuration{Kind: sdk.KindTransport, Instance: "x", Table: tc.table})
		var ces sdk.ConfigErrors
		if !errors.As(err, &ces) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want ConfigErrors containing %q", tc.name, err, tc.want)
		}
	}
	if err := c.Configure(ctx(t), &sdk.Configuration{Kind: sdk.KindMechanism, Instance: "x"}); err == nil {
		t.Errorf("configuring a kind the plugin does not serve succeeded")
	}

	// A message larger than one chunk, so it travels in several.
	body := bytes.Repeat([]byte("0123456789abcdef\r\n"), 50000)
	req := &sdk.DeliverRequest{
		Instance: "smarthost", QueueID: "42", Attempt: 3, From: "a@example.org",
		Recipients: []sdk.Recipient{{Address: "b@example.net", Notify: []string{"FAILURE"}, ORcpt: "rfc822;b@example.net"}, {Address: "c@example.net"}},
		Options:    sdk.DeliverOptions{SMTPUTF8: true, Body: "8BITMIME", RequireTLS: true, EnvelopeID: "env", DSNReturn: "HDRS"},
		Size:       int64(len(body)),
		Message:    bytes.NewReader(body),
	}
	res, err := c.Transport().Deliver(ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rec.body, body) {
		t.Fatalf("body arrived with %d bytes, want %d", len(rec.body), len(body))
	}
	got := *rec.req
	got.Message, req.Message = nil, nil
	if !reflect.DeepEqual(&got, req) {
		t.Fatalf("request arrived as %+v, want %+v", got, req)
	}
	if len(res.Recipients) != 2 || res.Recipients[0].Status != sdk.StatusDelivered || res.Recipients[1].Status != sdk.StatusPermanent ||
		res.Recipients[1].Code != 550 || res.Recipients[0].TLS.Verification != sdk.VerifyDANE || res.Recipients[0].RemoteIP != "127.0.0.1" ||
		res.Recipients[0].Stage != sdk.StageData || res.Recipients[1].Stage != sdk.StageRcpt {
		t.Fatalf("result: %+v", res)
	}
}

func TestMechanismOverRPC(t *testing.T) {
	host := &plugintest.Host{}
	host.SetSecret("alice@example.org", "TEST", sdk.Credential{Account: "alice", Secret: []byte("pw")})
	m := &mech{}
	c := plugintest.Connect(t, &sdk.Plugin{Name: "m", Mechanisms: []string{"TEST"}, Mechanism: m}, host)
	// The plugin learns its host from Configure, as a real one does.
	if err := c.Configure(ctx(t), &sdk.Configuration{Kind: sdk.KindMechanism, Instance: "m"}); err != nil {
		t.Fatal(err)
	}
	d, err := c.Describe(ctx(t))
	if err != nil || !reflect.DeepEqual(d.Mechanisms, []string{"TEST"}) {
		t.Fatalf("describe: %+v %v", d, err)
	}
	conn := sdk.ConnInfo{Protocol: "smtp", RemoteAddr: "127.0.0.1:1", TLS: &sdk.TLSInfo{Version: 0x0304, Exporter: []byte("exp")}}
	for _, tc := range []struct {
		pass    string
		success bool
	}{{"pw", true}, {"wrong", false}} {
		ex, err := c.Mechanism().Start(ctx(t), "TEST", conn)
		if err != nil {
			t.Fatal(err)
		}
		ch, out, err := ex.Next(ctx(t), nil)
		if err != nil || out != nil || string(ch) != "who?" {
			t.Fatalf("first step: %q %+v %v", ch, out, err)
		}
		ch, out, err = ex.Next(ctx(t), []byte("alice@example.org:"+tc.pass))
		if err != nil || out == nil || ch != nil {
			t.Fatalf("second step: %q %+v %v", ch, out, err)
		}
		if out.Success != tc.success || (tc.success && (out.Account != "alice" || string(out.FinalData) != "v=ok")) {
			t.Fatalf("password %q: outcome %+v", tc.pass, out)
		}
	}
	secrets, err := c.Mechanism().(sdk.Deriver).Derive(ctx(t), "alice", "pw")
	if err != nil || len(secrets["TEST"]) != 32 {
		t.Fatalf("derive: %v %v", secrets, err)
	}
}

func (m *mech) Configure(ctx context.Context, c *sdk.Configuration) error {
	m.host = c.Host
	if m.host == nil {
		return errors.New("no host")
	}
	return nil
}

func TestCheckerOverRPC(t *testing.T) {
	ch := &checker{}
	c := plugintest.Connect(t, &sdk.Plugin{Name: "p", Policy: &sdk.PolicyInfo{Stages: []sdk.Stage{sdk.StageRcpt, sdk.StageData}, Body: sdk.BodyFull}, Checker: ch}, nil)
	d, err := c.Describe(ctx(t))
	if err != nil || d.Policy == nil || d.Policy.Body != sdk.BodyFull || len(d.Policy.Stages) != 2 {
		t.Fatalf("describe: %+v %v", d, err)
	}
	v, err := c.Checker().Check(ctx(t), &sdk.CheckRequest{Stage: sdk.StageRcpt, From: "a@b", Recipients: []string{"c@d"}})
	if err != nil || v.Action != sdk.ActionContinue {
		t.Fatalf("rcpt: %+v %v", v, err)
	}
	msg := "Subject: hi\r\n\r\nbody\r\n"
	v, err = c.Checker().Check(ctx(t), &sdk.CheckRequest{Stage: sdk.StageData, Message: strings.NewReader(msg)})
	if err != nil || v.Action != sdk.ActionReject || v.Code != 554 || v.PrependHeaders[0] != "X-Test: 1\r\n" || len(v.DeleteHeaders) != 1 || v.DeleteHeaders[0] != (sdk.HeaderRef{Name: "Authentication-Results", Index: 2}) {
		t.Fatalf("data: %+v %v", v, err)
	}
	if string(ch.got) != msg {
		t.Fatalf("checker read %q", ch.got)
	}
}
