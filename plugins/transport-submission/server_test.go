package main

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
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/xdg-go/scram"
)

// testCert is a self-signed certificate for 127.0.0.1 and localhost.
type testCert struct {
	cert tls.Certificate
	pem  []byte
}

func newTestCert(t *testing.T) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "smarthost test"},
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
	return &testCert{
		cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	}
}

// hostOpts configure a test smarthost.
type hostOpts struct {
	tls         string // "", "starttls" or "tls" (implicit).
	cert        *testCert
	mechanisms  []string // AUTH mechanisms offered: PLAIN, LOGIN, CRAM-MD5, SCRAM-*.
	maxTLS      uint16   // Highest TLS version; 0: TLS 1.3.
	user, pass  string
	readTimeout time.Duration // Idle connections are closed after it.
	dataDelay   time.Duration // Data waits this long before answering.
	configure   func(*smtp.Server)
}

// received is one message the smarthost accepted.
type received struct {
	helo     string
	from     string
	mailOpts smtp.MailOptions
	rcpts    []string
	rcptOpts []smtp.RcptOptions
	body     []byte
	authMech string
}

// smarthost is a go-smtp server recording what it gets. Recipients named
// tempfail@ get 451 4.3.0, reject@ 550 5.1.1; others are accepted.
type smarthost struct {
	addr  string
	opts  hostOpts
	conns atomic.Int32 // Accepted connections.
	auths atomic.Int32 // Successful AUTH exchanges.

	mu        sync.Mutex
	msgs      []received
	active    int // Sessions in Data.
	maxActive int
	debug     bytes.Buffer // Protocol trace of all connections.
	scram     []scramRecord
}

// scramRecord is what the smarthost saw of a SCRAM exchange.
type scramRecord struct {
	gs2      string // The gs2 header, e.g. "p=tls-exporter,,".
	clientCB []byte // Channel binding data the client sent.
	serverCB []byte // The smarthost's own, from its side of TLS.
}

func newSmarthost(t *testing.T, o hostOpts) *smarthost {
	t.Helper()
	h := &smarthost{opts: o}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{h: h, conn: c, msg: received{helo: c.Hostname()}}, nil
	}))
	srv.Domain = "smarthost.test"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.Debug = lockedWriter{&h.mu, &h.debug}
	srv.ReadTimeout = o.readTimeout
	if o.configure != nil {
		o.configure(srv)
	}
	var l net.Listener
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l = countingListener{l, &h.conns}
	switch o.tls {
	case "starttls":
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{o.cert.cert}, MaxVersion: o.maxTLS}
	case "tls":
		l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{o.cert.cert}, MaxVersion: o.maxTLS})
	}
	h.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return h
}

// port returns the port of addr, as a table value.
func port(addr string) int64 {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.ParseInt(p, 10, 64)
	return n
}

func (h *smarthost) messages() []received {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]received(nil), h.msgs...)
}

func (h *smarthost) scramRecords() []scramRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]scramRecord(nil), h.scram...)
}

func (h *smarthost) trace() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.debug.String()
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

type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

type session struct {
	h    *smarthost
	conn *smtp.Conn
	msg  received
}

func (s *session) AuthMechanisms() []string { return s.h.opts.mechanisms }

