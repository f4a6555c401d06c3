package direct

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/direct/directtest"
	"github.com/switchyard-mta/switchyard/sdk/dnsresolve"
	"github.com/switchyard-mta/switchyard/sdk/mtasts"
	"github.com/switchyard-mta/switchyard/sdk/smtpclient"
)

// env is a small Internet on loopback: each MX host has its own address
// 127.0.0.x, all receivers share one port.
type env struct {
	dns       *directtest.DNS
	port      int
	stsPort   int
	ca        *directtest.CA
	receivers map[string]*directtest.Receiver // By IP.
	engine    *Engine
	policies  *directtest.PolicyServer
	log       bytes.Buffer
}

const policyEnforce = "version: STSv1\nmode: enforce\nmx: mx.%s\nmax_age: 86400\n"

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{ca: directtest.NewCA(t), receivers: map[string]*directtest.Receiver{}}
	ips := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14", "127.0.0.15", "127.0.0.16"}
	port, ls := directtest.Listen(t, ips...)
	e.port = port
	self := directtest.NewCA(t).Issue(t, "other.test") // Unrelated to any name here.
	daneCert := (*directtest.CA)(nil).Issue(t, "mx.dane.test")
	badCert := (*directtest.CA)(nil).Issue(t, "mx.danebad.test")
	stsCert := e.ca.Issue(t, "mx.sts.test")
	// DANE-TA: the chain ends with the CA that a "2 1 1" record names.
	taCert := e.ca.Issue(t, "mx.daneta.test")
	taCert.Certificate = append(taCert.Certificate, e.ca.Cert.Raw)
	taWrong := e.ca.Issue(t, "elsewhere.test")
	taWrong.Certificate = append(taWrong.Certificate, e.ca.Cert.Raw)
	caTLSA := directtest.TLSA311(tls.Certificate{Leaf: e.ca.Cert})
	opts := map[string]directtest.ReceiverOptions{
		"127.0.0.14": {Cert: &taCert},
		"127.0.0.15": {Cert: &taWrong},
		"127.0.0.5":  {Cert: &daneCert},
		"127.0.0.6":  {Cert: &badCert},
		"127.0.0.8":  {Cert: &stsCert},
		"127.0.0.10": {Cert: &self, BrokenTLS: true},
		"127.0.0.11": {}, // No STARTTLS.
		"127.0.0.12": {Cert: &self, MailError: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "go away"}},
		"127.0.0.13": {Cert: &self, MailError: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "busy"}},
		// Says it is closing, and does not close: a session not to keep.
		"127.0.0.16": {Cert: &self, MailError: &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "closing"}},
	}
	for i, ip := range ips {
		o, ok := opts[ip]
		if !ok {
			o = directtest.ReceiverOptions{Cert: &self}
		}
		e.receivers[ip] = directtest.NewReceiver(t, ls[i], o)
	}
	stsPort, sl := directtest.Listen(t, "127.0.0.9")
	e.stsPort = stsPort
	e.policies = directtest.NewPolicyServer(t, sl[0], e.ca.Issue(t, "mta-sts.sts.test", "mta-sts.stsbad.test", "mta-sts.stscert.test", "mta-sts.ststesting.test", "mta-sts.both.test"))
	for _, d := range []string{"sts.test", "stsbad.test", "stscert.test", "both.test"} {
		e.policies.Set(d, fmt.Sprintf(policyEnforce, d))
	}
	e.policies.Set("ststesting.test", "version: STSv1\nmode: testing\nmx: mx.ststesting.test\nmax_age: 86400\n")

	tlsa := func(host, data string) string {
		return fmt.Sprintf("_%d._tcp.%s. TLSA 3 1 1 %s", port, host, data)
	}
	e.dns = directtest.NewDNS(t, []string{
		"example.org. MX 20 mx2.example.org.",
		"example.org. MX 10 mx1.example.org.",
		"mx1.example.org. A 127.0.0.2",
		"mx2.example.org. A 127.0.0.3",
		"fallback.test. MX 10 down.fallback.test.",
		"fallback.test. MX 20 mx2.example.org.",
		"down.fallback.test. A 127.0.0.20",
		"nullmx.test. MX 0 .",
		"mailperm.test. MX 10 mx.mailperm.test.",
		"mailperm.test. MX 20 mx2.example.org.",
		"mx.mailperm.test. A 127.0.0.12",
		"mailtemp.test. MX 10 mx.mailtemp.test.",
		"mailtemp.test. MX 20 mx2.example.org.",
		"mx.mailtemp.test. A 127.0.0.13",
		"noaddr.test. MX 10 mx.noaddr.test.",
		"implicit.test. A 127.0.0.4",
		"servfail.test. A 127.0.0.4",
		"dane.test. MX 10 mx.dane.test.",
		"mx.dane.test. A 127.0.0.5",
		tlsa("mx.dane.test", directtest.TLSA311(daneCert)),
		"danebad.test. MX 10 mx.danebad.test.",
		"mx.danebad.test. A 127.0.0.6",
		tlsa("mx.danebad.test", directtest.TLSA311(daneCert)),
		"unsigned.test. MX 10 mx.unsigned.test.",
		"mx.unsigned.test. A 127.0.0.7",
		tlsa("mx.unsigned.test", directtest.TLSA311(daneCert)),
		"sts.test. MX 10 mx.sts.test.",
		"mx.sts.test. A 127.0.0.8",
		"stsbad.test. MX 10 mx.sts.test.",
		"stscert.test. MX 10 mx.stscert.test.",
		"mx.stscert.test. A 127.0.0.7",
		"ststesting.test. MX 10 mx.ststesting.test.",
		"mx.ststesting.test. A 127.0.0.7",
		"broken.test. MX 10 mx.broken.test.",
		"mx.broken.test. A 127.0.0.10",
		// DANE needs the MX lookup and the host's addresses authentic too.
		"mxunsigned.test. MX 10 mx.danebad.test.",
		"halfsigned.test. MX 10 mx.halfsigned.test.",
		"mx.halfsigned.test. A 127.0.0.6",
		tlsa("mx.halfsigned.test", directtest.TLSA311(daneCert)),
		"tlsaunsigned.test. MX 10 mx.tlsaunsigned.test.",
		"mx.tlsaunsigned.test. A 127.0.0.7",
		tlsa("mx.tlsaunsigned.test", directtest.TLSA311(daneCert)),
		"tlsafail.test. MX 10 mx.tlsafail.test.",
		"mx.tlsafail.test. A 127.0.0.7",
		// Only unusable records (PKIX-EE): TLS required, not verified.
		"unusable.test. MX 10 mx.unusable.test.",
		"mx.unusable.test. A 127.0.0.7",
		fmt.Sprintf("_%d._tcp.mx.unusable.test. TLSA 1 1 1 %s", port, directtest.TLSA311(daneCert)),
		"notls.test. MX 10 mx.notls.test.",
		"mx.notls.test. A 127.0.0.11",
		fmt.Sprintf("_%d._tcp.mx.notls.test. TLSA 1 1 1 %s", port, directtest.TLSA311(daneCert)),
		"daneimplicit.test. A 127.0.0.5",
		tlsa("daneimplicit.test", directtest.TLSA311(daneCert)),
		"daneta.test. MX 10 mx.daneta.test.",
		"mx.daneta.test. A 127.0.0.14",
		fmt.Sprintf("_%d._tcp.mx.daneta.test. TLSA 2 1 1 %s", port, caTLSA),
		"danetaname.test. MX 10 mx.danetaname.test.",
		"mx.danetaname.test. A 127.0.0.15",
		fmt.Sprintf("_%d._tcp.mx.danetaname.test. TLSA 2 1 1 %s", port, caTLSA),
		// TLSA at the CNAME-expanded MX host, then at the original name.
		"cnamemx.test. MX 10 alias.cnamemx.test.",
		"alias.cnamemx.test. CNAME mx.dane.test.",
		"cnameorig.test. MX 10 alias.cnameorig.test.",
		"alias.cnameorig.test. CNAME target.cnameorig.test.",
		"target.cnameorig.test. A 127.0.0.6",
		tlsa("alias.cnameorig.test", directtest.TLSA311(badCert)),
		// DANE and an MTA-STS policy not listing the host: DANE wins.
		"both.test. MX 10 mx.dane.test.",
	}, "dane.test.", "mx.dane.test.", fmt.Sprintf("_%d._tcp.mx.dane.test.", port),
		"danebad.test.", "mx.danebad.test.", fmt.Sprintf("_%d._tcp.mx.danebad.test.", port),
		"halfsigned.test.", fmt.Sprintf("_%d._tcp.mx.halfsigned.test.", port), "tlsafail.test.", "mx.tlsafail.test.", "tlsaunsigned.test.", "mx.tlsaunsigned.test.",
		"unusable.test.", "mx.unusable.test.", fmt.Sprintf("_%d._tcp.mx.unusable.test.", port),
		"notls.test.", "mx.notls.test.", fmt.Sprintf("_%d._tcp.mx.notls.test.", port), "both.test.",
		"daneimplicit.test.", fmt.Sprintf("_%d._tcp.daneimplicit.test.", port),
		"cnamemx.test.", "alias.cnamemx.test.", "cnameorig.test.", "alias.cnameorig.test.", "target.cnameorig.test.",
		fmt.Sprintf("_%d._tcp.alias.cnameorig.test.", port),
		"daneta.test.", "mx.daneta.test.", fmt.Sprintf("_%d._tcp.mx.daneta.test.", port),
		"danetaname.test.", "mx.danetaname.test.", fmt.Sprintf("_%d._tcp.mx.danetaname.test.", port))
	e.dns.ServFail(fmt.Sprintf("_%d._tcp.mx.tlsafail.test.", port))
	for _, d := range []string{"sts.test", "stsbad.test", "stscert.test", "ststesting.test", "both.test"} {
		e.dns.Add(t, fmt.Sprintf(`_mta-sts.%s. TXT "v=STSv1; id=1"`, d), fmt.Sprintf("mta-sts.%s. A 127.0.0.9", d))
	}
	e.dns.ServFail("servfail.test.")

	r, err := dnsresolve.New(e.dns.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Timeout = time.Second
	log := slog.New(slog.NewTextHandler(&e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.engine = New(Config{
		Resolver:    r,
		Port:        port,
		EHLO:        "sender.test",
		Timeouts:    smtpclient.Timeouts{Connect: 2 * time.Second, Command: 5 * time.Second},
		RootCAs:     e.ca.Pool,
		MTASTS:      &mtasts.Cache{Dir: t.TempDir(), Log: log},
		FetchPolicy: PolicyFetcher(r, nil, e.ca.Pool, stsPort),
		Log:         log,
	})
	return e
}

func (e *env) deliver(t *testing.T, opts sdk.DeliverOptions, rcpts ...string) *sdk.DeliverResult {
	t.Helper()
	req := &sdk.DeliverRequest{Instance: "direct", QueueID: "q1", Attempt: 1, From: "a@sender.test", Options: opts,
		Message: strings.NewReader("Subject: hi\r\n\r\nbody\r\n")}
	for _, r := range rcpts {
		req.Recipients = append(req.Recipients, sdk.Recipient{Address: r})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := e.engine.Deliver(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Recipients) != len(rcpts) {
		t.Fatalf("%d results for %d recipients", len(res.Recipients), len(rcpts))
	}
	return res
}

func TestDeliver(t *testing.T) {
	e := newEnv(t)
	type want struct {
		status sdk.Status
		enh    string
		host   string
		ip     string // Also the receiver that must have the message.
		verif  sdk.Verification
	}
	tests := []struct {
		name  string
		rcpt  string
		opts  sdk.DeliverOptions
		want  want
		empty []string // Receivers that must have received nothing.
	}{
		{"mx preference", "u@example.org", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "mx1.example.org", "127.0.0.2", sdk.VerifyOpportunistic}, []string{"127.0.0.3"}},
		{"fallback after connection refused", "u@fallback.test", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "mx2.example.org", "127.0.0.3", sdk.VerifyOpportunistic}, nil},
		{"implicit mx", "u@implicit.test", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "implicit.test", "127.0.0.4", sdk.VerifyOpportunistic}, nil},
		{"address literal", "u@[127.0.0.4]", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "[127.0.0.4]", "127.0.0.4", sdk.VerifyOpportunistic}, nil},
		{"5xx ends the host search", "u@mailperm.test", sdk.DeliverOptions{}, want{sdk.StatusPermanent, "5.7.1", "", "", sdk.VerifyNone}, []string{"127.0.0.3"}},
		{"4xx tries the next host", "u@mailtemp.test", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "mx2.example.org", "127.0.0.3", sdk.VerifyOpportunistic}, nil},
		{"mx host without address", "u@noaddr.test", sdk.DeliverOptions{}, want{sdk.StatusPermanent, "5.4.4", "", "", sdk.VerifyNone}, nil},
		{"null mx", "u@nullmx.test", sdk.DeliverOptions{}, want{sdk.StatusPermanent, "5.1.10", "", "", sdk.VerifyNone}, nil},
		{"nxdomain", "u@nowhere.test", sdk.DeliverOptions{}, want{sdk.StatusPermanent, "5.1.2", "", "", sdk.VerifyNone}, nil},
		{"servfail", "u@servfail.test", sdk.DeliverOptions{}, want{sdk.StatusTemporary, "4.4.3", "", "", sdk.VerifyNone}, nil},
		{"dane-ee match", "u@dane.test", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "mx.dane.test", "127.0.0.5", sdk.VerifyDANE}, nil},
		{"dane with implicit mx", "u@daneimplicit.test", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "daneimplicit.test", "127.0.0.5", sdk.VerifyDANE}, nil},
		{"dane at cname-expanded host", "u@cnamemx.test", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "alias.cnamemx.test", "127.0.0.5", sdk.VerifyDANE}, nil},
		{"dane at original host name", "u@cnameorig.test", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "alias.cnameorig.test", "127.0.0.6", sdk.VerifyDANE}, nil},
		{"dane-ta with allowed name", "u@daneta.test", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "mx.daneta.test", "127.0.0.14", sdk.VerifyDANE}, nil},
		{"dane-ta with other name", "u@danetaname.test", sdk.DeliverOptions{}, want{sdk.StatusTemporary, "4.7.5", "", "", sdk.VerifyNone}, []string{"127.0.0.15"}},
		{"dane mismatch, no plaintext", "u@danebad.test", sdk.DeliverOptions{}, want{sdk.StatusTemporary, "4.7.5", "", "", sdk.VerifyNone}, []string{"127.0.0.6"}},
		{"tlsa ignored after unsigned mx lookup", "u@mxunsigned.test", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "mx.danebad.test", "127.0.0.6", sdk.VerifyOpportunistic}, nil},
		{"tlsa ignored for unsigned address", "u@halfsigned.test", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "mx.halfsigned.test", "127.0.0.6", sdk.VerifyOpportunistic}, nil},
		{"unsigned tlsa ignored for signed host", "u@tlsaunsigned.test", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "mx.tlsaunsigned.test", "127.0.0.7", sdk.VerifyOpportunistic}, nil},
		{"tlsa lookup failure", "u@tlsafail.test", sdk.DeliverOptions{}, want{sdk.StatusTemporary, "4.7.5", "", "", sdk.VerifyNone}, []string{"127.0.0.7"}},
		{"unusable tlsa: tls unverified", "u@unusable.test", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "mx.unusable.test", "127.0.0.7", sdk.VerifyOpportunistic}, nil},
		{"unusable tlsa: no plaintext", "u@notls.test", sdk.DeliverOptions{}, want{sdk.StatusTemporary, "4.7.5", "", "", sdk.VerifyNone}, []string{"127.0.0.11"}},
		{"dane before mta-sts", "u@both.test", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "mx.dane.test", "127.0.0.5", sdk.VerifyDANE}, nil},
		{"no tls offered", "u@[127.0.0.11]", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "[127.0.0.11]", "127.0.0.11", sdk.VerifyNone}, nil},
		{"tlsa in unsigned zone ignored", "u@unsigned.test", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "mx.unsigned.test", "127.0.0.7", sdk.VerifyOpportunistic}, nil},
		{"mta-sts enforce", "u@sts.test", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "mx.sts.test", "127.0.0.8", sdk.VerifyMTASTS}, nil},
		{"mta-sts enforce, mx not listed", "u@stsbad.test", sdk.DeliverOptions{}, want{sdk.StatusTemporary, "4.7.5", "", "", sdk.VerifyNone}, nil},
		{"mta-sts enforce, bad certificate", "u@stscert.test", sdk.DeliverOptions{}, want{sdk.StatusTemporary, "4.7.5", "", "", sdk.VerifyNone}, nil},
		{"mta-sts testing delivers", "u@ststesting.test", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "mx.ststesting.test", "127.0.0.7", sdk.VerifyOpportunistic}, nil},
		{"starttls failure falls back to plaintext", "u@broken.test", sdk.DeliverOptions{}, want{sdk.StatusDelivered, "", "mx.broken.test", "127.0.0.10", sdk.VerifyNone}, nil},
		{"requiretls refused without verified tls", "u@example.org", sdk.DeliverOptions{RequireTLS: true}, want{sdk.StatusPermanent, "5.7.10", "", "", sdk.VerifyNone}, nil},
		{"requiretls over dane", "u@dane.test", sdk.DeliverOptions{RequireTLS: true}, want{sdk.StatusDelivered, "", "mx.dane.test", "127.0.0.5", sdk.VerifyDANE}, nil},
		{"requiretls over mta-sts", "u@sts.test", sdk.DeliverOptions{RequireTLS: true}, want{sdk.StatusDelivered, "", "mx.sts.test", "127.0.0.8", sdk.VerifyMTASTS}, nil},
	}
	reasons := map[string]string{
		"dane mismatch, no plaintext":      "dane: no tlsa record matches",
		"mta-sts enforce, bad certificate": "x509: certificate is valid for other.test",
		"mta-sts enforce, mx not listed":   "not allowed by the MTA-STS policy",
		"tlsa lookup failure":              "TLSA lookup",
		"dane-ta with other name":          "dane: certificate does not match the allowed names",
		"unusable tlsa: no plaintext":      "does not offer STARTTLS",
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := map[string]int{}
			for ip, rv := range e.receivers {
				before[ip] = len(rv.Messages())
			}
			rcpt := strings.Replace(tc.rcpt, "u@", strings.ReplaceAll(tc.name, " ", "-")[:4]+"@", 1)
			res := e.deliver(t, tc.opts, rcpt)
			r := res.Recipients[0]
			w := tc.want
			if r.Status != w.status || r.EnhancedCode != w.enh && w.enh != "" {
				t.Fatalf("got %v %d %s %q, want %v %s\nlog:\n%s", r.Status, r.Code, r.EnhancedCode, r.Text, w.status, w.enh, e.log.String())
			}
			if sub := reasons[tc.name]; !strings.Contains(r.Text, sub) {
				t.Errorf("reason %q does not say %q", r.Text, sub)
			}
			if w.status == sdk.StatusDelivered {
				if r.RemoteHost != w.host || r.RemoteIP != w.ip || r.TLS.Verification != w.verif || (w.verif == sdk.VerifyNone) != (r.TLS.Version == "") {
					t.Errorf("delivered via %s %s %v, want %s %s %v", r.RemoteHost, r.RemoteIP, r.TLS.Verification, w.host, w.ip, w.verif)
				}
				msgs := e.receivers[w.ip].Messages()
				if len(msgs) != before[w.ip]+1 {
					t.Fatalf("receiver %s has %d messages, want %d", w.ip, len(msgs), before[w.ip]+1)
				}
				m := msgs[len(msgs)-1]
				if m.TLS != (w.verif != sdk.VerifyNone) || len(m.To) != 1 || m.To[0] != rcpt || !strings.Contains(m.Data, "body") {
					t.Errorf("received %+v", m)
				}
			}
			for _, ip := range tc.empty {
				if n := len(e.receivers[ip].Messages()); n != before[ip] {
					t.Errorf("receiver %s got a message", ip)
				}
			}
		})
	}
}

