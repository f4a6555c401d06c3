package smtptest_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/sdk/clientcert"
	"github.com/switchyard-mta/switchyard/sdk/smtpclient"
	"github.com/switchyard-mta/switchyard/sdk/smtptest"
)

func dial(t *testing.T, addr string, cfg *smtpclient.Config) *smtpclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cfg.EHLO = "client.test"
	c, err := smtpclient.Dial(ctx, addr, cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wantCode(t *testing.T, what string, r smtpclient.Reply, err error, code int) {
	t.Helper()
	if err != nil || r.Code != code {
		t.Fatalf("%s: %v %v, want %d", what, r, err, code)
	}
}

// send runs a transaction and returns the reply to its end.
func send(t *testing.T, c *smtpclient.Client, from string, to []string, body string) smtpclient.Reply {
	t.Helper()
	r, err := c.Mail(from, nil)
	wantCode(t, "MAIL", r, err, 250)
	for _, rcpt := range to {
		c.Rcpt(rcpt, nil)
	}
	r, err = c.Data()
	wantCode(t, "DATA", r, err, 354)
	r, err = c.WriteData(strings.NewReader(body))
	if err != nil {
		t.Fatalf("end of data: %v", err)
	}
	return r
}

func TestTransaction(t *testing.T) {
	s := smtptest.NewServer(t, smtptest.Options{DSN: true, SMTPUTF8: true, MaxMessageBytes: 1000, Reply: smtptest.RejectByName})
	c := dial(t, s.Addr, &smtpclient.Config{})
	for _, ext := range []string{"DSN", "SMTPUTF8", "PIPELINING", "8BITMIME"} {
		if _, ok := c.Extension(ext); !ok {
			t.Errorf("%s not offered", ext)
		}
	}
	if size, _ := c.Extension("SIZE"); size != "1000" {
		t.Errorf("SIZE %q", size)
	}
	body := "Subject: hi\r\n\r\n.dot\r\n"
	r, err := c.Mail("a@example.org", &smtpclient.MailOptions{Size: int64(len(body)), SMTPUTF8: true, EnvelopeID: "e1"})
	wantCode(t, "MAIL", r, err, 250)
	r, err = c.Rcpt("b@example.net", &smtpclient.RcptOptions{Notify: []string{"FAILURE"}})
	wantCode(t, "RCPT", r, err, 250)
	r, err = c.Rcpt("reject@example.net", nil)
	if err != nil || r.Code != 550 || r.EnhancedCode != "5.1.1" || r.Text != "no such user" {
		t.Errorf("RCPT reject: %v %v", r, err)
	}
	r, err = c.Rcpt("tempfail@example.net", nil)
	if err != nil || r.Code != 451 || r.EnhancedCode != "4.3.0" {
		t.Errorf("RCPT tempfail: %v %v", r, err)
	}
	r, err = c.Data()
	wantCode(t, "DATA", r, err, 354)
	r, err = c.WriteData(strings.NewReader(body))
	wantCode(t, "end of data", r, err, 250)
	if r := send(t, c, "", []string{"c@example.net"}, "x\r\n"); r.Code != 250 {
		t.Errorf("second message: %v", r)
	}
	c.Quit()

	msgs := s.Messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	if m.Helo != "client.test" || m.From != "a@example.org" || !reflect.DeepEqual(m.To(), []string{"b@example.net"}) || string(m.Data) != body || m.TLS != nil || m.AuthMech != "" {
		t.Errorf("message %+v", m)
	}
	if !m.Mail.UTF8 || m.Mail.Size != int64(len(body)) || m.Mail.EnvelopeID != "e1" || !reflect.DeepEqual(m.Rcpts[0].Options.Notify, []smtp.DSNNotify{smtp.DSNNotifyFailure}) {
		t.Errorf("parameters %+v %+v", m.Mail, m.Rcpts[0].Options)
	}
	if m := msgs[1]; m.From != "" || string(m.Data) != "x\r\n" {
		t.Errorf("second message %+v", m)
	}
	if s.Conns() != 1 || !strings.Contains(s.Trace(), "QUIT\r\n") {
		t.Errorf("%d connections, trace:\n%s", s.Conns(), s.Trace())
	}
	dial(t, s.Addr, &smtpclient.Config{})
	if s.Conns() != 2 {
		t.Errorf("%d connections, want 2", s.Conns())
	}
}

func TestReplyHook(t *testing.T) {
	var mu sync.Mutex // Reply runs on the server's goroutines.
	var stages []smtptest.Stage
	s := smtptest.NewServer(t, smtptest.Options{Reply: func(c *smtptest.Command) error {
		mu.Lock()
		stages = append(stages, c.Stage)
		mu.Unlock()
		switch {
		case c.Stage == smtptest.StageData && strings.Contains(string(c.Data), "X-Fail"):
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 3, 1}, Message: "full"}
		case c.Stage == smtptest.StageMail && c.From == "drop@example.org":
			return smtptest.ErrDrop
		case c.Stage == smtptest.StageRcpt && c.From != "a@example.org":
			return errors.New("from must be kept")
		}
		return smtptest.RejectByName(c)
	}})
	c := dial(t, s.Addr, &smtpclient.Config{})
	if r := send(t, c, "a@example.org", []string{"b@example.net"}, "X-Fail: yes\r\n\r\n"); r.Code != 452 || r.EnhancedCode != "4.3.1" {
		t.Errorf("end of data: %v", r)
	}
	if len(s.Messages()) != 0 {
		t.Errorf("rejected message recorded")
	}
	want := []smtptest.Stage{smtptest.StageHello, smtptest.StageMail, smtptest.StageRcpt, smtptest.StageData}
	mu.Lock()
	if !reflect.DeepEqual(stages, want) {
		t.Errorf("stages %v, want %v", stages, want)
	}
	mu.Unlock()
	if _, err := c.Mail("drop@example.org", nil); err == nil {
		t.Error("MAIL answered on a dropped connection")
	}

	refuse := smtptest.NewServer(t, smtptest.Options{Reply: func(c *smtptest.Command) error {
		if c.Stage == smtptest.StageHello {
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "not you"}
		}
		return nil
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var re *smtpclient.ReplyError
	if _, err := smtpclient.Dial(ctx, refuse.Addr, &smtpclient.Config{EHLO: "client.test"}); !errors.As(err, &re) || re.Reply.Code != 554 {
		t.Errorf("refused EHLO: %v", err)
	}
}

func TestTLS(t *testing.T) {
	ca := smtptest.NewCA(t)
	issued := ca.Issue(t, "mx.example.org")
	for _, tc := range []struct {
		name    string
		opts    smtptest.Options
		mode    smtpclient.TLSMode
		config  func(s *smtptest.Server) *tls.Config
		version uint16
	}{
		{"starttls", smtptest.Options{TLS: smtptest.StartTLS}, smtpclient.TLSStartTLS, (*smtptest.Server).ClientConfig, tls.VersionTLS13},
		{"implicit", smtptest.Options{TLS: smtptest.ImplicitTLS}, smtpclient.TLSImplicit, (*smtptest.Server).ClientConfig, tls.VersionTLS13},
		{"tls 1.2", smtptest.Options{TLS: smtptest.StartTLS, TLSConfig: &tls.Config{MaxVersion: tls.VersionTLS12}}, smtpclient.TLSStartTLS, (*smtptest.Server).ClientConfig, tls.VersionTLS12},
		{"issued by a CA", smtptest.Options{TLS: smtptest.ImplicitTLS, Certificate: &issued}, smtpclient.TLSImplicit, func(*smtptest.Server) *tls.Config {
			return &tls.Config{RootCAs: ca.Pool, ServerName: "mx.example.org"}
		}, tls.VersionTLS13},
		{"verified by address", smtptest.Options{TLS: smtptest.StartTLS}, smtpclient.TLSStartTLS, func(s *smtptest.Server) *tls.Config {
			cfg := s.ClientConfig()
			cfg.ServerName = "127.0.0.1"
			return cfg
		}, tls.VersionTLS13},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := smtptest.NewServer(t, tc.opts)
			c := dial(t, s.Addr, &smtpclient.Config{TLS: tc.mode, TLSConfig: tc.config(s)})
			send(t, c, "a@example.org", []string{"b@example.net"}, "x\r\n")
			msgs := s.Messages()
			if len(msgs) != 1 || msgs[0].TLS == nil || msgs[0].TLS.Version != tc.version {
				t.Fatalf("messages %+v, want one over TLS %x", msgs, tc.version)
			}
		})
	}
	// Another server's certificate is not trusted.
	s := smtptest.NewServer(t, smtptest.Options{TLS: smtptest.ImplicitTLS})
	other := smtptest.NewServer(t, smtptest.Options{TLS: smtptest.ImplicitTLS})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := smtpclient.Dial(ctx, s.Addr, &smtpclient.Config{EHLO: "client.test", TLS: smtpclient.TLSImplicit, TLSConfig: other.ClientConfig()}); !errors.Is(err, smtpclient.ErrTLS) {
		t.Errorf("other certificate: %v", err)
	}
	if !strings.Contains(string(s.CertificatePEM()), "BEGIN CERTIFICATE") {
		t.Errorf("PEM %q", s.CertificatePEM())
	}
}

