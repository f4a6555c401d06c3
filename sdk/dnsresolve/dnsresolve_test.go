package dnsresolve

import (
	"context"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/sdk/dane"
	"github.com/switchyard-mta/switchyard/sdk/dnstest"
)

const tlsaHex = "8d02536c887482bc34ff54e41d2ba659bf85b341a0a20afadb5813dcfbcf286d"

// zones are answered by the test server; "signed" ones with the AD bit.
var zones = []dnstest.Zone{
	{Origin: "example.org.", Signed: true, Records: `
		@ MX 10 mx2
		@ MX 10 mx3
		@ MX 5 mx1
		@ MX 20 MX4.Example.org.
		mx1 A 127.0.0.1
		mx1 AAAA ::1
		mx1 TXT "v=STSv1; " "id=20260101"
		_25._tcp.mx1 TLSA 3 1 1 ` + tlsaHex + `
		_25._tcp.mx1 TLSA 2 0 2 00ff
		_25._tcp.mx1 TLSA 0 1 1 abcd
		_25._tcp.alias CNAME _25._tcp.mx1
		nomx A 127.0.0.2
		nullmx MX 0 .
		alias CNAME mx1
		alias2 CNAME alias
		cnamemx CNAME @
		tounsigned CNAME mx.unsigned.example.
		nochase CNAME alias
		loop1 CNAME loop2
		loop2 CNAME loop1
		dangling CNAME missing
		servfail A 127.0.0.5
		drop A 127.0.0.6
		big MX 10 mx1
		big A 127.0.0.7
	`},
	{Origin: "unsignedalias.example.org.", Records: "@ CNAME mx1.example.org."},
	{Origin: "unsigned.example.", Records: "@ MX 10 mx\nmx A 127.0.0.4\n"},
	{Origin: "xn--bcher-kva.example.", Signed: true, Records: "@ MX 10 @\n@ A 127.0.0.8\n"},
	{Origin: "0.0.127.in-addr.arpa.", Signed: true, Records: `
		1 PTR mx1.example.org.
		1 PTR MX2.Example.ORG.
		1 PTR mx1.example.org.
		2 PTR bad\032name.example.
		5 CNAME 5.sub
		5.sub PTR alias.example.org.
		6 PTR servfail.example.org.
	`},
	{Origin: strings.Repeat("0.", 31) + "ip6.arpa.", Records: "1 PTR mx1.example.org.\n"},
}

// newTestServer starts a resolver on loopback answering from zones.
func newTestServer(t *testing.T) *dnstest.Server {
	s := dnstest.NewServer(t, zones...)
	s.SetFault("servfail.example.org.", dnstest.ServFail)
	s.SetFault("drop.example.org.", dnstest.Drop)
	s.SetFault("big.example.org.", dnstest.Truncate)
	s.SetFault("nochase.example.org.", dnstest.CNAMEOnly) // The chain ends in a new query.
	s.SetFault("6.0.0.127.in-addr.arpa.", dnstest.ServFail)
	return s
}