// TestRecipients covers per-recipient results, several domains in one
// request and one transaction per host.
func TestRecipients(t *testing.T) {
	e := newEnv(t)
	res := e.deliver(t, sdk.DeliverOptions{}, "a@example.org", "reject@example.org", "tempfail@example.org", "b@example.org", "c@implicit.test", "d@nullmx.test", "bad")
	want := []sdk.Status{sdk.StatusDelivered, sdk.StatusPermanent, sdk.StatusTemporary, sdk.StatusDelivered, sdk.StatusDelivered, sdk.StatusPermanent, sdk.StatusPermanent}
	for i, r := range res.Recipients {
		if r.Status != want[i] {
			t.Errorf("%s: %v %d %s %s, want %v", r.Address, r.Status, r.Code, r.EnhancedCode, r.Text, want[i])
		}
	}
	if r := res.Recipients[1]; r.Code != 550 || r.EnhancedCode != "5.1.1" || r.Stage != sdk.StageRcpt {
		t.Errorf("reject: %d %s at %v, want 550 5.1.1 at RCPT", r.Code, r.EnhancedCode, r.Stage)
	}
	if r := res.Recipients[0]; r.Stage != sdk.StageData {
		t.Errorf("delivered at %v, want DATA", r.Stage)
	}
	msgs := e.receivers["127.0.0.2"].Messages()
	if len(msgs) != 1 || strings.Join(msgs[0].To, ",") != "a@example.org,b@example.org" {
		t.Errorf("mx1 got %+v, want one message to a and b", msgs)
	}
	if msgs := e.receivers["127.0.0.4"].Messages(); len(msgs) != 1 {
		t.Errorf("implicit.test got %d messages", len(msgs))
	}
}