func TestAuth(t *testing.T) {
	users := map[string]string{"relay": "s3cret"}
	for _, mech := range []string{"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"} {
		for _, pass := range []string{"s3cret", "wrong"} {
			t.Run(mech+"/"+pass, func(t *testing.T) {
				s := smtptest.NewServer(t, smtptest.Options{TLS: smtptest.ImplicitTLS, Mechanisms: []string{mech}, Users: users})
				c := dial(t, s.Addr, &smtpclient.Config{TLS: smtpclient.TLSImplicit, TLSConfig: s.ClientConfig()})
				_, err := c.Authenticate("relay", pass, []string{mech})
				auths := s.Auths()
				ok := pass == "s3cret"
				if (err == nil) != ok || len(auths) != 1 || auths[0].Mech != mech || auths[0].User != "relay" || auths[0].OK != ok {
					t.Fatalf("authenticate: %v; server saw %+v", err, auths)
				}
				if !ok {
					return
				}
				send(t, c, "a@example.org", []string{"b@example.net"}, "x\r\n")
				if m := s.Messages(); len(m) != 1 || m[0].AuthMech != mech || m[0].AuthUser != "relay" {
					t.Errorf("messages %+v", m)
				}
				if a := auths[0]; mech == "SCRAM-SHA-256-PLUS" && (a.GS2 != "p=tls-exporter,," || len(a.ServerBinding) != 32 || string(a.ClientBinding) != string(a.ServerBinding)) {
					t.Errorf("channel binding %+v", a)
				}
			})
		}
	}
	// Without TLS, AUTH is not offered unless allowed.
	s := smtptest.NewServer(t, smtptest.Options{Mechanisms: []string{"PLAIN"}, Users: users})
	if _, ok := dial(t, s.Addr, &smtpclient.Config{}).Extension("AUTH"); ok {
		t.Error("AUTH offered in plaintext")
	}
	s = smtptest.NewServer(t, smtptest.Options{Mechanisms: []string{"CRAM-MD5"}, Users: users, AllowInsecureAuth: true})
	if _, err := dial(t, s.Addr, &smtpclient.Config{}).Authenticate("relay", "s3cret", nil); err != nil {
		t.Errorf("CRAM-MD5 in plaintext: %v", err)
	}
}

