package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/plugintest"
)

// env is the plugin served over gRPC as the core would run it.
type env struct {
	t   *testing.T
	c   *sdk.Client
	dir string // ConfigDir.

	mu  sync.Mutex
	log bytes.Buffer // The plugin's log, JSON lines.
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, dir: t.TempDir()}
	logger := slog.New(slog.NewJSONHandler(lockedWriter{&e.mu, &e.log}, nil))
	e.c = plugintest.Connect(t, &sdk.Plugin{Name: "transport-submission", Version: "0.1.0", Transport: newTransport(logger)}, nil)
	return e
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) configure(instance string, table map[string]any) error {
	return e.c.Configure(testCtx(e.t), &sdk.Configuration{
		Kind: sdk.KindTransport, Instance: instance, KeyPath: "transports." + instance + ".config",
		Table: table, Hostname: "relay.test", ConfigDir: e.dir,
	})
}

func (e *env) mustConfigure(instance string, table map[string]any) {
	e.t.Helper()
	if err := e.configure(instance, table); err != nil {
		e.t.Fatalf("configure %s: %v", instance, err)
	}
}

// file writes a file in the config directory and returns its relative name.
func (e *env) file(name, content string) string {
	if err := os.WriteFile(filepath.Join(e.dir, name), []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return name
}

func (e *env) deliver(req *sdk.DeliverRequest) *sdk.DeliverResult {
	e.t.Helper()
	res, err := e.c.Transport().Deliver(testCtx(e.t), req)
	if err != nil {
		e.t.Fatalf("deliver: %v", err)
	}
	return res
}

// logLines returns the plugin's log lines with message msg.
func (e *env) logLines(msg string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, l := range strings.Split(e.log.String(), "\n") {
		if strings.Contains(l, `"msg":"`+msg+`"`) {
			out = append(out, l)
		}
	}
	return out
}

const testBody = "From: a@example.org\r\nSubject: test\r\n\r\nHello\r\n.leading dot\r\n..two\r\n\r\n"

func request(instance string, body string, rcpts ...string) *sdk.DeliverRequest {
	req := &sdk.DeliverRequest{Instance: instance, QueueID: "q1", Attempt: 1, From: "a@example.org", Size: int64(len(body)), Message: strings.NewReader(body)}
	for _, r := range rcpts {
		req.Recipients = append(req.Recipients, sdk.Recipient{Address: r})
	}
	return req
}

func plainTable(addr string) map[string]any {
	return map[string]any{"host": "127.0.0.1", "port": port(addr), "tls": "none"}
}

func checkResult(t *testing.T, got sdk.RecipientResult, status sdk.Status, code int, enh string) {
	t.Helper()
	if got.Status != status || got.Code != code || got.EnhancedCode != enh {
		t.Errorf("%s: got %v %d %s %q, want %v %d %s", got.Address, got.Status, got.Code, got.EnhancedCode, got.Text, status, code, enh)
	}
}

func TestPlainDelivery(t *testing.T) {
	h := newSmarthost(t, hostOpts{configure: func(s *smtp.Server) {
		s.EnableDSN = true
		s.EnableSMTPUTF8 = true
	}})
	e := newEnv(t)
	e.mustConfigure("smarthost", plainTable(h.addr))

	body := testBody + "8-bit: \xc3\xa9\r\n"
	req := request("smarthost", body)
	req.Recipients = []sdk.Recipient{
		{Address: "b@example.net", Notify: []string{"SUCCESS", "FAILURE"}, ORcpt: "rfc822;b+x@example.net"},
		{Address: "c@example.net"},
	}
	req.Options = sdk.DeliverOptions{SMTPUTF8: true, Body: "8BITMIME", EnvelopeID: "env 1", DSNReturn: "HDRS"}
	res := e.deliver(req)

	for _, r := range res.Recipients {
		checkResult(t, r, sdk.StatusDelivered, 250, "2.0.0")
		if r.RemoteHost != "127.0.0.1" || r.RemoteIP != "127.0.0.1" || r.TLS != (sdk.TLSUse{}) {
			t.Errorf("result %+v: want remote 127.0.0.1 without TLS", r)
		}
	}
	msgs := h.messages()
	if len(msgs) != 1 {
		t.Fatalf("smarthost got %d messages", len(msgs))
	}
	m := msgs[0]
	if string(m.body) != body {
		t.Errorf("body:\n%q\nwant\n%q", m.body, body)
	}
	if m.helo != "relay.test" || m.from != "a@example.org" || !reflect.DeepEqual(m.rcpts, []string{"b@example.net", "c@example.net"}) {
		t.Errorf("envelope: helo %q from %q rcpts %q", m.helo, m.from, m.rcpts)
	}
	o := m.mailOpts
	if o.Body != smtp.Body8BitMIME || !o.UTF8 || o.Size != int64(len(body)) || o.EnvelopeID != "env 1" || o.Return != smtp.DSNReturnHeaders {
		t.Errorf("MAIL options: %+v", o)
	}
	ro := m.rcptOpts[0]
	if !reflect.DeepEqual(ro.Notify, []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure}) ||
		ro.OriginalRecipientType != smtp.DSNAddressTypeRFC822 || ro.OriginalRecipient != "b+x@example.net" {
		t.Errorf("RCPT options: %+v", ro)
	}
	if lines := e.logLines("delivery attempt"); len(lines) != 1 || !strings.Contains(lines[0], `"queueid":"q1"`) ||
		!strings.Contains(lines[0], `"delivered":2`) || !strings.Contains(lines[0], `"instance":"smarthost"`) {
		t.Errorf("log lines: %q", lines)
	}
}

