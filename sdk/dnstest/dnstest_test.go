package dnstest_test

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/switchyard-mta/switchyard/sdk/dnstest"
)

func newServer(t *testing.T) *dnstest.Server {
	return dnstest.NewServer(t,
		dnstest.Zone{Origin: "example.org.", Signed: true, Records: `
@          SOA ns hostmaster 1 3600 600 86400 300
@          MX  10 mx
mx         A   127.0.0.1
mx         AAAA ::1
alias      CNAME mx
toplain    CNAME mx.plain.example.
_25._tcp.mx TLSA 3 1 1 abcd
`},
		dnstest.Zone{Origin: "plain.example.", Records: "mx.plain.example. 60 A 127.0.0.2\n"},
		dnstest.Zone{Origin: "sub.example.org.", Records: "host A 127.0.0.3\n"},
	)
}

func query(t *testing.T, addr, name string, qtype uint16, tcp, do bool) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if do {
		m.SetEdns0(1232, true)
	}
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	if tcp {
		c.Net = "tcp"
	}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
	}
	return resp
}

func answers(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	return out
}

func TestAnswers(t *testing.T) {
	s := newServer(t)
	for _, tc := range []struct {
		name    string
		qtype   uint16
		do      bool
		rcode   int
		ad      bool
		answers []string
		soa     bool
	}{
		{"example.org.", dns.TypeMX, true, dns.RcodeSuccess, true, []string{"example.org. 300 IN MX 10 mx.example.org."}, false},
		{"EXAMPLE.org.", dns.TypeMX, false, dns.RcodeSuccess, false, []string{"example.org. 300 IN MX 10 mx.example.org."}, false}, // AD only when asked.
		{"alias.example.org.", dns.TypeA, true, dns.RcodeSuccess, true, []string{"alias.example.org. 300 IN CNAME mx.example.org.", "mx.example.org. 300 IN A 127.0.0.1"}, false},
		{"toplain.example.org.", dns.TypeA, true, dns.RcodeSuccess, false, []string{"toplain.example.org. 300 IN CNAME mx.plain.example.", "mx.plain.example. 60 IN A 127.0.0.2"}, false},
		{"alias.example.org.", dns.TypeCNAME, true, dns.RcodeSuccess, true, []string{"alias.example.org. 300 IN CNAME mx.example.org."}, false},
		{"mx.example.org.", dns.TypeTXT, true, dns.RcodeSuccess, true, nil, true},                                                        // NODATA.
		{"_tcp.mx.example.org.", dns.TypeTXT, true, dns.RcodeSuccess, true, nil, true},                                                   // Empty non-terminal.
		{"missing.example.org.", dns.TypeA, true, dns.RcodeNameError, true, nil, true},                                                   // Authenticated denial.
		{"host.sub.example.org.", dns.TypeA, true, dns.RcodeSuccess, false, []string{"host.sub.example.org. 300 IN A 127.0.0.3"}, false}, // Unsigned child zone.
		{"nowhere.test.", dns.TypeA, true, dns.RcodeNameError, false, nil, false},
	} {
		resp := query(t, s.Addr, tc.name, tc.qtype, false, tc.do)
		if resp.Rcode != tc.rcode || resp.AuthenticatedData != tc.ad || !slices.Equal(answers(resp), tc.answers) || (len(resp.Ns) == 1) != tc.soa {
			t.Errorf("%s %s: rcode %s ad %v answers %q authority %v; want %s %v %q soa %v", tc.name, dns.TypeToString[tc.qtype],
				dns.RcodeToString[resp.Rcode], resp.AuthenticatedData, answers(resp), resp.Ns, dns.RcodeToString[tc.rcode], tc.ad, tc.answers, tc.soa)
		}
		if !resp.RecursionAvailable {
			t.Errorf("%s: RA not set", tc.name)
		}
	}
}

