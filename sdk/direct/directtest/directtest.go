// Package directtest provides loopback servers for testing direct delivery:
// a DNS resolver answering from test zones, with the AD bit (RFC 4035
// §3.2.3) for "signed" names; SMTP receivers (go-smtp) on distinct loopback
// addresses sharing one port; an HTTPS server for MTA-STS policies (RFC 8461
// §3.3); and a test CA issuing their certificates.
package directtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
)

// DNS is a recursive resolver on loopback answering from its records.
type DNS struct {
	Addr string // host:port, for dnsresolve.New.

	mu       sync.Mutex
	rrs      []dns.RR
	signed   map[string]bool
	servfail map[string]bool
}

// NewDNS starts a resolver serving zone lines ("name. MX 10 host.") over UDP
// and TCP. Names listed in signed (absolute, lowercase) are answered with the
// AD bit when every name of the answer's CNAME chain is signed.
func NewDNS(t testing.TB, zone []string, signed ...string) *DNS {
	t.Helper()
	s := &DNS{signed: map[string]bool{}, servfail: map[string]bool{}}
	s.Add(t, zone...)
	s.Sign(signed...)
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		pc, ln = nil, nil
	}
	if ln == nil {
		t.Fatal("no free port for udp and tcp")
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: s}, {Listener: ln, Handler: s}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	s.Addr = pc.LocalAddr().String()
	return s
}

// Add adds zone lines.
func (s *DNS) Add(t testing.TB, zone ...string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range zone {
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		s.rrs = append(s.rrs, rr)
	}
}

// Remove removes the records of name (absolute).
func (s *DNS) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.rrs[:0]
	for _, rr := range s.rrs {
		if !strings.EqualFold(rr.Header().Name, name) {
			kept = append(kept, rr)
		}
	}
	s.rrs = kept
}

// Sign marks names as signed.
func (s *DNS) Sign(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		s.signed[strings.ToLower(n)] = true
	}
}

// ServFail makes queries for names fail with SERVFAIL.
func (s *DNS) ServFail(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		s.servfail[strings.ToLower(n)] = true
	}
}

// ServeDNS implements dns.Handler.
func (s *DNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := req.Question[0]
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(1232, opt.Do())
	}
	cur := strings.ToLower(q.Name)
	if s.servfail[cur] {
		resp.Rcode = dns.RcodeServerFailure
		w.WriteMsg(resp)
		return
	}
	ad := true
	for range 10 {
		ad = ad && s.signed[cur]
		var cname dns.RR
		exists := false
		for _, rr := range s.rrs {
			if !strings.EqualFold(rr.Header().Name, cur) {
				continue
			}
			exists = true
			if rr.Header().Rrtype == q.Qtype {
				resp.Answer = append(resp.Answer, rr)
			} else if rr.Header().Rrtype == dns.TypeCNAME {
				cname = rr
			}
		}
		if !exists {
			resp.Rcode = dns.RcodeNameError
		}
		if len(resp.Answer) > 0 && resp.Answer[len(resp.Answer)-1].Header().Rrtype == q.Qtype || cname == nil {
			break
		}
		resp.Answer = append(resp.Answer, cname)
		cur = strings.ToLower(cname.(*dns.CNAME).Target)
	}
	resp.AuthenticatedData = ad
	w.WriteMsg(resp)
}

// CA is a test certificate authority.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	Pool *x509.CertPool // Holds Cert.
	PEM  []byte         // Cert in PEM, for a ca_file.
}