func TestPerRecipientReplies(t *testing.T) {
	h := newSmarthost(t, hostOpts{})
	e := newEnv(t)
	e.mustConfigure("smarthost", plainTable(h.addr))

	res := e.deliver(request("smarthost", testBody, "tempfail@example.net", "ok@example.net", "reject@example.net"))
	checkResult(t, res.Recipients[0], sdk.StatusTemporary, 451, "4.3.0")
	checkResult(t, res.Recipients[1], sdk.StatusDelivered, 250, "2.0.0")
	checkResult(t, res.Recipients[2], sdk.StatusPermanent, 550, "5.1.1")
	if res.Recipients[2].Text != "no such user" || res.Recipients[0].Text != "try again later" {
		t.Errorf("texts: %q, %q", res.Recipients[0].Text, res.Recipients[2].Text)
	}
	if m := h.messages(); len(m) != 1 || !reflect.DeepEqual(m[0].rcpts, []string{"ok@example.net"}) {
		t.Errorf("smarthost got %+v", m)
	}

	// No recipient accepted: no DATA, and the connection stays usable.
	res = e.deliver(request("smarthost", testBody, "reject@example.net", "tempfail@example.net"))
	checkResult(t, res.Recipients[0], sdk.StatusPermanent, 550, "5.1.1")
	checkResult(t, res.Recipients[1], sdk.StatusTemporary, 451, "4.3.0")
	// A DATA failure applies to the accepted recipients only.
	res = e.deliver(request("smarthost", "X-Fail: data\r\n\r\nx\r\n", "ok@example.net", "reject@example.net"))
	checkResult(t, res.Recipients[0], sdk.StatusPermanent, 554, "5.6.0")
	checkResult(t, res.Recipients[1], sdk.StatusPermanent, 550, "5.1.1")
	if strings.Count(h.trace(), "DATA\r\n") != 2 {
		t.Errorf("DATA sent %d times, want 2", strings.Count(h.trace(), "DATA\r\n"))
	}
	if n := h.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestTLSAndAuth(t *testing.T) {
	cert := newTestCert(t)
	for _, tc := range []struct {
		name     string
		host     hostOpts
		table    map[string]any // Besides host and port.
		status   sdk.Status
		code     int
		text     string // Contained in the result text.
		verify   sdk.Verification
		authMech string // Used, as the server saw it.
	}{
		{
			name:  "starttls plain",
			host:  hostOpts{tls: "starttls", mechanisms: []string{"LOGIN", "PLAIN"}, user: "relay", pass: "s3cret"},
			table: map[string]any{"tls": "starttls", "ca_file": "ca.pem", "username": "relay", "password_file": "pw"},
			code:  250, status: sdk.StatusDelivered, verify: sdk.VerifyPKIX, authMech: "PLAIN",
		},
		{
			name:  "implicit tls login",
			host:  hostOpts{tls: "tls", mechanisms: []string{"PLAIN", "LOGIN"}, user: "relay", pass: "s3cret"},
			table: map[string]any{"tls": "tls", "ca_file": "ca.pem", "username": "relay", "password_file": "pw", "mechanisms": []any{"login"}},
			code:  250, status: sdk.StatusDelivered, verify: sdk.VerifyPKIX, authMech: "LOGIN",
		},
		{
			name:  "wrong password",
			host:  hostOpts{tls: "tls", mechanisms: []string{"PLAIN"}, user: "relay", pass: "other"},
			table: map[string]any{"tls": "tls", "ca_file": "ca.pem", "username": "relay", "password_file": "pw"},
			code:  535, status: sdk.StatusTemporary, text: "Authentication failed",
		},
		{
			name:   "no common mechanism",
			host:   hostOpts{tls: "tls", mechanisms: []string{"PLAIN"}, user: "relay", pass: "s3cret"},
			table:  map[string]any{"tls": "tls", "ca_file": "ca.pem", "username": "relay", "password_file": "pw", "mechanisms": []any{"LOGIN"}},
			status: sdk.StatusTemporary, text: "none of LOGIN",
		},
		{
			name:   "starttls not offered",
			host:   hostOpts{},
			table:  map[string]any{"tls": "starttls"},
			status: sdk.StatusTemporary, text: "does not offer STARTTLS",
		},
		{
			name:   "untrusted certificate",
			host:   hostOpts{tls: "starttls"},
			table:  map[string]any{"tls": "starttls"},
			status: sdk.StatusTemporary, text: "certificate",
		},
		{
			name:   "insecure skip verify",
			host:   hostOpts{tls: "tls"},
			table:  map[string]any{"tls": "tls", "insecure_skip_verify": true},
			status: sdk.StatusDelivered, code: 250, verify: sdk.VerifyOpportunistic,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.host.cert = cert
			h := newSmarthost(t, tc.host)
			e := newEnv(t)
			e.file("ca.pem", string(cert.pem))
			e.file("pw", "s3cret\nignored second line\n")
			table := map[string]any{"host": "127.0.0.1", "port": port(h.addr)}
			for k, v := range tc.table {
				table[k] = v
			}
			e.mustConfigure("smarthost", table)
			res := e.deliver(request("smarthost", testBody, "b@example.net", "c@example.net"))
			for _, r := range res.Recipients {
				if r.Status != tc.status || r.Code != tc.code || !strings.Contains(r.Text, tc.text) {
					t.Errorf("result %v %d %q, want %v %d containing %q", r.Status, r.Code, r.Text, tc.status, tc.code, tc.text)
				}
				if tc.status == sdk.StatusDelivered && (r.TLS.Verification != tc.verify || !strings.HasPrefix(r.TLS.Version, "TLS1.") || r.TLS.Cipher == "") {
					t.Errorf("TLS %+v, want verification %v", r.TLS, tc.verify)
				}
			}
			msgs := h.messages()
			if tc.status == sdk.StatusDelivered {
				if len(msgs) != 1 || string(msgs[0].body) != testBody || msgs[0].authMech != tc.authMech {
					t.Fatalf("smarthost got %d messages (%+v), want 1 after AUTH %q", len(msgs), msgs, tc.authMech)
				}
			} else if len(msgs) != 0 {
				t.Fatalf("smarthost got %d messages, want none", len(msgs))
			}
			want := int32(0)
			if tc.authMech != "" {
				want = 1
			}
			if n := h.auths.Load(); n != want {
				t.Errorf("%d AUTH exchanges, want %d", n, want)
			}
		})
	}
}

