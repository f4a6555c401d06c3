// Package dnstest runs a DNS server on loopback for tests, in the manner of
// net/http/httptest: it answers over UDP and TCP on one port of 127.0.0.1
// from zones given in zone-file syntax, as a recursive resolver would, so a
// resolver under test (sdk/dnsresolve, or a plugin's own) can be pointed at
// Server.Addr.
//
// A zone can be marked signed: answers from it carry the AD bit, as from a
// validating resolver (RFC 4035 §3.2.3), which is what DANE (RFC 7672) and
// DNSSEC-aware MX lookups test. Per-name faults make failure tests: SERVFAIL,
// no answer at all, truncation over UDP (so a client must retry over TCP,
// RFC 7766 §5), or a CNAME chain left for the client to follow.
//
//	s := dnstest.NewServer(t, dnstest.Zone{Origin: "example.org.", Signed: true, Records: `
//		@   MX 10 mx
//		mx  A  127.0.0.1
//	`})
//	r, _ := dnsresolve.New(s.Addr, nil)
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Zone is a zone the server answers from.
type Zone struct {
	// Origin is the zone's apex, e.g. "example.org."; names in Records
	// that are not absolute are relative to it.
	Origin string
	// Signed sets the AD bit on answers from the zone: an answer has it
	// when every name of its CNAME chain is in a signed zone and the query
	// asked for it with the AD or DO bit (RFC 6840 §5.7).
	Signed bool
	// Records in zone-file syntax (RFC 1035 §5.1), one a line; a record's
	// TTL defaults to 300 seconds. Leading white space is ignored, so that
	// the text may be indented: each record names its owner ("@" for
	// Origin). Records outside Origin are an error.
	Records string
}

// Fault is how the server misbehaves for a name.
type Fault int

const (
	// NoFault answers normally.
	NoFault Fault = iota
	// ServFail answers with SERVFAIL (RFC 1035 §4.1.1).
	ServFail
	// Drop never answers; the client times out.
	Drop
	// Truncate answers over UDP with an empty, truncated (TC) reply, so
	// the client must ask again over TCP, where the answer is whole.
	Truncate
	// CNAMEOnly answers with the first CNAME of the name's chain only, as
	// a server that does not follow it; the client must ask for the target.
	CNAMEOnly
)

// Query is a query the server received.
type Query struct {
	Name string   // As asked, not lowercased.
	Type uint16   // dns.TypeMX, dns.TypeA, …
	TCP  bool     // Over TCP rather than UDP.
	OPT  *dns.OPT // The EDNS0 record (RFC 6891); nil without.
}

// ednsSize is the UDP payload size the server advertises and truncates
// UDP answers to at most (RFC 6891 §6.2.5; 1232 as DNS Flag Day 2020).
const ednsSize = 1232

// Server is a DNS server on loopback. Its methods may be called while it
// serves.
type Server struct {
	// Addr is the host:port of both the UDP and the TCP listener.
	Addr string

	servers []*dns.Server

	mu      sync.Mutex
	zones   map[string]*zone // By lowercase origin.
	faults  map[string]Fault // By lowercase name.
	queries []Query
}

type zone struct {
	signed bool
	rrs    []dns.RR
	soa    dns.RR // For the authority section of negative answers (RFC 2308 §3).
}

// NewServer starts a server with zones on a free port of 127.0.0.1, over
// UDP and TCP. It is closed when the test ends. Bad zone text fails the test.
func NewServer(t testing.TB, zones ...Zone) *Server {
	t.Helper()
	s := &Server{zones: map[string]*zone{}, faults: map[string]Fault{}}
	for _, z := range zones {
		s.SetZone(t, z)
	}
	pc, ln := listen(t)
	s.Addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: s}, {Listener: ln, Handler: s}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		s.servers = append(s.servers, srv)
	}
	t.Cleanup(s.Close)
	return s
}

// listen opens a UDP and a TCP listener on the same free loopback port.
func listen(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("dnstest: %v", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
	}
	t.Fatal("dnstest: no port free for both udp and tcp")
	return nil, nil
}

// Close stops the server. NewServer has it called at the end of the test.
func (s *Server) Close() {
	for _, srv := range s.servers {
		srv.Shutdown()
	}
	s.servers = nil
}

