package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
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
	mechanisms  []string // AUTH mechanisms offered: PLAIN, LOGIN.
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
}

func newSmarthost(t *testing.T, o hostOpts) *smarthost {
	t.Helper()
	h := &smarthost{opts: o}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{h: h, msg: received{helo: c.Hostname()}}, nil
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
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{o.cert.cert}}
	case "tls":
		l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{o.cert.cert}})
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
	h   *smarthost
	msg received
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
	}
	return nil, smtp.ErrAuthUnknownMechanism
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