// TestSASLMechanisms relays through smarthosts offering various mechanisms,
// over TLS 1.2 and 1.3, with and without configured mechanisms.
func TestSASLMechanisms(t *testing.T) {
	cert := newTestCert(t)
	all := []string{"SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "CRAM-MD5", "PLAIN", "LOGIN"}
	for _, tc := range []struct {
		name       string
		offered    []string
		maxTLS     uint16
		configured []any  // mechanisms; nil for the default.
		pass       string // The smarthost's; the plugin's is "s3cret".
		authMech   string // Used; "" when AUTH fails with 535.
		gs2        string // SCRAM's gs2 header.
		cbLen      int    // Length of the binding data both sides derived; 0 for none.
	}{
		{name: "default SCRAM-SHA-256-PLUS on TLS 1.3", offered: all, authMech: "SCRAM-SHA-256-PLUS", gs2: "p=tls-exporter,,", cbLen: 32},
		{name: "default SCRAM-SHA-256-PLUS on TLS 1.2", offered: all, maxTLS: tls.VersionTLS12, authMech: "SCRAM-SHA-256-PLUS", gs2: "p=tls-unique,,", cbLen: 12},
		{name: "SCRAM-SHA-1-PLUS configured", offered: all, maxTLS: tls.VersionTLS12, configured: []any{"scram-sha-1-plus"}, authMech: "SCRAM-SHA-1-PLUS", gs2: "p=tls-unique,,", cbLen: 12},
		{name: "SCRAM-SHA-256 configured though -PLUS is offered", offered: all, configured: []any{"SCRAM-SHA-256"}, authMech: "SCRAM-SHA-256", gs2: "n,,"},
		{name: "SCRAM-SHA-256 without -PLUS offered", offered: []string{"PLAIN", "SCRAM-SHA-256"}, authMech: "SCRAM-SHA-256", gs2: "y,,"},
		{name: "configured order, not strength", offered: all, configured: []any{"SCRAM-SHA-1", "SCRAM-SHA-256-PLUS"}, authMech: "SCRAM-SHA-1", gs2: "n,,"},
		{name: "default CRAM-MD5", offered: []string{"LOGIN", "PLAIN", "CRAM-MD5"}, authMech: "CRAM-MD5"},
		{name: "default PLAIN when only PLAIN", offered: []string{"PLAIN"}, authMech: "PLAIN"},
		{name: "SCRAM wrong password", offered: all, pass: "other", gs2: "p=tls-exporter,,", cbLen: 32},
		{name: "CRAM-MD5 wrong password", offered: []string{"CRAM-MD5"}, pass: "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.pass == "" {
				tc.pass = "s3cret"
			}
			h := newSmarthost(t, hostOpts{tls: "starttls", cert: cert, maxTLS: tc.maxTLS, mechanisms: tc.offered, user: "relay@example.org", pass: tc.pass})
			e := newEnv(t)
			e.file("ca.pem", string(cert.pem))
			e.file("pw", "s3cret\n")
			table := map[string]any{"host": "127.0.0.1", "port": port(h.addr), "ca_file": "ca.pem", "username": "relay@example.org", "password_file": "pw"}
			if tc.configured != nil {
				table["mechanisms"] = tc.configured
			}
			e.mustConfigure("smarthost", table)
			r := e.deliver(request("smarthost", testBody, "b@example.net")).Recipients[0]
			msgs := h.messages()
			if tc.authMech == "" {
				checkResult(t, r, sdk.StatusTemporary, 535, "5.7.8")
				if len(msgs) != 0 {
					t.Errorf("smarthost got %d messages", len(msgs))
				}
			} else {
				checkResult(t, r, sdk.StatusDelivered, 250, "2.0.0")
				if len(msgs) != 1 || msgs[0].authMech != tc.authMech {
					t.Fatalf("smarthost got %+v, want 1 message after AUTH %s", msgs, tc.authMech)
				}
			}
			recs := h.scramRecords()
			if tc.gs2 == "" {
				if len(recs) != 0 {
					t.Errorf("SCRAM used: %+v", recs)
				}
				return
			}
			if len(recs) != 1 || recs[0].gs2 != tc.gs2 {
				t.Fatalf("SCRAM exchanges %+v, want one with gs2 header %q", recs, tc.gs2)
			}
			// RFC 5802 §6: with -PLUS, the client sent the binding data the
			// smarthost derived from its own side of the TLS connection.
			rec := recs[0]
			if tc.cbLen > 0 && (len(rec.serverCB) != tc.cbLen || !bytes.Equal(rec.clientCB, rec.serverCB)) {
				t.Errorf("binding data: client %x, smarthost %x", rec.clientCB, rec.serverCB)
			}
			if tc.cbLen == 0 && len(rec.clientCB) != 0 {
				t.Errorf("binding data %x sent without -PLUS", rec.clientCB)
			}
		})
	}
}