func TestAlternate(t *testing.T) {
	a := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, x := range s {
			out = append(out, netip.MustParseAddr(x))
		}
		return out
	}
	ips := a("192.0.2.1", "192.0.2.2", "2001:db8::1")
	for _, tc := range []struct {
		attempt int
		want    []netip.Addr
	}{
		{1, a("2001:db8::1", "192.0.2.1", "192.0.2.2")},
		{2, a("192.0.2.1", "2001:db8::1", "192.0.2.2")},
		{3, a("2001:db8::1", "192.0.2.1", "192.0.2.2")},
	} {
		if got := alternate(ips, tc.attempt); !slices.Equal(got, tc.want) {
			t.Errorf("attempt %d: %v, want %v", tc.attempt, got, tc.want)
		}
	}
	if got := alternate(a("192.0.2.1", "192.0.2.2"), 1); !slices.Equal(got, a("192.0.2.1", "192.0.2.2")) {
		t.Errorf("single family reordered: %v", got)
	}
}

// TestMTASTSCache: once fetched, an enforced policy keeps applying when the
// record disappears or a new policy cannot be fetched (RFC 8461 §5.1, §10.2).
func TestMTASTSCache(t *testing.T) {
	e := newEnv(t)
	check := func(step string, want sdk.Status) {
		t.Helper()
		r := e.deliver(t, sdk.DeliverOptions{}, "u@stscert.test").Recipients[0]
		if r.Status != want {
			t.Fatalf("%s: %v %s, want %v", step, r.Status, r.Text, want)
		}
	}
	check("fetched policy", sdk.StatusTemporary) // The certificate is not for mx.stscert.test.
	e.policies.Set("stscert.test", "not a policy")
	e.dns.Remove("_mta-sts.stscert.test.")
	e.dns.Add(t, `_mta-sts.stscert.test. TXT "v=STSv1; id=2"`)
	check("new id, fetch fails", sdk.StatusTemporary)
	e.dns.Remove("_mta-sts.stscert.test.")
	check("record gone", sdk.StatusTemporary)
	// Without the cache, the same domain gets opportunistic TLS.
	e.engine.cfg.MTASTS = &mtasts.Cache{Dir: t.TempDir()}
	check("no cache", sdk.StatusDelivered)
}

