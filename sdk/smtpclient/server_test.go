package smtpclient

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/xdg-go/scram"
)

// testCert is a self-signed certificate for 127.0.0.1 and localhost, and a
// client configuration trusting it.
type testCert struct {
	cert   tls.Certificate
	client *tls.Config
}

func newTestCert(t testing.TB) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "smtpclient test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(c)
	return &testCert{
		cert:   tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		client: &tls.Config{ServerName: "localhost", RootCAs: roots},
	}
}

// serverOpts configure a test server.
type serverOpts struct {
	tls        string // "", "starttls" or "tls" (implicit).
	cert       *testCert
	maxTLS     uint16   // Highest TLS version; 0: TLS 1.3.
	mechanisms []string // AUTH mechanisms offered: PLAIN, LOGIN, CRAM-MD5, SCRAM-*.
	user, pass string
	// SCRAM misbehaviour: "bind" binds as if -PLUS was offered though it is
	// not (a stripped offer); "binding" uses wrong binding data;
	// "signature" sends a wrong server signature; "nofinal" answers 235
	// without server-final.
	scramFault string
	configure  func(*smtp.Server)
}

// received is one message the server accepted.
type received struct {
	helo     string
	from     string
	mailOpts smtp.MailOptions
	rcpts    []string
	rcptOpts []smtp.RcptOptions
	body     []byte
}

// authRecord is what the server saw of a successful or failed AUTH.
type authRecord struct {
	mech     string
	ok       bool
	gs2      string // SCRAM's gs2 header, e.g. "p=tls-exporter,,".
	clientCB []byte // SCRAM channel binding data from the client's c=.
	serverCB []byte // The server's own binding data.
}

// testServer is a go-smtp server recording what it gets. Recipients named
// tempfail@ get 451 4.3.0, reject@ 550 5.1.1; others are accepted.
type testServer struct {
	addr string
	opts serverOpts

	mu    sync.Mutex
	msgs  []received
	auths []authRecord
	debug bytes.Buffer // Protocol trace of all connections.
}

func newTestServer(t testing.TB, o serverOpts) *testServer {
	t.Helper()
	s := &testServer{opts: o}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s, conn: c}, nil
	}))
	srv.Domain = "server.test"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.Debug = lockedWriter{&s.mu, &s.debug}
	if o.configure != nil {
		o.configure(srv)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.tls != "" {
		tc := &tls.Config{Certificates: []tls.Certificate{o.cert.cert}, MaxVersion: o.maxTLS}
		if o.tls == "tls" {
			l = tls.NewListener(l, tc)
		} else {
			srv.TLSConfig = tc
		}
	}
	s.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *testServer) messages() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

func (s *testServer) authRecords() []authRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]authRecord(nil), s.auths...)
}

func (s *testServer) trace() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.debug.String()
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

type session struct {
	s    *testServer
	conn *smtp.Conn
	msg  received
}

func (ss *session) AuthMechanisms() []string { return ss.s.opts.mechanisms }

func (ss *session) Auth(mech string) (sasl.Server, error) {
	o := ss.s.opts
	rec := &authRecord{mech: mech}
	done := func(ok bool) {
		rec.ok = ok
		ss.s.mu.Lock()
		ss.s.auths = append(ss.s.auths, *rec)
		ss.s.mu.Unlock()
	}
	check := func(user, pass string) error {
		ok := user == o.user && pass == o.pass
		done(ok)
		if !ok {
			return smtp.ErrAuthFailed
		}
		return nil
	}
	switch mech {
	case "PLAIN":
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			if identity != "" && identity != user {
				return smtp.ErrAuthFailed
			}
			return check(user, pass)
		}), nil
	case "LOGIN":
		return &loginServer{check: check}, nil
	case "CRAM-MD5":
		return &cramMD5Server{user: o.user, pass: o.pass, done: done}, nil
	case "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1":
		return ss.scram(mech, rec, done)
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// scram starts the server side of a SCRAM exchange with xdg-go/scram.
func (ss *session) scram(mech string, rec *authRecord, done func(bool)) (sasl.Server, error) {
	o := ss.s.opts
	hash := scram.SHA256
	if strings.HasPrefix(mech, "SCRAM-SHA-1") {
		hash = scram.SHA1
	}
	client, err := hash.NewClient(o.user, o.pass, "")
	if err != nil {
		return nil, err
	}
	creds, err := client.GetStoredCredentialsWithError(scram.KeyFactors{Salt: "pepper and salt", Iters: 4096})
	if err != nil {
		return nil, err
	}
	server, err := hash.NewServer(func(user string) (scram.StoredCredentials, error) {
		if user != o.user {
			return scram.StoredCredentials{}, errors.New("unknown user")
		}
		return creds, nil
	})
	if err != nil {
		return nil, err
	}
	// The server's own binding data, from its side of the connection.
	var cb scram.ChannelBinding
	if cs, ok := ss.conn.TLSConnectionState(); ok {
		if cs.Version == tls.VersionTLS13 {
			data, err := cs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
			if err != nil {
				return nil, err
			}
			cb = scram.ChannelBinding{Type: scram.ChannelBindingTLSExporter, Data: data}
		} else {
			cb = scram.ChannelBinding{Type: scram.ChannelBindingTLSUnique, Data: cs.TLSUnique}
		}
	}
	rec.serverCB = cb.Data
	if o.scramFault == "binding" {
		cb.Data = append([]byte(nil), cb.Data...)
		cb.Data[0] ^= 1
	}
	plusOffered := false
	for _, m := range o.mechanisms {
		plusOffered = plusOffered || strings.HasSuffix(m, "-PLUS")
	}
	var conv *scram.ServerConversation
	switch {
	case strings.HasSuffix(mech, "-PLUS"):
		conv = server.NewConversationWithChannelBindingRequired(cb)
	case cb.IsSupported() && (plusOffered || o.scramFault == "bind"):
		conv = server.NewConversationWithChannelBinding(cb)
	default:
		conv = server.NewConversation()
	}
	return &scramServer{conv: conv, rec: rec, done: done, fault: o.scramFault}, nil
}