func TestFaults(t *testing.T) {
	s := newServer(t)
	s.SetFault("mx.example.org.", dnstest.ServFail)
	if r := query(t, s.Addr, "mx.example.org.", dns.TypeA, false, true); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("servfail: %v", r)
	}
	s.SetFault("mx.example.org.", dnstest.NoFault)
	if r := query(t, s.Addr, "mx.example.org.", dns.TypeA, false, true); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("fault cleared: %v", r)
	}

	s.SetFault("alias.example.org.", dnstest.CNAMEOnly)
	if r := query(t, s.Addr, "alias.example.org.", dns.TypeA, false, true); !slices.Equal(answers(r), []string{"alias.example.org. 300 IN CNAME mx.example.org."}) {
		t.Errorf("cname only: %q", answers(r))
	}

	s.SetFault("example.org.", dnstest.Truncate)
	if r := query(t, s.Addr, "example.org.", dns.TypeMX, false, true); !r.Truncated || len(r.Answer) != 0 {
		t.Errorf("udp: truncated %v, %d answers", r.Truncated, len(r.Answer))
	}
	if r := query(t, s.Addr, "example.org.", dns.TypeMX, true, true); r.Truncated || len(r.Answer) != 1 {
		t.Errorf("tcp: truncated %v, %d answers", r.Truncated, len(r.Answer))
	}
	qs := s.Queries()
	if last := qs[len(qs)-1]; !last.TCP || last.Name != "example.org." || last.Type != dns.TypeMX || last.OPT == nil || !last.OPT.Do() {
		t.Errorf("last query %+v", last)
	}
	if qs[0].TCP {
		t.Errorf("first query %+v over tcp", qs[0])
	}

	s.SetFault("mx.example.org.", dnstest.Drop)
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("mx.example.org.", dns.TypeA)
	if _, _, err := c.Exchange(m, s.Addr); err == nil {
		t.Error("dropped query answered")
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Errorf("dropped query: %v, want a timeout", err)
	}
}

// An answer too large for UDP is truncated there and whole over TCP.
func TestTruncateBySize(t *testing.T) {
	var b strings.Builder
	for i := range 60 {
		b.WriteString("big TXT \"" + strings.Repeat("x", 50) + string(rune('a'+i%26)) + "\"\n")
	}
	s := dnstest.NewServer(t, dnstest.Zone{Origin: "example.org.", Records: b.String()})
	udp := query(t, s.Addr, "big.example.org.", dns.TypeTXT, false, false)
	tcp := query(t, s.Addr, "big.example.org.", dns.TypeTXT, true, false)
	if !udp.Truncated || len(udp.Answer) >= 60 || tcp.Truncated || len(tcp.Answer) != 60 {
		t.Errorf("udp: truncated %v with %d answers; tcp: truncated %v with %d", udp.Truncated, len(udp.Answer), tcp.Truncated, len(tcp.Answer))
	}
}

func TestZoneChanges(t *testing.T) {
	s := newServer(t)
	s.SetZone(t, dnstest.Zone{Origin: "Example.ORG.", Records: "mx A 127.0.0.9"})
	r := query(t, s.Addr, "mx.example.org.", dns.TypeA, false, true)
	if !slices.Equal(answers(r), []string{"mx.example.org. 300 IN A 127.0.0.9"}) || r.AuthenticatedData {
		t.Errorf("replaced zone: %q ad %v", answers(r), r.AuthenticatedData)
	}
	s.RemoveZone("example.org.")
	if r := query(t, s.Addr, "mx.example.org.", dns.TypeA, false, true); r.Rcode != dns.RcodeNameError {
		t.Errorf("removed zone: %v", r)
	}
	if r := query(t, s.Addr, "host.sub.example.org.", dns.TypeA, false, true); len(r.Answer) != 1 {
		t.Errorf("child zone gone with its parent: %v", r)
	}
}

// A CNAME loop ends the answer instead of running forever.
func TestCNAMELoop(t *testing.T) {
	s := dnstest.NewServer(t, dnstest.Zone{Origin: "example.org.", Records: "a CNAME b\nb CNAME a\n"})
	r := query(t, s.Addr, "a.example.org.", dns.TypeA, false, false)
	if len(r.Answer) != 2 || r.Rcode != dns.RcodeSuccess {
		t.Errorf("loop: %v", r)
	}
}

// Zone text with errors or records outside the zone fails the test.
func TestBadZone(t *testing.T) {
	for _, z := range []dnstest.Zone{
		{Origin: "example.org.", Records: "mx A not-an-address"},
		{Origin: "example.org.", Records: "mx.example.net. A 127.0.0.1"},
	} {
		ft := &fatalT{TB: t}
		func() {
			defer func() { recover() }()
			dnstest.NewServer(ft, z)
		}()
		if !ft.failed {
			t.Errorf("zone %q accepted", z.Records)
		}
	}
}

// fatalT records a Fatal instead of ending the test.
type fatalT struct {
	testing.TB
	failed bool
}

func (f *fatalT) Fatalf(string, ...any) { f.failed = true; panic(f) }
func (f *fatalT) Fatal(...any)          { f.failed = true; panic(f) }
func (f *fatalT) Helper()               {}