// recordingDialer records the addresses it dials, as a proxy dialer would
// see them.
type recordingDialer struct {
	mu    sync.Mutex
	addrs []string
}

func (r *recordingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	r.mu.Lock()
	r.addrs = append(r.addrs, addr)
	r.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// TestDialer: every SMTP connection goes through Config.Dialer, in MX order.
func TestDialer(t *testing.T) {
	e := newEnv(t)
	rd := &recordingDialer{}
	e.engine.cfg.Dialer = rd
	if r := e.deliver(t, sdk.DeliverOptions{}, "u@fallback.test").Recipients[0]; r.Status != sdk.StatusDelivered {
		t.Fatalf("%v %s", r.Status, r.Text)
	}
	p := strconv.Itoa(e.port)
	want := []string{"127.0.0.20:" + p, "127.0.0.3:" + p}
	if !slices.Equal(rd.addrs, want) {
		t.Errorf("dialed %v, want %v", rd.addrs, want)
	}
}

// connDialer dials as net.Dialer does and keeps the connections.
type connDialer struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (c *connDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err == nil {
		c.mu.Lock()
		c.conns = append(c.conns, conn)
		c.mu.Unlock()
	}
	return conn, err
}

func (c *connDialer) dialed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.conns)
}

// TestReuse: a session is reused for the next delivery to the same address
// protected the same way, for any domain, and only for that.
func TestReuse(t *testing.T) {
	e := newEnv(t)
	e.dns.Add(t, "shared.test. MX 10 mx1.example.org.", "closing.test. MX 10 mx.closing.test.", "mx.closing.test. A 127.0.0.16",
		"plain.test. MX 10 mx.plain.test.", "mx.plain.test. A 127.0.0.5")
	cd := &connDialer{}
	cfg := e.engine.cfg
	cfg.Dialer, cfg.IdleTimeout = cd, time.Minute
	e.engine = New(cfg)
	defer e.engine.Close()

	steps := []struct {
		rcpt   string
		verif  sdk.Verification
		dialed int // In all, after the delivery.
	}{
		{"a@example.org", sdk.VerifyOpportunistic, 1},
		{"b@example.org", sdk.VerifyOpportunistic, 1},
		{"c@shared.test", sdk.VerifyOpportunistic, 1},        // Another domain, the same MX host.
		{"reject-d@shared.test", sdk.VerifyOpportunistic, 1}, // A refused recipient keeps the session.
		{"e@shared.test", sdk.VerifyOpportunistic, 1},
		{"f@dane.test", sdk.VerifyDANE, 2},
		{"g@both.test", sdk.VerifyDANE, 2},           // The same host and TLSA records.
		{"h@cnamemx.test", sdk.VerifyDANE, 2},        // Through a CNAME to it.
		{"i@plain.test", sdk.VerifyOpportunistic, 3}, // The same address unsigned: not the DANE session.
		{"j@dane.test", sdk.VerifyDANE, 3},
		{"k@[127.0.0.11]", sdk.VerifyNone, 4}, // No STARTTLS offered: plaintext, kept.
		{"l@[127.0.0.11]", sdk.VerifyNone, 4},
	}
	for _, s := range steps {
		r := e.deliver(t, sdk.DeliverOptions{}, s.rcpt).Recipients[0]
		want := sdk.StatusDelivered
		if strings.HasPrefix(s.rcpt, "reject") {
			want = sdk.StatusPermanent
		}
		if r.Status != want || r.TLS.Verification != s.verif && want == sdk.StatusDelivered {
			t.Fatalf("%s: %v %v %s, want %v %v", s.rcpt, r.Status, r.TLS.Verification, r.Text, want, s.verif)
		}
		if n := cd.dialed(); n != s.dialed {
			t.Fatalf("after %s: %d connections dialed, want %d", s.rcpt, n, s.dialed)
		}
	}
	if n := len(e.receivers["127.0.0.2"].Messages()); n != 4 {
		t.Errorf("mx1 got %d messages over the reused session, want 4", n)
	}

	// A session the server dropped while idle fails RSET: a new one is
	// dialed, and the delivery succeeds.
	cd.mu.Lock()
	for _, c := range cd.conns {
		c.Close()
	}
	cd.mu.Unlock()
	if r := e.deliver(t, sdk.DeliverOptions{}, "m@example.org").Recipients[0]; r.Status != sdk.StatusDelivered {
		t.Fatalf("after a dropped session: %v %s", r.Status, r.Text)
	}
	if n := cd.dialed(); n != 5 {
		t.Fatalf("%d connections dialed, want 5: one new after the dropped ones", n)
	}

	// Plaintext after a failed handshake is not kept: each delivery tries
	// TLS again.
	for _, rcpt := range []string{"n@broken.test", "o@broken.test"} {
		if r := e.deliver(t, sdk.DeliverOptions{}, rcpt).Recipients[0]; r.Status != sdk.StatusDelivered || r.TLS.Verification != sdk.VerifyNone {
			t.Fatalf("%s: %v %v %s", rcpt, r.Status, r.TLS.Verification, r.Text)
		}
	}
	if n := cd.dialed(); n != 9 {
		t.Fatalf("%d connections dialed, want 9: a handshake and a plaintext session per delivery", n)
	}

	// A 421 reply ends the session's use (RFC 5321 §3.8), even if the
	// server keeps the connection open.
	for _, rcpt := range []string{"p@closing.test", "q@closing.test"} {
		if r := e.deliver(t, sdk.DeliverOptions{}, rcpt).Recipients[0]; r.Status != sdk.StatusTemporary || r.Code != 421 {
			t.Fatalf("%s: %v %d %s, want a temporary failure with 421", rcpt, r.Status, r.Code, r.Text)
		}
	}
	if n := cd.dialed(); n != 11 {
		t.Fatalf("%d connections dialed, want 11: one per delivery after a 421", n)
	}
}

// TestReuseIdleTimeout: a session idle past the timeout is ended, and the
// next delivery dials anew; with no timeout, nothing is reused.
func TestReuseIdleTimeout(t *testing.T) {
	e := newEnv(t)
	cd := &connDialer{}
	cfg := e.engine.cfg
	cfg.Dialer, cfg.IdleTimeout = cd, 100*time.Millisecond
	e.engine = New(cfg)
	defer e.engine.Close()
	e.deliver(t, sdk.DeliverOptions{}, "a@example.org")
	if e.engine.cache.Len() != 1 {
		t.Fatalf("%d sessions kept, want 1", e.engine.cache.Len())
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.engine.cache.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("idle session not ended after its timeout")
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.deliver(t, sdk.DeliverOptions{}, "b@example.org")
	if n := cd.dialed(); n != 2 {
		t.Fatalf("%d connections dialed, want 2", n)
	}

	cfg.IdleTimeout = 0
	e.engine = New(cfg)
	e.deliver(t, sdk.DeliverOptions{}, "c@example.org")
	e.deliver(t, sdk.DeliverOptions{}, "d@example.org")
	if n := cd.dialed(); n != 4 {
		t.Fatalf("%d connections dialed without reuse, want 4", n)
	}
}
