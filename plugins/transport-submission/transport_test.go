package transportsubmission

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/clientcert"
	"github.com/switchyard-mta/switchyard/sdk/hostrpc"
	"github.com/switchyard-mta/switchyard/sdk/plugintest"
	"github.com/switchyard-mta/switchyard/sdk/smtptest"
)

// env is the plugin served over gRPC as the core would run it.
type env struct {
	t   *testing.T
	c   hostrpc.Client
	dir string // ConfigDir.

	mu  sync.Mutex
	log bytes.Buffer // The plugin's log, JSON lines.
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, dir: t.TempDir()}
	logger := slog.New(slog.NewJSONHandler(lockedWriter{&e.mu, &e.log}, &slog.HandlerOptions{Level: slog.LevelDebug}))
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

// newSmarthost starts a smarthost: recipients starting with reject or
// tempfail fail (smtptest.RejectByName), and a message with the header
// "X-Fail: data" gets 554 5.6.0, unless o.Reply says otherwise.
func newSmarthost(t *testing.T, o smtptest.Options) *smtptest.Server {
	if o.Reply == nil {
		o.Reply = func(c *smtptest.Command) error {
			if c.Stage == smtptest.StageData && bytes.Contains(c.Data, []byte("X-Fail: data")) {
				return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "content rejected"}
			}
			return smtptest.RejectByName(c)
		}
	}
	o.Domain = "smarthost.test"
	return smtptest.NewServer(t, o)
}

// authenticated returns the number of successful AUTH exchanges h saw.
func authenticated(h *smtptest.Server) int {
	n := 0
	for _, a := range h.Auths() {
		if a.OK {
			n++
		}
	}
	return n
}