// SetZone adds z, or replaces the zone of the same origin.
func (s *Server) SetZone(t testing.TB, z Zone) {
	t.Helper()
	origin := dns.CanonicalName(z.Origin)
	nz := &zone{signed: z.Signed}
	lines := strings.Split(z.Records, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimLeft(l, " \t")
	}
	zp := dns.NewZoneParser(strings.NewReader(strings.Join(lines, "\n")), origin, "")
	zp.SetDefaultTTL(300)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if !dns.IsSubDomain(origin, rr.Header().Name) {
			t.Fatalf("dnstest: zone %s: record %s outside the zone", origin, rr)
		}
		if rr.Header().Rrtype == dns.TypeSOA {
			nz.soa = rr
		}
		nz.rrs = append(nz.rrs, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("dnstest: zone %s: %v", origin, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.zones[origin] = nz
}

// RemoveZone removes the zone at origin, if any.
func (s *Server) RemoveZone(origin string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.zones, dns.CanonicalName(origin))
}

// SetFault makes the server misbehave for queries of name, whatever their
// type; NoFault ends it.
func (s *Server) SetFault(name string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == NoFault {
		delete(s.faults, dns.CanonicalName(name))
		return
	}
	s.faults[dns.CanonicalName(name)] = f
}

// Queries returns the queries received so far, oldest first.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.queries...)
}

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		resp := new(dns.Msg)
		resp.SetRcode(req, dns.RcodeFormatError)
		w.WriteMsg(resp)
		return
	}
	q := req.Question[0]
	tcp := w.LocalAddr().Network() == "tcp"
	opt := req.IsEdns0()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries = append(s.queries, Query{Name: q.Name, Type: q.Qtype, TCP: tcp, OPT: opt})
	fault := s.faults[dns.CanonicalName(q.Name)]
	if fault == Drop {
		return
	}
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	switch {
	case fault == ServFail:
		resp.Rcode = dns.RcodeServerFailure
	case fault == Truncate && !tcp:
		resp.Truncated = true
	default:
		ad := s.answer(resp, q, fault == CNAMEOnly)
		resp.AuthenticatedData = ad && (req.AuthenticatedData || opt != nil && opt.Do())
	}
	size := dns.MinMsgSize
	if opt != nil {
		resp.SetEdns0(ednsSize, opt.Do())
		size = min(max(int(opt.UDPSize()), dns.MinMsgSize), ednsSize)
	}
	if !tcp {
		resp.Truncate(size) // Sets TC if the answer does not fit (RFC 1035 §4.2.1).
	}
	w.WriteMsg(resp)
}

// answer fills resp for q, following CNAMEs across zones (unless
// cnameOnly), and reports whether every name on the way is in a signed
// zone. Names in no zone do not exist.
func (s *Server) answer(resp *dns.Msg, q dns.Question, cnameOnly bool) (signed bool) {
	signed = true
	seen := map[string]bool{}
	for cur := dns.CanonicalName(q.Name); !seen[cur]; {
		seen[cur] = true
		z := s.zoneOf(cur)
		if z == nil {
			resp.Rcode = dns.RcodeNameError
			return false
		}
		signed = signed && z.signed
		var cname *dns.CNAME
		found := false
		for _, rr := range z.rrs {
			if !strings.EqualFold(rr.Header().Name, cur) {
				continue
			}
			switch {
			case rr.Header().Rrtype == q.Qtype || q.Qtype == dns.TypeANY:
				resp.Answer = append(resp.Answer, dns.Copy(rr))
				found = true
			case rr.Header().Rrtype == dns.TypeCNAME:
				cname = rr.(*dns.CNAME)
			}
		}
		if found {
			return signed
		}
		if cname == nil {
			if !s.exists(cur) {
				resp.Rcode = dns.RcodeNameError // Else NODATA (RFC 2308 §2.2).
			}
			if z.soa != nil {
				resp.Ns = append(resp.Ns, dns.Copy(z.soa))
			}
			return signed
		}
		resp.Answer = append(resp.Answer, dns.Copy(cname))
		if cnameOnly {
			return signed
		}
		cur = dns.CanonicalName(cname.Target)
	}
	return signed // A CNAME loop: the answer ends with the CNAME back.
}

// zoneOf returns the zone name belongs to: the one of the longest origin
// that name is in.
func (s *Server) zoneOf(name string) *zone {
	for labels := dns.SplitDomainName(name); ; labels = labels[1:] {
		if z, ok := s.zones[dns.Fqdn(strings.Join(labels, "."))]; ok {
			return z
		}
		if len(labels) == 0 {
			return nil
		}
	}
}

// exists reports whether any zone has records at or below name: a name
// with none of its own but records below is an empty non-terminal, which
// exists (RFC 8020 §2).
func (s *Server) exists(name string) bool {
	for _, z := range s.zones {
		for _, rr := range z.rrs {
			if dns.IsSubDomain(name, rr.Header().Name) {
				return true
			}
		}
	}
	return false
}
