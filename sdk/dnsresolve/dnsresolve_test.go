package dnsresolve

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/switchyard-mta/switchyard/sdk/dane"
)

const tlsaHex = "8d02536c887482bc34ff54e41d2ba659bf85b341a0a20afadb5813dcfbcf286d"

var zoneText = []string{
	"example.org. MX 10 mx2.example.org.",
	"example.org. MX 10 mx3.example.org.",
	"example.org. MX 5 mx1.example.org.",
	"example.org. MX 20 MX4.Example.org.",
	"mx1.example.org. A 127.0.0.1",
	"mx1.example.org. AAAA ::1",
	"mx1.example.org. TXT \"v=STSv1; \" \"id=20260101\"",
	"_25._tcp.mx1.example.org. TLSA 3 1 1 " + tlsaHex,
	"_25._tcp.mx1.example.org. TLSA 2 0 2 00ff",
	"_25._tcp.mx1.example.org. TLSA 0 1 1 abcd",
	"_25._tcp.alias.example.org. CNAME _25._tcp.mx1.example.org.",
	"nomx.example.org. A 127.0.0.2",
	"nullmx.example.org. MX 0 .",
	"unsigned.example. MX 10 mx.unsigned.example.",
	"mx.unsigned.example. A 127.0.0.4",
	"alias.example.org. CNAME mx1.example.org.",
	"alias2.example.org. CNAME alias.example.org.",
	"cnamemx.example.org. CNAME example.org.",
	"unsignedalias.example.org. CNAME mx1.example.org.",
	"tounsigned.example.org. CNAME mx.unsigned.example.",
	"nochase.example.org. CNAME alias.example.org.",
	"loop1.example.org. CNAME loop2.example.org.",
	"loop2.example.org. CNAME loop1.example.org.",
	"dangling.example.org. CNAME missing.example.org.",
	"servfail.example.org. A 127.0.0.5",
	"drop.example.org. A 127.0.0.6",
	"big.example.org. MX 10 mx1.example.org.",
	"big.example.org. A 127.0.0.7",
	"xn--bcher-kva.example. MX 10 xn--bcher-kva.example.",
	"xn--bcher-kva.example. A 127.0.0.8",
}

// testServer is a recursive resolver on loopback answering from zoneText.
type testServer struct {
	rrs      []dns.RR
	signed   map[string]bool // Answers touching only these names get the AD bit.
	servfail map[string]bool
	drop     map[string]bool // Never answered.
	truncate map[string]bool // Truncated over UDP.
	nochase  map[string]bool // Chains starting here stop after one CNAME.

	mu      sync.Mutex
	tcp     int      // Queries received over TCP.
	lastOPT *dns.OPT // EDNS0 record of the last query.
}

func set(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

// newTestServer starts a UDP and TCP server on the same loopback port.
func newTestServer(t *testing.T) (*testServer, string) {
	t.Helper()
	s := &testServer{
		signed: set("example.org.", "mx1.example.org.", "alias.example.org.", "alias2.example.org.",
			"nochase.example.org.", "_25._tcp.mx1.example.org.", "_25._tcp.alias.example.org.",
			"nullmx.example.org.", "nomx.example.org.", "missing.example.org.", "dangling.example.org.",
			"big.example.org.", "cnamemx.example.org.", "tounsigned.example.org.", "xn--bcher-kva.example."),
		servfail: set("servfail.example.org."),
		drop:     set("drop.example.org."),
		truncate: set("big.example.org."),
		nochase:  set("nochase.example.org."),
	}
	for _, line := range zoneText {
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		s.rrs = append(s.rrs, rr)
	}
	var pc net.PacketConn
	var ln net.Listener
	for range 20 {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
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
	return s, pc.LocalAddr().String()
}

func (s *testServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	q := req.Question[0]
	qname := strings.ToLower(q.Name)
	tcp := w.LocalAddr().Network() == "tcp"
	s.mu.Lock()
	s.lastOPT = req.IsEdns0()
	if tcp {
		s.tcp++
	}
	s.mu.Unlock()
	if s.drop[qname] {
		return
	}
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(udpSize, opt.Do())
	}
	switch {
	case s.servfail[qname]:
		resp.Rcode = dns.RcodeServerFailure
	case s.truncate[qname] && !tcp:
		resp.Truncated = true
	default:
		ad := true
		cur := qname
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
			if s.nochase[qname] {
				break
			}
		}
		resp.AuthenticatedData = ad
	}
	w.WriteMsg(resp)
}