// NewCA returns a new CA.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "directtest CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, key: key, Pool: pool, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Issue returns a certificate for names signed by the CA, or self-signed if
// ca is nil.
func (ca *CA) Issue(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca.Cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// TLSA311 returns the data of a "3 1 1" TLSA record for cert: the SHA-256
// digest of its SubjectPublicKeyInfo (RFC 7671 §5.1), in hex.
func TLSA311(cert tls.Certificate) string {
	sum := sha256.Sum256(cert.Leaf.RawSubjectPublicKeyInfo)
	const hexdigits = "0123456789abcdef"
	var b strings.Builder
	for _, c := range sum {
		b.WriteByte(hexdigits[c>>4])
		b.WriteByte(hexdigits[c&15])
	}
	return b.String()
}

// Listen listens on TCP port of each of ips (loopback addresses such as
// "127.0.0.2") with one port for all, which it returns.
func Listen(t testing.TB, ips ...string) (int, []net.Listener) {
	t.Helper()
	for range 50 {
		first, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		ls := []net.Listener{first}
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				break
			}
			ls = append(ls, l)
		}
		if len(ls) == len(ips) {
			return port, ls
		}
		for _, l := range ls {
			l.Close()
		}
	}
	t.Fatal("no port free on all addresses")
	return 0, nil
}

// ReceiverOptions configure a Receiver.
type ReceiverOptions struct {
	Cert *tls.Certificate // STARTTLS with it; nil: no STARTTLS.
	// BrokenTLS offers STARTTLS but fails every handshake (TLS 1.0 only).
	BrokenTLS bool
	// MailError, if set, is the reply to every MAIL FROM.
	MailError *smtp.SMTPError
}

// Message is what a receiver got.
type Message struct {
	From string
	To   []string
	Data string
	TLS  bool
}

// Receiver is an SMTP server recording messages. Recipients starting with
// "reject" get 550 5.1.1, "tempfail" 451 4.3.0.
type Receiver struct {
	Addr string
	mu   sync.Mutex
	msgs []Message
}

// NewReceiver serves SMTP on l until the test ends.
func NewReceiver(t testing.TB, l net.Listener, o ReceiverOptions) *Receiver {
	rv := &Receiver{Addr: l.Addr().String()}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{rv: rv, conn: c, mailErr: o.MailError}, nil
	}))
	srv.Domain = "receiver.test"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.EnableREQUIRETLS = true
	srv.EnableSMTPUTF8 = true
	if o.Cert != nil {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*o.Cert}}
		if o.BrokenTLS {
			srv.TLSConfig.MinVersion, srv.TLSConfig.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
		}
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return rv
}

// Messages returns the messages received so far.
func (rv *Receiver) Messages() []Message {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return append([]Message(nil), rv.msgs...)
}

type session struct {
	rv      *Receiver
	conn    *smtp.Conn
	msg     Message
	mailErr *smtp.SMTPError
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.mailErr != nil {
		return s.mailErr
	}
	s.msg = Message{From: from}
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "reject"):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	case strings.HasPrefix(to, "tempfail"):
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	}
	s.msg.To = append(s.msg.To, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.msg.Data = string(b)
	_, s.msg.TLS = s.conn.TLSConnectionState()
	s.rv.mu.Lock()
	s.rv.msgs = append(s.rv.msgs, s.msg)
	s.rv.mu.Unlock()
	return nil
}

func (s *session) Reset()        {}
func (s *session) Logout() error { return nil }

// PolicyServer serves MTA-STS policies over HTTPS at
// /.well-known/mta-sts.txt, by Host (RFC 8461 §3.3).
type PolicyServer struct {
	mu       sync.Mutex
	policies map[string]string // By domain.
}

// NewPolicyServer serves on l with cert (which must cover mta-sts.<domain>
// of each domain) until the test ends.
func NewPolicyServer(t testing.TB, l net.Listener, cert tls.Certificate) *PolicyServer {
	ps := &PolicyServer{policies: map[string]string{}}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, err := net.SplitHostPort(r.Host)
			if err != nil {
				host = r.Host
			}
			ps.mu.Lock()
			p, ok := ps.policies[strings.TrimPrefix(host, "mta-sts.")]
			ps.mu.Unlock()
			if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, p)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	go srv.ServeTLS(l, "", "")
	t.Cleanup(func() { srv.Close() })
	return ps
}

// Set serves policy for domain.
func (ps *PolicyServer) Set(domain, policy string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.policies[domain] = policy
}