func TestConnectionReuse(t *testing.T) {
	h := newSmarthost(t, hostOpts{})
	e := newEnv(t)
	e.mustConfigure("smarthost", plainTable(h.addr))
	for i := range 10 {
		res := e.deliver(request("smarthost", testBody, fmt.Sprintf("r%d@example.net", i)))
		checkResult(t, res.Recipients[0], sdk.StatusDelivered, 250, "2.0.0")
	}
	if n := h.conns.Load(); n != 1 {
		t.Errorf("%d connections for 10 deliveries, want 1", n)
	}
	if n := strings.Count(h.trace(), "RSET\r\n"); n != 9 {
		t.Errorf("%d RSET, want 9", n)
	}
	if n := len(h.messages()); n != 10 {
		t.Errorf("smarthost got %d messages", n)
	}
	reused := 0
	for _, l := range e.logLines("delivery attempt") {
		if strings.Contains(l, `"reused":true`) {
			reused++
		}
	}
	if reused != 9 {
		t.Errorf("%d deliveries logged as reusing a connection, want 9", reused)
	}
}

func TestStaleConnection(t *testing.T) {
	// The server drops idle connections after 200ms; the plugin would keep
	// them 30s.
	h := newSmarthost(t, hostOpts{readTimeout: 200 * time.Millisecond})
	e := newEnv(t)
	e.mustConfigure("smarthost", plainTable(h.addr))
	for range 2 {
		res := e.deliver(request("smarthost", testBody, "b@example.net"))
		checkResult(t, res.Recipients[0], sdk.StatusDelivered, 250, "2.0.0")
		time.Sleep(400 * time.Millisecond)
	}
	if n := h.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

func TestIdleTimeout(t *testing.T) {
	h := newSmarthost(t, hostOpts{})
	e := newEnv(t)
	table := plainTable(h.addr)
	table["idle_timeout"] = "100ms"
	e.mustConfigure("smarthost", table)
	e.deliver(request("smarthost", testBody, "b@example.net"))
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(h.trace(), "QUIT\r\n") {
		if time.Now().After(deadline) {
			t.Fatal("idle connection not closed with QUIT")
		}
		time.Sleep(20 * time.Millisecond)
	}
	res := e.deliver(request("smarthost", testBody, "b@example.net"))
	checkResult(t, res.Recipients[0], sdk.StatusDelivered, 250, "2.0.0")
	if n := h.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

func TestParallelDeliveries(t *testing.T) {
	h := newSmarthost(t, hostOpts{dataDelay: 100 * time.Millisecond})
	e := newEnv(t)
	table := plainTable(h.addr)
	table["max_connections"] = int64(3)
	e.mustConfigure("smarthost", table)

	var wg sync.WaitGroup
	results := make([]*sdk.DeliverResult, 9)
	for i := range results {
		wg.Go(func() {
			res, err := e.c.Transport().Deliver(testCtx(t), request("smarthost", testBody, fmt.Sprintf("r%d@example.net", i)))
			if err != nil {
				t.Errorf("deliver %d: %v", i, err)
			}
			results[i] = res
		})
	}
	wg.Wait()
	for _, res := range results {
		if res != nil {
			checkResult(t, res.Recipients[0], sdk.StatusDelivered, 250, "2.0.0")
		}
	}
	h.mu.Lock()
	maxActive := h.maxActive
	h.mu.Unlock()
	if maxActive != 3 {
		t.Errorf("%d deliveries at once, want 3", maxActive)
	}
	if n := h.conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}

func TestInstances(t *testing.T) {
	h1 := newSmarthost(t, hostOpts{})
	h2 := newSmarthost(t, hostOpts{})
	e := newEnv(t)
	e.mustConfigure("one", plainTable(h1.addr))
	e.mustConfigure("two", plainTable(h2.addr))
	e.deliver(request("one", testBody, "b@example.net"))
	e.deliver(request("two", testBody, "b@example.net"))
	if len(h1.messages()) != 1 || len(h2.messages()) != 1 {
		t.Fatalf("smarthosts got %d and %d messages", len(h1.messages()), len(h2.messages()))
	}

	// Configuring "one" again points it at h2 and closes its old connection.
	e.mustConfigure("one", plainTable(h2.addr))
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(h1.trace(), "QUIT\r\n") {
		if time.Now().After(deadline) {
			t.Fatal("old pool's connection not closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.deliver(request("one", testBody, "b@example.net"))
	if len(h1.messages()) != 1 || len(h2.messages()) != 2 {
		t.Fatalf("after reconfiguring, smarthosts got %d and %d messages", len(h1.messages()), len(h2.messages()))
	}

	if _, err := e.c.Transport().Deliver(testCtx(t), request("three", testBody, "b@example.net")); err == nil {
		t.Error("delivery through an unconfigured instance did not fail")
	}
	// CheckOnly validates without putting the instance in force.
	err := e.c.Configure(testCtx(t), &sdk.Configuration{Kind: sdk.KindTransport, Instance: "four", Table: plainTable(h1.addr), Hostname: "relay.test", CheckOnly: true})
	if err != nil {
		t.Fatalf("check only: %v", err)
	}
	if _, err := e.c.Transport().Deliver(testCtx(t), request("four", testBody, "b@example.net")); err == nil {
		t.Error("a CheckOnly configuration was put in force")
	}
}

func TestConfigErrors(t *testing.T) {
	e := newEnv(t)
	e.file("pw", "secret\n")
	e.file("empty", "\n")
	e.file("notpem", "hello")
	for _, tc := range []struct {
		name  string
		table map[string]any
		key   string
	}{
		{"unknown key", map[string]any{"host": "h", "hots": "x"}, "hots"},
		{"missing host", map[string]any{}, "host"},
		{"bad tls", map[string]any{"host": "h", "tls": "ssl"}, "tls"},
		{"port out of range", map[string]any{"host": "h", "port": int64(70000)}, "port"},
		{"port wrong type", map[string]any{"host": "h", "port": "25"}, "port"},
		{"auth in clear", map[string]any{"host": "h", "tls": "none", "username": "u", "password_file": "pw"}, "username"},
		{"no password_file", map[string]any{"host": "h", "username": "u"}, "password_file"},
		{"missing password_file", map[string]any{"host": "h", "username": "u", "password_file": "nope"}, "password_file"},
		{"empty password", map[string]any{"host": "h", "username": "u", "password_file": "empty"}, "password_file"},
		{"password without username", map[string]any{"host": "h", "password_file": "pw"}, "password_file"},
		{"unknown mechanism", map[string]any{"host": "h", "username": "u", "password_file": "pw", "mechanisms": []any{"DIGEST-MD5"}}, "mechanisms"},
		{"ca_file not PEM", map[string]any{"host": "h", "ca_file": "notpem"}, "ca_file"},
		{"ca_file without tls", map[string]any{"host": "h", "tls": "none", "ca_file": "notpem"}, "ca_file"},
		{"bad duration", map[string]any{"host": "h", "idle_timeout": "soon"}, "idle_timeout"},
		{"negative duration", map[string]any{"host": "h", "command_timeout": "-1s"}, "command_timeout"},
		{"negative max_connections", map[string]any{"host": "h", "max_connections": int64(-1)}, "max_connections"},
		{"ehlo with space", map[string]any{"host": "h", "ehlo": "a b"}, "ehlo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, checkOnly := range []bool{false, true} {
				err := e.c.Configure(testCtx(t), &sdk.Configuration{Kind: sdk.KindTransport, Instance: "x", Table: tc.table, Hostname: "relay.test", ConfigDir: e.dir, CheckOnly: checkOnly})
				var ces sdk.ConfigErrors
				if !errors.As(err, &ces) {
					t.Fatalf("got %v, want ConfigErrors", err)
				}
				found := false
				for _, ce := range ces {
					found = found || ce.Key == tc.key
				}
				if !found {
					t.Errorf("check only %v: got %v, want an error on key %s", checkOnly, err, tc.key)
				}
			}
		})
	}
	// A full valid table.
	e.mustConfigure("full", map[string]any{
		"host": "smtp.example.net", "port": int64(2525), "tls": "starttls", "username": "u", "password_file": "pw",
		"mechanisms": []any{"PLAIN", "LOGIN"}, "insecure_skip_verify": false, "ca_file": "", "ehlo": "mx.example.org",
		"max_connections": int64(5), "idle_timeout": "10s", "connect_timeout": "5s", "command_timeout": "1m",
	})
}

func TestMessageRequirements(t *testing.T) {
	cert := newTestCert(t)
	plain := newSmarthost(t, hostOpts{configure: func(s *smtp.Server) { s.MaxMessageBytes = 1000 }})
	rich := newSmarthost(t, hostOpts{tls: "starttls", cert: cert, configure: func(s *smtp.Server) {
		s.EnableREQUIRETLS = true
		s.EnableBINARYMIME = true
	}})
	e := newEnv(t)
	e.file("ca.pem", string(cert.pem))
	e.mustConfigure("plain", plainTable(plain.addr))
	e.mustConfigure("rich", map[string]any{"host": "127.0.0.1", "port": port(rich.addr), "ca_file": "ca.pem"})
	e.mustConfigure("unverified", map[string]any{"host": "127.0.0.1", "port": port(rich.addr), "insecure_skip_verify": true})

	binary := "Content-Type: application/octet-stream\r\n\r\n\x00\xff\n.\r\n.\r\nbare\rend"
	for _, tc := range []struct {
		name     string
		instance string
		opts     sdk.DeliverOptions
		body     string
		rcpt     string
		status   sdk.Status
		enh      string
	}{
		{"smtputf8 address", "plain", sdk.DeliverOptions{SMTPUTF8: true}, testBody, "dörte@example.net", sdk.StatusPermanent, "5.6.7"},
		{"smtputf8 header", "plain", sdk.DeliverOptions{SMTPUTF8: true}, testBody, "b@example.net", sdk.StatusPermanent, "5.6.9"},
		{"requiretls in clear", "plain", sdk.DeliverOptions{RequireTLS: true}, testBody, "b@example.net", sdk.StatusPermanent, "5.7.10"},
		{"requiretls unverified", "unverified", sdk.DeliverOptions{RequireTLS: true}, testBody, "b@example.net", sdk.StatusPermanent, "5.7.10"},
		{"requiretls", "rich", sdk.DeliverOptions{RequireTLS: true}, testBody, "b@example.net", sdk.StatusDelivered, "2.0.0"},
		{"binarymime unsupported", "plain", sdk.DeliverOptions{Body: "BINARYMIME"}, binary, "b@example.net", sdk.StatusPermanent, "5.6.3"},
		{"binarymime", "rich", sdk.DeliverOptions{Body: "BINARYMIME"}, binary, "b@example.net", sdk.StatusDelivered, "2.0.0"},
		{"too large", "plain", sdk.DeliverOptions{}, strings.Repeat("x", 2000), "b@example.net", sdk.StatusPermanent, "5.3.4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := request(tc.instance, tc.body, tc.rcpt)
			req.Options = tc.opts
			res := e.deliver(req)
			r := res.Recipients[0]
			if r.Status != tc.status || r.EnhancedCode != tc.enh {
				t.Fatalf("got %v %s %q, want %v %s", r.Status, r.EnhancedCode, r.Text, tc.status, tc.enh)
			}
			if tc.status != sdk.StatusDelivered {
				return
			}
			h := plain
			if tc.instance == "rich" {
				h = rich
			}
			msgs := h.messages()
			m := msgs[len(msgs)-1]
			if string(m.body) != tc.body || m.mailOpts.RequireTLS != tc.opts.RequireTLS || string(m.mailOpts.Body) != tc.opts.Body {
				t.Errorf("smarthost got body %q, options %+v", m.body, m.mailOpts)
			}
		})
	}
	// A verified TLS server without REQUIRETLS.
	rich2 := newSmarthost(t, hostOpts{tls: "starttls", cert: cert})
	e.mustConfigure("norequiretls", map[string]any{"host": "127.0.0.1", "port": port(rich2.addr), "ca_file": "ca.pem"})
	req := request("norequiretls", testBody, "b@example.net")
	req.Options.RequireTLS = true
	checkResult(t, e.deliver(req).Recipients[0], sdk.StatusPermanent, 0, "5.7.30")
}

// TestScripted covers servers go-smtp does not imitate.
func TestScripted(t *testing.T) {
	no8bit := func(cmd string) string {
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			return "250-scripted\r\n250 SIZE"
		case cmd == "DATA":
			return "354 go ahead"
		case cmd == "QUIT":
			return "221 bye"
		}
		return "250 ok"
	}
	addr, dot := rawServer(t, "220 scripted ESMTP", no8bit)
	e := newEnv(t)
	e.mustConfigure("no8bit", plainTable(addr))

	// Declared 8BITMIME but 7-bit: sent as is.
	req := request("no8bit", testBody, "b@example.net")
	req.Options.Body = "8BITMIME"
	checkResult(t, e.deliver(req).Recipients[0], sdk.StatusDelivered, 250, "2.0.0")
	if !<-dot {
		t.Fatal("7-bit message not ended with a dot")
	}
	// Truly 8-bit: the transaction is aborted without the dot.
	req = request("no8bit", testBody+"caf\xc3\xa9\r\n", "b@example.net")
	req.Options.Body = "8BITMIME"
	checkResult(t, e.deliver(req).Recipients[0], sdk.StatusPermanent, 0, "5.6.3")
	if <-dot {
		t.Fatal("8-bit message was ended with a dot, so delivered")
	}

	// Greeting refused: temporary, with the reply.
	addr, _ = rawServer(t, "554 5.3.2 not now", func(string) string { return "221 bye" })
	e.mustConfigure("refuse", plainTable(addr))
	checkResult(t, e.deliver(request("refuse", testBody, "b@example.net")).Recipients[0], sdk.StatusTemporary, 554, "5.3.2")

	// EHLO not recognized: HELO, and a multi-line reply with enhanced codes.
	old := func(cmd string) string {
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			return "502 5.5.2 what?"
		case strings.HasPrefix(cmd, "HELO"):
			return "250 hi"
		case strings.HasPrefix(cmd, "MAIL"):
			if strings.Contains(cmd, "BODY=") || strings.Contains(cmd, "SIZE=") {
				return "501 5.5.4 no extensions here"
			}
		case strings.HasPrefix(cmd, "RCPT"):
			return "550-5.7.1 first line\r\n550 5.7.1 second line"
		}
		return no8bit(cmd)
	}
	addr, _ = rawServer(t, "220 old", old)
	e.mustConfigure("old", plainTable(addr))
	r := e.deliver(request("old", testBody, "b@example.net")).Recipients[0]
	checkResult(t, r, sdk.StatusPermanent, 550, "5.7.1")
	if r.Text != "first line second line" {
		t.Errorf("text %q", r.Text)
	}

	// A server that breaks the protocol: temporary.
	addr, _ = rawServer(t, "220 x", func(cmd string) string { return "hello?" })
	e.mustConfigure("broken", plainTable(addr))
	checkResult(t, e.deliver(request("broken", testBody, "b@example.net")).Recipients[0], sdk.StatusTemporary, 0, "4.4.2")
}