// port returns the port of addr, as a table value.
func port(addr string) int64 {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.ParseInt(p, 10, 64)
	return n
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func checkResult(t *testing.T, got sdk.RecipientResult, status sdk.Status, code int, enh string) {
	t.Helper()
	if got.Status != status || got.Code != code || got.EnhancedCode != enh {
		t.Errorf("%s: got %v %d %s %q, want %v %d %s", got.Address, got.Status, got.Code, got.EnhancedCode, got.Text, status, code, enh)
	}
}

func TestPlainDelivery(t *testing.T) {
	h := newSmarthost(t, smtptest.Options{DSN: true, SMTPUTF8: true})
	e := newEnv(t)
	e.mustConfigure("smarthost", plainTable(h.Addr))

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
	msgs := h.Messages()
	if len(msgs) != 1 {
		t.Fatalf("smarthost got %d messages", len(msgs))
	}
	m := msgs[0]
	if string(m.Data) != body {
		t.Errorf("body:\n%q\nwant\n%q", m.Data, body)
	}
	if m.Helo != "relay.test" || m.From != "a@example.org" || !reflect.DeepEqual(m.To(), []string{"b@example.net", "c@example.net"}) {
		t.Errorf("envelope: helo %q from %q rcpts %q", m.Helo, m.From, m.To())
	}
	o := m.Mail
	if o.Body != smtp.Body8BitMIME || !o.UTF8 || o.Size != int64(len(body)) || o.EnvelopeID != "env 1" || o.Return != smtp.DSNReturnHeaders {
		t.Errorf("MAIL options: %+v", o)
	}
	ro := m.Rcpts[0].Options
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
	h := newSmarthost(t, smtptest.Options{})
	e := newEnv(t)
	e.mustConfigure("smarthost", plainTable(h.Addr))

	res := e.deliver(request("smarthost", testBody, "tempfail@example.net", "ok@example.net", "reject@example.net"))
	checkResult(t, res.Recipients[0], sdk.StatusTemporary, 451, "4.3.0")
	checkResult(t, res.Recipients[1], sdk.StatusDelivered, 250, "2.0.0")
	checkResult(t, res.Recipients[2], sdk.StatusPermanent, 550, "5.1.1")
	if res.Recipients[2].Text != "no such user" || res.Recipients[0].Text != "try again later" {
		t.Errorf("texts: %q, %q", res.Recipients[0].Text, res.Recipients[2].Text)
	}
	if m := h.Messages(); len(m) != 1 || !reflect.DeepEqual(m[0].To(), []string{"ok@example.net"}) {
		t.Errorf("smarthost got %+v", m)
	}
	// The stage of the deciding reply, by which the core suppresses.
	if s := []sdk.Stage{res.Recipients[0].Stage, res.Recipients[1].Stage, res.Recipients[2].Stage}; !slices.Equal(s, []sdk.Stage{sdk.StageRcpt, sdk.StageData, sdk.StageRcpt}) {
		t.Errorf("stages %v, want rcpt, data, rcpt", s)
	}

	// No recipient accepted: no DATA, and the connection stays usable.
	res = e.deliver(request("smarthost", testBody, "reject@example.net", "tempfail@example.net"))
	checkResult(t, res.Recipients[0], sdk.StatusPermanent, 550, "5.1.1")
	checkResult(t, res.Recipients[1], sdk.StatusTemporary, 451, "4.3.0")
	// A DATA failure applies to the accepted recipients only.
	res = e.deliver(request("smarthost", "X-Fail: data\r\n\r\nx\r\n", "ok@example.net", "reject@example.net"))
	checkResult(t, res.Recipients[0], sdk.StatusPermanent, 554, "5.6.0")
	checkResult(t, res.Recipients[1], sdk.StatusPermanent, 550, "5.1.1")
	if res.Recipients[0].Stage != sdk.StageData {
		t.Errorf("DATA failure at stage %v", res.Recipients[0].Stage)
	}
	if strings.Count(h.Trace(), "DATA\r\n") != 2 {
		t.Errorf("DATA sent %d times, want 2", strings.Count(h.Trace(), "DATA\r\n"))
	}
	if n := h.Conns(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}

}

func TestTLSAndAuth(t *testing.T) {
	keyPEM, certPEM, fp := newClientKey(t)
	keys := map[string]string{fp: "relay"}
	for _, tc := range []struct {
		name     string
		host     smtptest.Options
		table    map[string]any // Besides host and port.
		status   sdk.Status
		code     int
		text     string // Contained in the result text.
		verify   sdk.Verification
		authMech string // Used, as the server saw it.
	}{
		{
			name:  "starttls plain",
			host:  smtptest.Options{TLS: smtptest.StartTLS, Mechanisms: []string{"LOGIN", "PLAIN"}, Users: map[string]string{"relay": "s3cret"}},
			table: map[string]any{"tls": "starttls", "ca_file": "ca.pem", "username": "relay", "password_file": "pw"},
			code:  250, status: sdk.StatusDelivered, verify: sdk.VerifyPKIX, authMech: "PLAIN",
		},
		{
			name:  "implicit tls login",
			host:  smtptest.Options{TLS: smtptest.ImplicitTLS, Mechanisms: []string{"PLAIN", "LOGIN"}, Users: map[string]string{"relay": "s3cret"}},
			table: map[string]any{"tls": "tls", "ca_file": "ca.pem", "username": "relay", "password_file": "pw", "mechanisms": []any{"login"}},
			code:  250, status: sdk.StatusDelivered, verify: sdk.VerifyPKIX, authMech: "LOGIN",
		},
		{
			name:  "wrong password",
			host:  smtptest.Options{TLS: smtptest.ImplicitTLS, Mechanisms: []string{"PLAIN"}, Users: map[string]string{"relay": "other"}},
			table: map[string]any{"tls": "tls", "ca_file": "ca.pem", "username": "relay", "password_file": "pw"},
			code:  535, status: sdk.StatusTemporary, text: "Authentication failed",
		},
		{
			name:   "no common mechanism",
			host:   smtptest.Options{TLS: smtptest.ImplicitTLS, Mechanisms: []string{"PLAIN"}, Users: map[string]string{"relay": "s3cret"}},
			table:  map[string]any{"tls": "tls", "ca_file": "ca.pem", "username": "relay", "password_file": "pw", "mechanisms": []any{"LOGIN"}},
			status: sdk.StatusTemporary, text: "none of LOGIN",
		},
		{
			name:  "client key, EXTERNAL",
			host:  smtptest.Options{TLS: smtptest.ImplicitTLS, Mechanisms: []string{"PLAIN", "EXTERNAL"}, ClientKeys: keys},
			table: map[string]any{"tls": "tls", "ca_file": "ca.pem", "client_key": "client.key"},
			code:  250, status: sdk.StatusDelivered, verify: sdk.VerifyPKIX, authMech: "EXTERNAL",
		},
		{
			name:  "client certificate and key, EXTERNAL before the password",
			host:  smtptest.Options{TLS: smtptest.StartTLS, Mechanisms: []string{"PLAIN", "EXTERNAL"}, ClientKeys: keys, Users: map[string]string{"relay": "s3cret"}},
			table: map[string]any{"tls": "starttls", "ca_file": "ca.pem", "client_cert": "client.crt", "client_key": "client.key", "username": "relay", "password_file": "pw"},
			code:  250, status: sdk.StatusDelivered, verify: sdk.VerifyPKIX, authMech: "EXTERNAL",
		},
		{
			name:  "unknown client key, then the password",
			host:  smtptest.Options{TLS: smtptest.ImplicitTLS, Mechanisms: []string{"EXTERNAL", "PLAIN"}, ClientKeys: map[string]string{}, Users: map[string]string{"relay": "s3cret"}},
			table: map[string]any{"tls": "tls", "ca_file": "ca.pem", "client_key": "client.key", "username": "relay", "password_file": "pw"},
			code:  250, status: sdk.StatusDelivered, verify: sdk.VerifyPKIX, authMech: "PLAIN",
		},
		{
			name:  "unknown client key, no password",
			host:  smtptest.Options{TLS: smtptest.ImplicitTLS, Mechanisms: []string{"EXTERNAL"}, ClientKeys: map[string]string{}},
			table: map[string]any{"tls": "tls", "ca_file": "ca.pem", "client_key": "client.key"},
			code:  535, status: sdk.StatusTemporary, text: "AUTH EXTERNAL",
		},
		{
			name:  "client key, EXTERNAL not offered",
			host:  smtptest.Options{TLS: smtptest.ImplicitTLS, Mechanisms: []string{"PLAIN"}, ClientKeys: keys},
			table: map[string]any{"tls": "tls", "ca_file": "ca.pem", "client_key": "client.key"},
			code:  250, status: sdk.StatusDelivered, verify: sdk.VerifyPKIX,
		},
		{
			name:   "starttls not offered",
			host:   smtptest.Options{},
			table:  map[string]any{"tls": "starttls"},
			status: sdk.StatusTemporary, text: "does not offer STARTTLS",
		},
		{
			name:   "untrusted certificate",
			host:   smtptest.Options{TLS: smtptest.StartTLS},
			table:  map[string]any{"tls": "starttls"},
			status: sdk.StatusTemporary, text: "certificate",
		},
		{
			name:   "insecure skip verify",
			host:   smtptest.Options{TLS: smtptest.ImplicitTLS},
			table:  map[string]any{"tls": "tls", "insecure_skip_verify": true},
			status: sdk.StatusDelivered, code: 250, verify: sdk.VerifyOpportunistic,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newSmarthost(t, tc.host)
			e := newEnv(t)
			e.file("ca.pem", string(h.CertificatePEM()))
			e.file("pw", "s3cret\nignored second line\n")
			e.file("client.key", keyPEM)
			e.file("client.crt", certPEM)
			table := map[string]any{"host": "127.0.0.1", "port": port(h.Addr)}
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
			msgs := h.Messages()
			if tc.status == sdk.StatusDelivered {
				if len(msgs) != 1 || string(msgs[0].Data) != testBody || msgs[0].AuthMech != tc.authMech {
					t.Fatalf("smarthost got %d messages (%+v), want 1 after AUTH %q", len(msgs), msgs, tc.authMech)
				}
			} else if len(msgs) != 0 {
				t.Fatalf("smarthost got %d messages, want none", len(msgs))
			}
			want := 0
			if tc.authMech != "" {
				want = 1
			}
			if n := authenticated(h); n != want {
				t.Errorf("%d successful AUTH exchanges, want %d", n, want)
			}
		})
	}
}

