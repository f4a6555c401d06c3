// Package directtest provides loopback servers for testing direct delivery:
// a DNS resolver answering from test zones, with the AD bit (RFC 4035
// §3.2.3) for "signed" names; SMTP receivers on distinct loopback addresses
// sharing one port; an HTTPS server for MTA-STS policies (RFC 8461 §3.3);
// and a test CA issuing their certificates. It is built on sdk/dnstest and
// sdk/smtptest, which serve tests of other kinds.
package directtest

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"github.com/switchyard-mta/switchyard/sdk/dnstest"
	"github.com/switchyard-mta/switchyard/sdk/smtptest"
)

// DNS is a recursive resolver on loopback answering from its records. Each
// name is a zone of its own on a dnstest.Server, signed or not.
type DNS struct {
	Addr string // host:port, for dnsresolve.New.

	srv     *dnstest.Server
	t       testing.TB // Of NewDNS, for the methods without one.
	mu      sync.Mutex
	records map[string][]string // Zone lines, by lowercase owner name.
	signed  map[string]bool
}

// NewDNS starts a resolver serving zone lines ("name. MX 10 host.") over UDP
// and TCP. Names listed in signed (absolute) are answered with the AD bit
// when every name of the answer's CNAME chain is signed.
func NewDNS(t testing.TB, zone []string, signed ...string) *DNS {
	t.Helper()
	s := &DNS{srv: dnstest.NewServer(t), t: t, records: map[string][]string{}, signed: map[string]bool{}}
	s.Addr = s.srv.Addr
	s.Add(t, zone...)
	s.Sign(signed...)
	return s
}

// Add adds zone lines.
func (s *DNS) Add(t testing.TB, zone ...string) {
	t.Helper()
	for _, line := range zone {
		rr, err := dns.NewRR(line)
		if err != nil || rr == nil {
			t.Fatalf("%s: %v", line, err)
		}
		name := dns.CanonicalName(rr.Header().Name)
		s.mu.Lock()
		s.records[name] = append(s.records[name], line)
		s.mu.Unlock()
		s.update(name)
	}
}

// Remove removes the records of name (absolute).
func (s *DNS) Remove(name string) {
	name = dns.CanonicalName(name)
	s.mu.Lock()
	delete(s.records, name)
	s.mu.Unlock()
	s.update(name)
}

// Sign marks names as signed.
func (s *DNS) Sign(names ...string) {
	for _, n := range names {
		n = dns.CanonicalName(n)
		s.mu.Lock()
		s.signed[n] = true
		s.mu.Unlock()
		s.update(n)
	}
}

// update puts the zone of name in force: its records, or none.
func (s *DNS) update(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.srv.SetZone(s.t, dnstest.Zone{Origin: name, Signed: s.signed[name], Records: strings.Join(s.records[name], "\n")})
}

// ServFail makes queries for names fail with SERVFAIL.
func (s *DNS) ServFail(names ...string) {
	for _, n := range names {
		s.srv.SetFault(n, dnstest.ServFail)
	}
}

// CA is a test certificate authority; Issue with a nil CA makes
// self-signed certificates.
type CA = smtptest.CA

// NewCA returns a new CA.
func NewCA(t testing.TB) *CA { return smtptest.NewCA(t) }

// TLSA311 returns the data of a "3 1 1" TLSA record for cert: the SHA-256
// digest of its SubjectPublicKeyInfo (RFC 7671 §5.1), in hex.
func TLSA311(cert tls.Certificate) string {
	sum := sha256.Sum256(cert.Leaf.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
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

// Receiver is an SMTP server (a smtptest.Server) recording messages.
// Recipients starting with "reject" get 550 5.1.1, "tempfail" 451 4.3.0.
type Receiver struct {
	Addr string
	srv  *smtptest.Server
}

// NewReceiver serves SMTP on l until the test ends.
func NewReceiver(t testing.TB, l net.Listener, o ReceiverOptions) *Receiver {
	t.Helper()
	so := smtptest.Options{
		Listener:   l,
		Domain:     "receiver.test",
		SMTPUTF8:   true,
		REQUIRETLS: true,
		Reply: func(c *smtptest.Command) error {
			if c.Stage == smtptest.StageMail && o.MailError != nil {
				return o.MailError
			}
			return smtptest.RejectByName(c)
		},
	}
	if o.Cert != nil {
		so.TLS, so.Certificate = smtptest.StartTLS, o.Cert
		if o.BrokenTLS {
			so.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}
		}
	}
	srv := smtptest.NewServer(t, so)
	return &Receiver{Addr: srv.Addr, srv: srv}
}

// Messages returns the messages received so far.
func (rv *Receiver) Messages() []Message {
	var out []Message
	for _, m := range rv.srv.Messages() {
		out = append(out, Message{From: m.From, To: m.To(), Data: string(m.Data), TLS: m.TLS != nil})
	}
	return out
}

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