func newTestResolver(t *testing.T) (*testServer, *Resolver) {
	s, addr := newTestServer(t)
	r, err := New(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !r.TrustAD {
		t.Fatalf("loopback resolver %s not trusted by default", addr)
	}
	r.Timeout = 200 * time.Millisecond
	return s, r
}

func TestLookupMX(t *testing.T) {
	_, r := newTestResolver(t)
	ctx := context.Background()
	for _, tc := range []struct {
		domain        string
		wantHosts     []string // Equal preferences sorted by name here.
		wantName      string
		wantAuthentic bool
		wantErr       error
	}{
		{"example.org", []string{"mx1.example.org", "mx2.example.org", "mx3.example.org", "mx4.example.org"}, "example.org", true, nil},
		{"cnamemx.example.org.", []string{"mx1.example.org", "mx2.example.org", "mx3.example.org", "mx4.example.org"}, "example.org", true, nil},
		{"unsigned.example", []string{"mx.unsigned.example"}, "unsigned.example", false, nil},
		{"nomx.example.org", nil, "nomx.example.org", true, nil}, // NODATA: implicit MX is the caller's.
		{"nullmx.example.org", nil, "nullmx.example.org", true, ErrNullMX},
		{"missing.example.org", nil, "missing.example.org", true, ErrNotFound},
		{"dangling.example.org", nil, "missing.example.org", true, ErrNotFound},
		{"servfail.example.org", nil, "", false, ErrTemporary},
		{"drop.example.org", nil, "", false, ErrTemporary},
		{"big.example.org", []string{"mx1.example.org"}, "big.example.org", true, nil}, // Truncated: TCP.
		{"bücher.example", []string{"xn--bcher-kva.example"}, "xn--bcher-kva.example", true, nil},
		{"BÜCHER.EXAMPLE.", []string{"xn--bcher-kva.example"}, "xn--bcher-kva.example", true, nil},
		{"bad..name", nil, "", false, ErrInvalidName},
	} {
		mxs, res, err := r.LookupMX(ctx, tc.domain)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: err %v, want %v", tc.domain, err, tc.wantErr)
			continue
		}
		var hosts []string
		for i, mx := range mxs {
			hosts = append(hosts, mx.Host)
			if i > 0 && mx.Pref < mxs[i-1].Pref {
				t.Errorf("%s: not sorted by preference: %v", tc.domain, mxs)
			}
		}
		slices.Sort(hosts)
		if !slices.Equal(hosts, tc.wantHosts) {
			t.Errorf("%s: hosts %v, want %v", tc.domain, hosts, tc.wantHosts)
		}
		if tc.wantName != "" && (res.Name != tc.wantName || res.Authentic != tc.wantAuthentic) {
			t.Errorf("%s: result %+v, want name %s, authentic %v", tc.domain, res, tc.wantName, tc.wantAuthentic)
		}
	}
}

func TestMXShuffle(t *testing.T) {
	_, r := newTestResolver(t)
	orders := map[string]int{}
	for range 64 {
		mxs, _, err := r.LookupMX(context.Background(), "example.org")
		if err != nil {
			t.Fatal(err)
		}
		if len(mxs) != 4 || mxs[0].Host != "mx1.example.org" || mxs[0].Pref != 5 || mxs[3].Host != "mx4.example.org" {
			t.Fatalf("order %v", mxs)
		}
		orders[mxs[1].Host]++
	}
	// Equal preferences are shuffled (RFC 5321 §5.1): both orders show up
	// (failing by chance with probability 2^-63).
	if orders["mx2.example.org"] == 0 || orders["mx3.example.org"] == 0 {
		t.Errorf("preference 10 orders %v", orders)
	}
}

func TestCNAMEAndAuthentic(t *testing.T) {
	_, r := newTestResolver(t)
	untrusted := *r
	untrusted.TrustAD = false
	ctx := context.Background()
	loopback := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}
	for _, tc := range []struct {
		host          string
		r             *Resolver
		wantIPs       []netip.Addr
		wantName      string
		wantAuthentic bool
		wantErr       error
	}{
		{"mx1.example.org", r, loopback, "mx1.example.org", true, nil},
		{"mx1.example.org", &untrusted, loopback, "mx1.example.org", false, nil},
		{"alias.example.org", r, loopback, "mx1.example.org", true, nil},
		{"alias2.example.org", r, loopback, "mx1.example.org", true, nil},
		{"unsignedalias.example.org", r, loopback, "mx1.example.org", false, nil},
		{"tounsigned.example.org", r, []netip.Addr{netip.MustParseAddr("127.0.0.4")}, "mx.unsigned.example", false, nil},
		{"nochase.example.org", r, loopback, "mx1.example.org", true, nil}, // Chain ends in a new query.
		{"example.org", r, nil, "example.org", true, nil},                  // NODATA.
		{"loop1.example.org", r, nil, "", false, ErrTemporary},
		{"dangling.example.org", r, nil, "missing.example.org", true, ErrNotFound},
		{"servfail.example.org", r, nil, "", false, ErrTemporary},
		{"bücher.example", r, []netip.Addr{netip.MustParseAddr("127.0.0.8")}, "xn--bcher-kva.example", true, nil},
	} {
		ips, res, err := tc.r.LookupIP(ctx, tc.host)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: err %v, want %v", tc.host, err, tc.wantErr)
			continue
		}
		if !slices.Equal(ips, tc.wantIPs) {
			t.Errorf("%s: ips %v, want %v", tc.host, ips, tc.wantIPs)
		}
		if tc.wantName != "" && (res.Name != tc.wantName || res.Authentic != tc.wantAuthentic) {
			t.Errorf("%s (trust %v): result %+v, want name %s, authentic %v", tc.host, tc.r.TrustAD, res, tc.wantName, tc.wantAuthentic)
		}
	}
}