func newTestResolver(t *testing.T) (*dnstest.Server, *Resolver) {
	s := newTestServer(t)
	addr := s.Addr
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

func TestLookupPTR(t *testing.T) {
	_, r := newTestResolver(t)
	ctx := context.Background()
	for _, tc := range []struct {
		ip            netip.Addr
		wantNames     []string
		wantName      string
		wantAuthentic bool
		wantErr       error
	}{
		// Lowercased, without the trailing dot, duplicates once.
		{netip.MustParseAddr("127.0.0.1"), []string{"mx1.example.org", "mx2.example.org"}, "1.0.0.127.in-addr.arpa", true, nil},
		{netip.MustParseAddr("::ffff:127.0.0.1"), []string{"mx1.example.org", "mx2.example.org"}, "1.0.0.127.in-addr.arpa", true, nil},
		{netip.MustParseAddr("::1"), []string{"mx1.example.org"}, "1." + strings.Repeat("0.", 31) + "ip6.arpa", false, nil},
		// A target that is no host name is skipped.
		{netip.MustParseAddr("127.0.0.2"), nil, "2.0.0.127.in-addr.arpa", true, nil},
		// Classless delegation (RFC 2317) by CNAME.
		{netip.MustParseAddr("127.0.0.5"), []string{"alias.example.org"}, "5.sub.0.0.127.in-addr.arpa", true, nil},
		{netip.MustParseAddr("127.0.0.9"), nil, "9.0.0.127.in-addr.arpa", true, ErrNotFound},
		{netip.MustParseAddr("127.0.0.6"), nil, "", false, ErrTemporary},
		{netip.Addr{}, nil, "", false, ErrInvalidName},
	} {
		names, res, err := r.LookupPTR(ctx, tc.ip)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("%v: err %v, want %v", tc.ip, err, tc.wantErr)
			continue
		}
		if !slices.Equal(names, tc.wantNames) {
			t.Errorf("%v: names %q, want %q", tc.ip, names, tc.wantNames)
		}
		if tc.wantName != "" && (res.Name != tc.wantName || res.Authentic != tc.wantAuthentic) {
			t.Errorf("%v: result %+v, want name %s, authentic %v", tc.ip, res, tc.wantName, tc.wantAuthentic)
		}
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
	qs := s.Queries()
	opt := qs[len(qs)-1].OPT
	if opt == nil || !opt.Do() || opt.UDPSize() != udpSize {
		t.Errorf("query edns0 %v, want DO and size %d", opt, udpSize)
	}
	if n := tcpQueries(s); n != 0 {
		t.Errorf("%d tcp queries without truncation", n)
	}
	if _, _, err := r.LookupIP(context.Background(), "big.example.org"); err != nil {
		t.Fatal(err)
	}
	if n := tcpQueries(s); n != 2 {
		t.Errorf("%d tcp queries after truncated A and AAAA answers, want 2", n)
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

func tcpQueries(s *dnstest.Server) int {
	n := 0
	for _, q := range s.Queries() {
		if q.TCP {
			n++
		}
	}
	return n
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

// TestCache: answers come from the cache for their TTL, a negative answer
// for the SOA's minimum, a full cache evicts, and expiry asks again.
func TestCache(t *testing.T) {
	srv := dnstest.NewServer(t, dnstest.Zone{Origin: "example.org.", Records: `
		@ 300 IN SOA ns.example.org. hostmaster.example.org. 1 3600 600 86400 60
		a 120 IN TXT "one"
		b 120 IN TXT "two"
		c 120 IN TXT "three"`})
	r := &Resolver{Server: srv.Addr, Cache: NewCache(2)}
	now := time.Now()
	r.Cache.now = func() time.Time { return now }
	ctx := context.Background()
	count := func() int { return len(srv.Queries()) }
	for range 3 {
		if txt, _, err := r.LookupTXT(ctx, "a.example.org"); err != nil || len(txt) != 1 || txt[0] != "one" {
			t.Fatalf("TXT %q %v", txt, err)
		}
	}
	if n := count(); n != 1 {
		t.Errorf("%d queries for three lookups, want 1", n)
	}
	for range 2 {
		if _, _, err := r.LookupTXT(ctx, "nx.example.org"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("nx: %v", err)
		}
	}
	if n := count(); n != 2 {
		t.Errorf("%d queries after two negative lookups, want 2", n)
	}
	now = now.Add(61 * time.Second) // Past the negative TTL, within a's.
	r.LookupTXT(ctx, "nx.example.org")
	r.LookupTXT(ctx, "a.example.org")
	if n := count(); n != 3 {
		t.Errorf("%d queries after the negative TTL, want 3", n)
	}
	now = now.Add(2 * time.Minute)
	r.LookupTXT(ctx, "a.example.org")
	if n := count(); n != 4 {
		t.Errorf("%d queries after the TTL, want 4", n)
	}
	// A third name in a cache of two evicts.
	r.LookupTXT(ctx, "b.example.org")
	r.LookupTXT(ctx, "c.example.org")
	if got := len(r.Cache.entries); got > 2 {
		t.Errorf("%d entries in a cache of 2", got)
	}
}