func TestConnectionFailures(t *testing.T) {
	e := newEnv(t)
	// Nothing listens on a port just closed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	e.mustConfigure("gone", plainTable(l.Addr().String()))
	checkResult(t, e.deliver(request("gone", testBody, "b@example.net")).Recipients[0], sdk.StatusTemporary, 0, "4.4.1")

	// A server that never answers: the command timeout ends the attempt.
	silent, _ := rawServer(t, "220 x", func(string) string { time.Sleep(2 * time.Second); return "" })
	table := plainTable(silent)
	table["command_timeout"] = "200ms"
	e.mustConfigure("silent", table)
	start := time.Now()
	r := e.deliver(request("silent", testBody, "b@example.net")).Recipients[0]
	checkResult(t, r, sdk.StatusTemporary, 0, "4.4.2")
	if d := time.Since(start); d > time.Second || !strings.Contains(r.Text, "timeout") {
		t.Errorf("after %v: %q", d, r.Text)
	}
}

func TestCancel(t *testing.T) {
	silent, _ := rawServer(t, "220 x", func(string) string { time.Sleep(3 * time.Second); return "" })
	tr := newTransport(slog.New(slog.DiscardHandler))
	table := plainTable(silent)
	table["host"] = "127.0.0.1"
	if err := tr.Configure(testCtx(t), &sdk.Configuration{Kind: sdk.KindTransport, Instance: "s", Table: table, Hostname: "relay.test"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := tr.Deliver(ctx, request("s", testBody, "b@example.net"))
	if err != nil {
		t.Fatal(err)
	}
	r := res.Recipients[0]
	if r.Status != sdk.StatusTemporary || !strings.Contains(r.Text, "cancelled") || time.Since(start) > time.Second {
		t.Errorf("after %v: %v %q", time.Since(start), r.Status, r.Text)
	}
}