// newClientKey returns a new ed25519 private key and a certificate for it
// in PEM, and the key's fingerprint (smtptest.Options.ClientKeys).
func newClientKey(t *testing.T) (keyPEM, certPEM, fingerprint string) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	der, err := clientcert.SelfSigned(key, "relay")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})),
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		base64.RawURLEncoding.EncodeToString(sum[:])
}

// TestSASLMechanisms relays through smarthosts offering various mechanisms,
// over TLS 1.2 and 1.3, with and without configured mechanisms.
func TestSASLMechanisms(t *testing.T) {
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
			h := newSmarthost(t, smtptest.Options{TLS: smtptest.StartTLS, TLSConfig: &tls.Config{MaxVersion: tc.maxTLS}, Mechanisms: tc.offered, Users: map[string]string{"relay@example.org": tc.pass}})
			e := newEnv(t)
			e.file("ca.pem", string(h.CertificatePEM()))
			e.file("pw", "s3cret\n")
			table := map[string]any{"host": "127.0.0.1", "port": port(h.Addr), "ca_file": "ca.pem", "username": "relay@example.org", "password_file": "pw"}
			if tc.configured != nil {
				table["mechanisms"] = tc.configured
			}
			e.mustConfigure("smarthost", table)
			r := e.deliver(request("smarthost", testBody, "b@example.net")).Recipients[0]
			msgs := h.Messages()
			if tc.authMech == "" {
				checkResult(t, r, sdk.StatusTemporary, 535, "5.7.8")
				if len(msgs) != 0 {
					t.Errorf("smarthost got %d messages", len(msgs))
				}
			} else {
				checkResult(t, r, sdk.StatusDelivered, 250, "2.0.0")
				if len(msgs) != 1 || msgs[0].AuthMech != tc.authMech {
					t.Fatalf("smarthost got %+v, want 1 message after AUTH %s", msgs, tc.authMech)
				}
			}
			var recs []smtptest.Auth
			for _, a := range h.Auths() {
				if strings.HasPrefix(a.Mech, "SCRAM") {
					recs = append(recs, a)
				}
			}
			if tc.gs2 == "" {
				if len(recs) != 0 {
					t.Errorf("SCRAM used: %+v", recs)
				}
				return
			}
			if len(recs) != 1 || recs[0].GS2 != tc.gs2 {
				t.Fatalf("SCRAM exchanges %+v, want one with gs2 header %q", recs, tc.gs2)
			}
			// RFC 5802 §6: with -PLUS, the client sent the binding data the
			// smarthost derived from its own side of the TLS connection.
			rec := recs[0]
			if tc.cbLen > 0 && (len(rec.ServerBinding) != tc.cbLen || !bytes.Equal(rec.ClientBinding, rec.ServerBinding)) {
				t.Errorf("binding data: client %x, smarthost %x", rec.ClientBinding, rec.ServerBinding)
			}
			if tc.cbLen == 0 && len(rec.ClientBinding) != 0 {
				t.Errorf("binding data %x sent without -PLUS", rec.ClientBinding)
			}
		})
	}
}