// scramServer adapts a SCRAM server conversation to SMTP AUTH: server-final
// goes as a challenge, answered by an empty response (RFC 4422 §5).
type scramServer struct {
	conv  *scram.ServerConversation
	rec   *authRecord
	done  func(bool)
	fault string
	step  int
}

func (s *scramServer) Next(resp []byte) ([]byte, bool, error) {
	s.step++
	switch s.step {
	case 1: // client-first
		if parts := strings.SplitN(string(resp), ",", 3); len(parts) == 3 {
			s.rec.gs2 = parts[0] + "," + parts[1] + ","
		}
		out, err := s.conv.Step(string(resp))
		if err != nil {
			s.done(false)
			return nil, true, smtp.ErrAuthFailed
		}
		return []byte(out), false, nil
	case 2: // client-final
		for _, attr := range strings.Split(string(resp), ",") {
			if v, ok := strings.CutPrefix(attr, "c="); ok {
				cbind, _ := base64.StdEncoding.DecodeString(v)
				s.rec.clientCB = bytes.TrimPrefix(cbind, []byte(s.rec.gs2))
			}
		}
		out, err := s.conv.Step(string(resp))
		if err != nil {
			s.done(false)
			return nil, true, smtp.ErrAuthFailed
		}
		switch s.fault {
		case "nofinal":
			s.done(true)
			return nil, true, nil
		case "signature":
			s.done(false) // The client cancels.
			out = "v=" + base64.StdEncoding.EncodeToString(make([]byte, 32))
		}
		return []byte(out), false, nil
	}
	// The empty response to server-final.
	ok := len(resp) == 0
	s.done(ok)
	if !ok {
		return nil, true, smtp.ErrAuthFailed
	}
	return nil, true, nil
}

// loginServer is the server side of LOGIN, with the usual prompts.
type loginServer struct {
	check func(user, pass string) error
	user  string
	step  int
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	l.step++
	switch l.step {
	case 1:
		return []byte("Username:"), false, nil
	case 2:
		l.user = string(resp)
		return []byte("Password:"), false, nil
	}
	return nil, true, l.check(l.user, string(resp))
}

// cramMD5Server is the server side of CRAM-MD5 (RFC 2195).
type cramMD5Server struct {
	user, pass string
	done       func(bool)
	challenge  []byte
}

func (c *cramMD5Server) Next(resp []byte) ([]byte, bool, error) {
	if c.challenge == nil {
		c.challenge = []byte("<1896.697170952@server.test>")
		return c.challenge, false, nil
	}
	mac := hmac.New(md5.New, []byte(c.pass))
	mac.Write(c.challenge)
	ok := string(resp) == c.user+" "+hex.EncodeToString(mac.Sum(nil))
	c.done(ok)
	if !ok {
		return nil, true, smtp.ErrAuthFailed
	}
	return nil, true, nil
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.msg.helo = ss.conn.Hostname()
	ss.msg.from = from
	if opts != nil {
		ss.msg.mailOpts = *opts
	}
	return nil
}

func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "tempfail@"):
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	case strings.HasPrefix(to, "reject@"):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	ss.msg.rcpts = append(ss.msg.rcpts, to)
	ro := smtp.RcptOptions{}
	if opts != nil {
		ro = *opts
	}
	ss.msg.rcptOpts = append(ss.msg.rcptOpts, ro)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	body, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.msg.body = body
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, ss.msg)
	ss.s.mu.Unlock()
	return nil
}

func (ss *session) Reset() { ss.msg = received{} }

func (ss *session) Logout() error { return nil }

// rawServer is a scripted SMTP server for what go-smtp's server will not do.
// reply answers each command line ("" closes the connection); after a 354
// reply the data up to the line "." is sent on data and answered 250.
func rawServer(t testing.TB, greeting string, reply func(cmd string) string) (addr string, data <-chan []byte) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan []byte, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serveRaw(c, greeting, reply, ch)
		}
	}()
	return l.Addr().String(), ch
}

func serveRaw(c net.Conn, greeting string, reply func(string) string, data chan<- []byte) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var buf []byte
	readLine := func() (string, error) {
		for {
			if i := bytes.Index(buf, []byte("\r\n")); i >= 0 {
				line := string(buf[:i])
				buf = buf[i+2:]
				return line, nil
			}
			tmp := make([]byte, 4096)
			n, err := c.Read(tmp)
			if err != nil {
				return "", err
			}
			buf = append(buf, tmp[:n]...)
		}
	}
	io.WriteString(c, greeting+"\r\n")
	for {
		line, err := readLine()
		if err != nil {
			return
		}
		r := reply(line)
		if r == "" {
			return
		}
		io.WriteString(c, r+"\r\n")
		if !strings.HasPrefix(r, "354") {
			continue
		}
		var msg []byte
		for {
			line, err := readLine()
			if err != nil {
				return
			}
			if line == "." {
				data <- msg
				io.WriteString(c, "250 2.0.0 queued\r\n")
				break
			}
			msg = append(msg, line+"\r\n"...)
		}
	}
}