func TestReadTimeout(t *testing.T) {
	s := smtptest.NewServer(t, smtptest.Options{ReadTimeout: 100 * time.Millisecond})
	c := dial(t, s.Addr, &smtpclient.Config{})
	time.Sleep(300 * time.Millisecond)
	// go-smtp says goodbye before it closes.
	if r, err := c.Reset(); err == nil && r.Code == 250 {
		t.Error("idle connection still open")
	}
	if _, err := c.Reset(); err == nil {
		t.Error("idle connection not closed")
	}
}

// A server on a listener of the test's, as on an address of its choosing.
func TestListener(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := smtptest.NewServer(t, smtptest.Options{Listener: l, Domain: "mx.example.org"})
	if s.Addr != l.Addr().String() {
		t.Errorf("addr %s, listener %s", s.Addr, l.Addr())
	}
	dial(t, s.Addr, &smtpclient.Config{})
	if !strings.Contains(s.Trace(), "220 mx.example.org") {
		t.Errorf("greeting not from the domain:\n%s", s.Trace())
	}
}

func TestScript(t *testing.T) {
	var mu sync.Mutex
	var cmds []string
	s := smtptest.NewScript(t, "220 scripted", func(cmd string) string {
		mu.Lock()
		cmds = append(cmds, cmd)
		mu.Unlock()
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			return "250-scripted\r\n250 SIZE"
		case cmd == "DATA":
			return "354 go ahead"
		case cmd == "QUIT":
			return ""
		}
		return "250 ok"
	})
	c := dial(t, s.Addr, &smtpclient.Config{})
	if _, ok := c.Extension("8BITMIME"); ok {
		t.Error("8BITMIME offered")
	}
	if r := send(t, c, "a@example.org", []string{"b@example.net"}, ".dot\r\nbare\rcr\r\n"); r.Code != 250 || r.Text != "queued" {
		t.Errorf("end of data: %v", r)
	}
	if m := <-s.Messages; !m.Ended || string(m.Data) != "..dot\r\nbare\rcr\r\n" {
		t.Errorf("message %+v", m)
	}
	want := []string{"EHLO client.test", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.net>", "DATA"}
	mu.Lock()
	if !reflect.DeepEqual(cmds, want) {
		t.Errorf("commands %q, want %q", cmds, want)
	}
	mu.Unlock()

	// A connection that ends within the message.
	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("DATA\r\npart\r\n"))
	buf := make([]byte, 100)
	for n := 0; !strings.Contains(string(buf[:n]), "354"); {
		m, err := conn.Read(buf[n:])
		if err != nil {
			t.Fatal(err)
		}
		n += m
	}
	conn.Close()
	if m := <-s.Messages; m.Ended || string(m.Data) != "part\r\n" {
		t.Errorf("cut message %+v", m)
	}
}

