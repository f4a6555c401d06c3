package dnsresolve

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// wellFormed reports whether name is what Result.Name and MX.Host promise:
// lowercase A-labels without a trailing dot, labels of letters, digits,
// hyphens and underscores (as in "_25._tcp"), at most 63 octets each and
// 253 in all (RFC 1035 §2.3.4).
func wellFormed(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// fuzzQtypes are the types the resolver asks for.
var fuzzQtypes = []uint16{dns.TypeMX, dns.TypeA, dns.TypeAAAA, dns.TypeTXT, dns.TypeTLSA, dns.TypePTR}

// seedMsgs are well-formed answers the fuzz targets start from.
func seedMsgs(t testing.TB) [][]byte {
	var out [][]byte
	for _, rrs := range [][]string{
		{"example.org. MX 10 mx1.example.org.", "example.org. MX 5 MX2.Example.Org."},
		{"example.org. MX 0 ."},
		{"example.org. CNAME alias.example.org.", "alias.example.org. CNAME example.org."},
		{"example.org. CNAME alias.example.org.", "alias.example.org. A 127.0.0.1", "alias.example.org. AAAA ::1"},
		{"example.org. CNAME elsewhere.example."},
		{"example.org. TXT \"v=STSv1; \" \"id=1\""},
		{"_25._tcp.example.org. TLSA 3 1 1 8d02536c887482bc34ff54e41d2ba659bf85b341a0a20afadb5813dcfbcf286d"},
		{"example.org. A 127.0.0.1", "other.example. A 127.0.0.2"},
		{"1.2.0.192.in-addr.arpa. PTR Mail.Example.org.", "1.2.0.192.in-addr.arpa. PTR bad\\032name.example."},
		{},
	} {
		m := new(dns.Msg)
		m.SetQuestion("example.org.", dns.TypeMX)
		m.Response = true
		m.AuthenticatedData = true
		for _, s := range rrs {
			rr, err := dns.NewRR(s)
			if err != nil {
				t.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
		m.Rcode = dns.RcodeNameError
		if b, err = m.Pack(); err == nil {
			out = append(out, b)
		}
	}
	return out
}

// FuzzFollow walks the CNAME chain of an unpacked fuzzed answer section, in
// process. Invariants: it ends (a loop within the answer is bounded), the
// records it returns are of the type asked for and at the name it returns,
// and that name is the question or a CNAME target in the answer.
func FuzzFollow(f *testing.F) {
	for _, b := range seedMsgs(f) {
		for i := range fuzzQtypes {
			f.Add(b, uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, wire []byte, qt uint8) {
		m := new(dns.Msg)
		if m.Unpack(wire) != nil {
			return
		}
		qtype := fuzzQtypes[int(qt)%len(fuzzQtypes)]
		qname := "example.org."
		if qtype == dns.TypeTLSA {
			qname = "_25._tcp.example.org."
		}
		rrs, final := follow(m.Answer, qname, qtype)
		targets := []string{strings.ToLower(qname)}
		for _, rr := range m.Answer {
			if c, ok := rr.(*dns.CNAME); ok {
				targets = append(targets, strings.ToLower(c.Target))
			}
		}
		if !slices.Contains(targets, strings.ToLower(final)) {
			t.Fatalf("final name %q is neither the question nor a CNAME target", final)
		}
		for _, rr := range rrs {
			if h := rr.Header(); h.Rrtype != qtype || !strings.EqualFold(h.Name, final) {
				t.Fatalf("returned %s for %s %s", rr, final, dns.TypeToString[qtype])
			}
		}
	})
}

// fuzzServer answers every query with the current fuzzed message, over UDP
// and TCP on one loopback port: its ID set to the query's and, if
// fixQuestion, its question too, so that the resolver reads the answer.
type fuzzServer struct {
	addr    string
	resp    atomic.Pointer[fuzzAnswer]
	queries atomic.Int64
}

type fuzzAnswer struct {
	wire        []byte
	fixQuestion bool
}

func newFuzzServer(f *testing.F) *fuzzServer {
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			f.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		pc, ln = nil, nil
	}
	if ln == nil {
		f.Fatal("no free port for udp and tcp")
	}
	s := &fuzzServer{addr: pc.LocalAddr().String()}
	s.resp.Store(&fuzzAnswer{})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: s}, {Listener: ln, Handler: s}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		f.Cleanup(func() { srv.Shutdown() })
	}
	return s
}

func (s *fuzzServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	a := s.resp.Load()
	if a.fixQuestion {
		m := new(dns.Msg)
		if m.Unpack(a.wire) == nil {
			m.Id, m.Question = req.Id, req.Question
			if b, err := m.Pack(); err == nil {
				w.Write(b)
				return
			}
		}
	}
	b := slices.Clone(a.wire)
	if len(b) >= 2 {
		b[0], b[1] = byte(req.Id>>8), byte(req.Id)
	}
	w.Write(b)
}

// FuzzLookup runs the resolver's lookups against a loopback server that
// answers every query with the fuzzed message. Invariants: no panic; a
// bounded number of queries (CNAME chains and loops end); errors are the
// documented ones; names in results (Result.Name, MX hosts, PTR names) are
// well-formed lowercase names; MX records are sorted by preference;
// addresses are valid; an answer is authentic only if the message had the
// AD bit.
func FuzzLookup(f *testing.F) {
	for _, b := range seedMsgs(f) {
		for kind := range 5 {
			f.Add(b, uint8(kind), true)
		}
		f.Add(b, uint8(0), false)
	}
	srv := newFuzzServer(f)
	r := &Resolver{Server: srv.addr, TrustAD: true, Timeout: time.Second}
	f.Fuzz(func(t *testing.T, wire []byte, kind uint8, fixQuestion bool) {
		srv.resp.Store(&fuzzAnswer{wire: wire, fixQuestion: fixQuestion})
		srv.queries.Store(0)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var res Result
		var err error
		lookups := int64(1)
		switch kind % 5 {
		case 0:
			var mxs []MX
			mxs, res, err = r.LookupMX(ctx, "example.org")
			for i, mx := range mxs {
				if !wellFormed(mx.Host) {
					t.Fatalf("mx host %q", mx.Host)
				}
				if i > 0 && mxs[i-1].Pref > mx.Pref {
					t.Fatalf("mx not sorted by preference: %v", mxs)
				}
			}
			if errors.Is(err, ErrNullMX) && len(mxs) > 0 {
				t.Fatalf("null mx with hosts %v", mxs)
			}
		case 1:
			addrs, rs, e := r.LookupIP(ctx, "example.org")
			res, err, lookups = rs, e, 2
			for _, a := range addrs {
				if !a.IsValid() {
					t.Fatalf("invalid address in %v", addrs)
				}
			}
		case 2:
			_, res, err = r.LookupTXT(ctx, "example.org")
		case 3:
			_, res, err = r.LookupTLSA(ctx, 25, "tcp", "example.org")
		case 4:
			var names []string
			names, res, err = r.LookupPTR(ctx, netip.MustParseAddr("192.0.2.1"))
			for _, n := range names {
				if !wellFormed(n) {
					t.Fatalf("ptr name %q", n)
				}
			}
		}
		if n := srv.queries.Load(); n > lookups*2*maxQueries {
			t.Fatalf("%d queries for %d lookups", n, lookups)
		}
		if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrTemporary) && !errors.Is(err, ErrNullMX) {
			t.Fatalf("undocumented error %v", err)
		}
		if (err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrNullMX)) && !wellFormed(res.Name) {
			t.Fatalf("result name %q (err %v)", res.Name, err)
		}
		if res.Authentic && (len(wire) < 4 || wire[3]&0x20 == 0) {
			t.Fatalf("authentic without the AD bit")
		}
	})
}

// FuzzPlainName checks ToASCII's shortcut against the IDNA mapping: a name
// plainName takes gets what the mapping would give it.
func FuzzPlainName(f *testing.F) {
	for _, s := range []string{"example.com", "Mail.Example.COM", "_25._tcp.mx.example.org", "xn--bcher-kva.example", "ab--cd.example", "-a.example", "a-.example", "a..b", "", strings.Repeat("a", 64) + ".example", "a_b.example", "ex@mple.com", "exa\x00mple"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !plainName(name) {
			return
		}
		a, err := idnaProfile.ToASCII(name)
		if err != nil {
			t.Fatalf("plainName(%q), but the mapping fails: %v", name, err)
		}
		if _, ok := dns.IsDomainName(a); !ok {
			t.Fatalf("plainName(%q), but %q is no domain name", name, a)
		}
		if got := strings.ToLower(name); got != strings.ToLower(a) {
			t.Fatalf("plainName(%q): shortcut %q, mapping %q", name, got, a)
		}
		if !wellFormed(strings.ToLower(name)) {
			t.Fatalf("plainName(%q), but it is not well formed", name)
		}
	})
}