func (s *session) Auth(mech string) (sasl.Server, error) {
	check := func(user, pass string) error {
		if user != s.h.opts.user || pass != s.h.opts.pass {
			return smtp.ErrAuthFailed
		}
		s.h.auths.Add(1)
		s.msg.authMech = mech
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
		return &cramMD5Server{check: func(user, digest string) error {
			mac := hmac.New(md5.New, []byte(s.h.opts.pass))
			mac.Write([]byte(cramChallenge))
			if digest != hex.EncodeToString(mac.Sum(nil)) {
				return smtp.ErrAuthFailed
			}
			return check(user, s.h.opts.pass)
		}}, nil
	case "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1":
		return s.scram(mech, check)
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

const cramChallenge = "<1896.697170952@smarthost.test>"

// cramMD5Server is the server side of CRAM-MD5 (RFC 2195).
type cramMD5Server struct {
	check func(user, digest string) error
	sent  bool
}

func (c *cramMD5Server) Next(resp []byte) ([]byte, bool, error) {
	if !c.sent {
		c.sent = true
		return []byte(cramChallenge), false, nil
	}
	user, digest, _ := strings.Cut(string(resp), " ")
	return nil, true, c.check(user, digest)
}

// scram starts the server side of SCRAM with xdg-go/scram, binding to the
// channel with tls-exporter on TLS 1.3 and tls-unique on TLS 1.2 when a
// -PLUS variant is offered.
func (s *session) scram(mech string, check func(user, pass string) error) (sasl.Server, error) {
	o := s.h.opts
	hash := scram.SHA256
	if strings.HasPrefix(mech, "SCRAM-SHA-1") {
		hash = scram.SHA1
	}
	client, err := hash.NewClient(o.user, o.pass, "")
	if err != nil {
		return nil, err
	}
	creds, err := client.GetStoredCredentialsWithError(scram.KeyFactors{Salt: "salt of the earth", Iters: 4096})
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
	var cb scram.ChannelBinding
	if cs, ok := s.conn.TLSConnectionState(); ok {
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
	plusOffered := slices.ContainsFunc(o.mechanisms, func(m string) bool { return strings.HasSuffix(m, "-PLUS") })
	conv := server.NewConversation()
	switch {
	case strings.HasSuffix(mech, "-PLUS"):
		conv = server.NewConversationWithChannelBindingRequired(cb)
	case plusOffered && cb.IsSupported():
		conv = server.NewConversationWithChannelBinding(cb) // Detects a downgrade.
	}
	return &scramServer{s: s, conv: conv, rec: scramRecord{serverCB: cb.Data}, done: func() error { return check(o.user, o.pass) }}, nil
}

// scramServer runs a SCRAM conversation in SMTP AUTH: server-final goes as
// a challenge, answered by an empty response (RFC 4422 §5).
type scramServer struct {
	s    *session
	conv *scram.ServerConversation
	rec  scramRecord
	done func() error
	step int
}

func (x *scramServer) Next(resp []byte) ([]byte, bool, error) {
	x.step++
	switch x.step {
	case 1:
		if parts := strings.SplitN(string(resp), ",", 3); len(parts) == 3 {
			x.rec.gs2 = parts[0] + "," + parts[1] + ","
		}
	case 2:
		for _, attr := range strings.Split(string(resp), ",") {
			if v, ok := strings.CutPrefix(attr, "c="); ok {
				cbind, _ := base64.StdEncoding.DecodeString(v)
				x.rec.clientCB = bytes.TrimPrefix(cbind, []byte(x.rec.gs2))
			}
		}
		h := x.s.h
		h.mu.Lock()
		h.scram = append(h.scram, x.rec)
		h.mu.Unlock()
	default:
		if len(resp) != 0 || !x.conv.Valid() {
			return nil, true, smtp.ErrAuthFailed
		}
		return nil, true, x.done()
	}
	out, err := x.conv.Step(string(resp))
	if err != nil {
		return nil, true, smtp.ErrAuthFailed
	}
	return []byte(out), false, nil
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
		if len(resp) > 0 { // Username as an initial response.
			l.user = string(resp)
			l.step++
			return []byte("Password:"), false, nil
		}
		return []byte("Username:"), false, nil
	case 2:
		l.user = string(resp)
		return []byte("Password:"), false, nil
	}
	return nil, true, l.check(l.user, string(resp))
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.msg.from = from
	if opts != nil {
		s.msg.mailOpts = *opts
	}
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "tempfail@"):
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	case strings.HasPrefix(to, "reject@"):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.msg.rcpts = append(s.msg.rcpts, to)
	if opts != nil {
		s.msg.rcptOpts = append(s.msg.rcptOpts, *opts)
	} else {
		s.msg.rcptOpts = append(s.msg.rcptOpts, smtp.RcptOptions{})
	}
	return nil
}

func (s *session) Data(r io.Reader) error {
	h := s.h
	h.mu.Lock()
	h.active++
	h.maxActive = max(h.maxActive, h.active)
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.active--
		h.mu.Unlock()
	}()
	body, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	time.Sleep(h.opts.dataDelay)
	if bytes.Contains(body, []byte("X-Fail: data")) {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "content rejected"}
	}
	s.msg.body = body
	h.mu.Lock()
	h.msgs = append(h.msgs, s.msg)
	h.mu.Unlock()
	return nil
}

func (s *session) Reset() {
	s.msg = received{helo: s.msg.helo, authMech: s.msg.authMech}
}

func (s *session) Logout() error { return nil }

// rawServer is a scripted SMTP server for what go-smtp's server will not do.
// reply answers each command line ("" closes the connection); after a 354
// reply the message is read up to its end, which is answered 250. dot
// receives, for each message, whether its end-of-data dot arrived.
func rawServer(t *testing.T, greeting string, reply func(cmd string) string) (addr string, dot <-chan bool) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan bool, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 0, 4096)
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
					for {
						line, err := readLine()
						if err != nil {
							ch <- false
							return
						}
						if line == "." {
							ch <- true
							io.WriteString(c, "250 2.0.0 queued\r\n")
							break
						}
					}
				}
			}()
		}
	}()
	return l.Addr().String(), ch
}