func TestLookupTXT(t *testing.T) {
	_, r := newTestResolver(t)
	txts, res, err := r.LookupTXT(context.Background(), "alias.example.org")
	if err != nil || !slices.Equal(txts, []string{"v=STSv1; id=20260101"}) || !res.Authentic {
		t.Errorf("txt %q %+v %v", txts, res, err)
	}
}

func TestLookupTLSA(t *testing.T) {
	_, r := newTestResolver(t)
	data, _ := hex.DecodeString(tlsaHex)
	want := []dane.TLSA{
		{Usage: 3, Selector: 1, MatchingType: 1, Data: data},
		{Usage: 2, Selector: 0, MatchingType: 2, Data: []byte{0, 0xff}},
		{Usage: 0, Selector: 1, MatchingType: 1, Data: []byte{0xab, 0xcd}},
	}
	for _, host := range []string{"mx1.example.org", "alias.example.org."} {
		records, res, err := r.LookupTLSA(context.Background(), 25, "tcp", host)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		if res.Name != "_25._tcp.mx1.example.org" || !res.Authentic {
			t.Errorf("%s: result %+v", host, res)
		}
		if !slices.EqualFunc(records, want, func(a, b dane.TLSA) bool { return a.String() == b.String() }) {
			t.Errorf("%s: records %v, want %v", host, records, want)
		}
	}
	records, _, err := r.LookupTLSA(context.Background(), 25, "tcp", "mx.unsigned.example")
	if !errors.Is(err, ErrNotFound) || records != nil {
		t.Errorf("no tlsa: %v %v", records, err)
	}
}

func TestQueryAndTransport(t *testing.T) {
	s, r := newTestResolver(t)
	if _, _, err := r.LookupIP(context.Background(), "mx1.example.org"); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	opt, tcp := s.lastOPT, s.tcp
	s.mu.Unlock()
	if opt == nil || !opt.Do() || opt.UDPSize() != udpSize {
		t.Errorf("query edns0 %v, want DO and size %d", opt, udpSize)
	}
	if tcp != 0 {
		t.Errorf("%d tcp queries without truncation", tcp)
	}
	if _, _, err := r.LookupIP(context.Background(), "big.example.org"); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	tcp = s.tcp
	s.mu.Unlock()
	if tcp != 2 {
		t.Errorf("%d tcp queries after truncated A and AAAA answers, want 2", tcp)
	}

	// The timeout bounds a lookup; a cancelled context fails as temporary.
	start := time.Now()
	if _, _, err := r.LookupIP(context.Background(), "drop.example.org"); !errors.Is(err, ErrTemporary) {
		t.Errorf("dropped query: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("timeout took %v", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := r.LookupMX(ctx, "example.org"); !errors.Is(err, ErrTemporary) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	local := write("local", "search example.org\nnameserver 127.0.0.53\nnameserver 192.0.2.1\n")
	remote := write("remote", "nameserver 2001:db8::53\n")
	empty := write("empty", "search example.org\n")
	yes, no := true, false
	for _, tc := range []struct {
		server, resolvConf string
		trustAD            *bool
		wantServer         string
		wantTrust          bool
		wantErr            bool
	}{
		{"", local, nil, "127.0.0.53:53", true, false},
		{"", remote, nil, "[2001:db8::53]:53", false, false},
		{"", remote, &yes, "[2001:db8::53]:53", true, false},
		{"", empty, nil, "", false, true},
		{"", filepath.Join(dir, "absent"), nil, "", false, true},
		{"127.0.0.1:5353", "", nil, "127.0.0.1:5353", true, false},
		{"127.0.0.1:5353", "", &no, "127.0.0.1:5353", false, false},
		{"[::1]:5353", "", nil, "[::1]:5353", true, false},
		{"::1", "", nil, "[::1]:53", true, false},
		{"localhost:53", "", nil, "localhost:53", true, false},
		{"192.0.2.1", "", nil, "192.0.2.1:53", false, false},
		{"192.0.2.1:99999", "", nil, "", false, true},
	} {
		r, err := newResolver(tc.server, tc.trustAD, tc.resolvConf)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q %s: err %v", tc.server, tc.resolvConf, err)
			continue
		}
		if err == nil && (r.Server != tc.wantServer || r.TrustAD != tc.wantTrust) {
			t.Errorf("%q %s: %+v, want %s trust %v", tc.server, tc.resolvConf, r, tc.wantServer, tc.wantTrust)
		}
	}
}

func TestToASCII(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Example.ORG.", "example.org"},
		{"bücher.example", "xn--bcher-kva.example"},
		{"_mta-sts.bücher.example", "_mta-sts.xn--bcher-kva.example"},
		{"", ""},
		{"a..b", ""},
	} {
		got, err := ToASCII(tc.in)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("ToASCII(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