// TestAuthExternal logs in by TLS client key: a known key as its user, an
// unknown key, no certificate and another authorization identity refused,
// and no EXTERNAL offered where it is not configured.
func TestAuthExternal(t *testing.T) {
	known, err := clientcert.Load("", writeKey(t))
	if err != nil {
		t.Fatal(err)
	}
	unknown, err := clientcert.Load("", writeKey(t))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(known.Leaf.RawSubjectPublicKeyInfo)
	keys := map[string]string{base64.RawURLEncoding.EncodeToString(sum[:]): "relay"}
	s := smtptest.NewServer(t, smtptest.Options{TLS: smtptest.ImplicitTLS, Mechanisms: []string{"EXTERNAL", "PLAIN"}, ClientKeys: keys})
	login := func(cert *tls.Certificate, authzid string) error {
		tc := s.ClientConfig()
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		return dial(t, s.Addr, &smtpclient.Config{TLS: smtpclient.TLSImplicit, TLSConfig: tc}).AuthenticateExternal(authzid)
	}
	if err := login(&known, ""); err != nil {
		t.Errorf("known key: %v", err)
	}
	if err := login(&known, "relay"); err != nil {
		t.Errorf("known key as its user: %v", err)
	}
	var re *smtpclient.ReplyError
	for name, err := range map[string]error{
		"unknown key":    login(&unknown, ""),
		"no certificate": login(nil, ""),
		"other user":     login(&known, "admin"),
	} {
		if !errors.As(err, &re) || re.Reply.Code != 535 {
			t.Errorf("%s: %v, want a 535 reply", name, err)
		}
	}
	if a := s.Auths(); len(a) != 5 || !a[0].OK || a[0].User != "relay" || a[2].OK {
		t.Errorf("server saw %+v", a)
	}
	s = smtptest.NewServer(t, smtptest.Options{TLS: smtptest.ImplicitTLS, Mechanisms: []string{"PLAIN"}})
	tc := s.ClientConfig()
	tc.Certificates = []tls.Certificate{known}
	if err := dial(t, s.Addr, &smtpclient.Config{TLS: smtpclient.TLSImplicit, TLSConfig: tc}).AuthenticateExternal(""); !errors.Is(err, smtpclient.ErrNoMechanism) {
		t.Errorf("EXTERNAL not offered: %v, want ErrNoMechanism", err)
	}
}

// writeKey writes a new ed25519 private key as PKCS #8 PEM and returns
// its path.
func writeKey(t *testing.T) string {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "client.key")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