func TestConnectionReuse(t *testing.T) {
	h := newSmarthost(t, smtptest.Options{})
	e := newEnv(t)
	e.mustConfigure("smarthost", plainTable(h.Addr))
	for i := range 10 {
		res := e.deliver(request("smarthost", testBody, fmt.Sprintf("r%d@example.net", i)))
		checkResult(t, res.Recipients[0], sdk.StatusDelivered, 250, "2.0.0")
	}
	if n := h.Conns(); n != 1 {
		t.Errorf("%d connections for 10 deliveries, want 1", n)
	}
	if n := strings.Count(h.Trace(), "RSET\r\n"); n != 9 {
		t.Errorf("%d RSET, want 9", n)
	}
	if n := len(h.Messages()); n != 10 {
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
	h := newSmarthost(t, smtptest.Options{ReadTimeout: 200 * time.Millisecond})
	e := newEnv(t)
	e.mustConfigure("smarthost", plainTable(h.Addr))
	for range 2 {
		res := e.deliver(request("smarthost", testBody, "b@example.net"))
		checkResult(t, res.Recipients[0], sdk.StatusDelivered, 250, "2.0.0")
		time.Sleep(400 * time.Millisecond)
	}
	if n := h.Conns(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

func TestIdleTimeout(t *testing.T) {
	h := newSmarthost(t, smtptest.Options{})
	e := newEnv(t)
	table := plainTable(h.Addr)
	table["idle_timeout"] = "100ms"
	e.mustConfigure("smarthost", table)
	e.deliver(request("smarthost", testBody, "b@example.net"))
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(h.Trace(), "QUIT\r\n") {
		if time.Now().After(deadline) {
			t.Fatal("idle connection not closed with QUIT")
		}
		time.Sleep(20 * time.Millisecond)
	}
	res := e.deliver(request("smarthost", testBody, "b@example.net"))
	checkResult(t, res.Recipients[0], sdk.StatusDelivered, 250, "2.0.0")
	if n := h.Conns(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

func TestParallelDeliveries(t *testing.T) {
	// Each message is held 100ms at its end, while the test counts how
	// many are there at once.
	var mu sync.Mutex
	active, maxActive := 0, 0
	h := newSmarthost(t, smtptest.Options{Reply: func(c *smtptest.Command) error {
		if c.Stage != smtptest.StageData {
			return nil
		}
		mu.Lock()
		active++
		maxActive = max(maxActive, active)
		mu.Unlock()
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		active--
		mu.Unlock()
		return nil
	}})
	e := newEnv(t)
	table := plainTable(h.Addr)
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
	mu.Lock()
	defer mu.Unlock()
	if maxActive != 3 {
		t.Errorf("%d deliveries at once, want 3", maxActive)
	}
	if n := h.Conns(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}

func TestInstances(t *testing.T) {
	h1 := newSmarthost(t, smtptest.Options{})
	h2 := newSmarthost(t, smtptest.Options{})
	e := newEnv(t)
	e.mustConfigure("one", plainTable(h1.Addr))
	e.mustConfigure("two", plainTable(h2.Addr))
	e.deliver(request("one", testBody, "b@example.net"))
	e.deliver(request("two", testBody, "b@example.net"))
	if len(h1.Messages()) != 1 || len(h2.Messages()) != 1 {
		t.Fatalf("smarthosts got %d and %d messages", len(h1.Messages()), len(h2.Messages()))
	}

	// Configuring "one" again points it at h2 and closes its old connection.
	e.mustConfigure("one", plainTable(h2.Addr))
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(h1.Trace(), "QUIT\r\n") {
		if time.Now().After(deadline) {
			t.Fatal("old pool's connection not closed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.deliver(request("one", testBody, "b@example.net"))
	if len(h1.Messages()) != 1 || len(h2.Messages()) != 2 {
		t.Fatalf("after reconfiguring, smarthosts got %d and %d messages", len(h1.Messages()), len(h2.Messages()))
	}

	if _, err := e.c.Transport().Deliver(testCtx(t), request("three", testBody, "b@example.net")); err == nil {
		t.Error("delivery through an unconfigured instance did not fail")
	}
	// CheckOnly validates without putting the instance in force.
	err := e.c.Configure(testCtx(t), &sdk.Configuration{Kind: sdk.KindTransport, Instance: "four", Table: plainTable(h1.Addr), Hostname: "relay.test", CheckOnly: true})
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
		{"client_cert without client_key", map[string]any{"host": "h", "client_cert": "pw"}, "client_key"},
		{"client_key without tls", map[string]any{"host": "h", "tls": "none", "client_key": "notpem"}, "client_key"},
		{"client_key not PEM", map[string]any{"host": "h", "client_key": "notpem"}, "client_key"},
		{"missing client_key", map[string]any{"host": "h", "client_key": "nope"}, "client_key"},
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
	plain := newSmarthost(t, smtptest.Options{MaxMessageBytes: 1000})
	rich := newSmarthost(t, smtptest.Options{TLS: smtptest.StartTLS, REQUIRETLS: true, BINARYMIME: true})
	e := newEnv(t)
	e.file("ca.pem", string(rich.CertificatePEM()))
	e.mustConfigure("plain", plainTable(plain.Addr))
	e.mustConfigure("rich", map[string]any{"host": "127.0.0.1", "port": port(rich.Addr), "ca_file": "ca.pem"})
	e.mustConfigure("unverified", map[string]any{"host": "127.0.0.1", "port": port(rich.Addr), "insecure_skip_verify": true})

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
			msgs := h.Messages()
			m := msgs[len(msgs)-1]
			if string(m.Data) != tc.body || m.Mail.RequireTLS != tc.opts.RequireTLS || string(m.Mail.Body) != tc.opts.Body {
				t.Errorf("smarthost got body %q, options %+v", m.Data, m.Mail)
			}
		})
	}
	// A verified TLS server without REQUIRETLS.
	rich2 := newSmarthost(t, smtptest.Options{TLS: smtptest.StartTLS})
	e.file("rich2.pem", string(rich2.CertificatePEM()))
	e.mustConfigure("norequiretls", map[string]any{"host": "127.0.0.1", "port": port(rich2.Addr), "ca_file": "rich2.pem"})
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
	scripted := smtptest.NewScript(t, "220 scripted ESMTP", no8bit)
	e := newEnv(t)
	e.mustConfigure("no8bit", plainTable(scripted.Addr))

	// Declared 8BITMIME but 7-bit: sent as is.
	req := request("no8bit", testBody, "b@example.net")
	req.Options.Body = "8BITMIME"
	checkResult(t, e.deliver(req).Recipients[0], sdk.StatusDelivered, 250, "2.0.0")
	if !(<-scripted.Messages).Ended {
		t.Fatal("7-bit message not ended with a dot")
	}
	// Truly 8-bit: the transaction is aborted without the dot.
	req = request("no8bit", testBody+"caf\xc3\xa9\r\n", "b@example.net")
	req.Options.Body = "8BITMIME"
	checkResult(t, e.deliver(req).Recipients[0], sdk.StatusPermanent, 0, "5.6.3")
	if (<-scripted.Messages).Ended {
		t.Fatal("8-bit message was ended with a dot, so delivered")
	}

	// Greeting refused: temporary, with the reply.
	addr := smtptest.NewScript(t, "554 5.3.2 not now", func(string) string { return "221 bye" }).Addr
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
	addr = smtptest.NewScript(t, "220 old", old).Addr
	e.mustConfigure("old", plainTable(addr))
	r := e.deliver(request("old", testBody, "b@example.net")).Recipients[0]
	checkResult(t, r, sdk.StatusPermanent, 550, "5.7.1")
	if r.Text != "first line second line" {
		t.Errorf("text %q", r.Text)
	}
	// The sender refused at MAIL: every recipient fails by it, at StageMail.
	addr = smtptest.NewScript(t, "220 x", func(cmd string) string {
		if strings.HasPrefix(cmd, "MAIL") {
			return "553 5.7.1 not a sender of yours"
		}
		return no8bit(cmd)
	}).Addr
	e.mustConfigure("picky", plainTable(addr))
	res := e.deliver(request("picky", testBody, "a@example.net", "b@example.net"))
	for _, r := range res.Recipients {
		checkResult(t, r, sdk.StatusPermanent, 553, "5.7.1")
		if r.Stage != sdk.StageMail || !strings.Contains(r.Text, "MAIL FROM") {
			t.Errorf("sender refusal: stage %v, text %q", r.Stage, r.Text)
		}
	}

	// A server that breaks the protocol: temporary.
	addr = smtptest.NewScript(t, "220 x", func(cmd string) string { return "hello?" }).Addr
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
	silent := smtptest.NewScript(t, "220 x", func(string) string { time.Sleep(2 * time.Second); return "" }).Addr
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
	silent := smtptest.NewScript(t, "220 x", func(string) string { time.Sleep(3 * time.Second); return "" }).Addr
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
