package policymsgauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/dnstest"
	"github.com/switchyard-mta/switchyard/sdk/hostrpc"
	"github.com/switchyard-mta/switchyard/sdk/plugintest"
)

const hostname = "mx.example.org"

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Signing keys, made once: RSA key generation is slow.
var (
	keysOnce sync.Once
	edKey    ed25519.PrivateKey
	rsaKey   *rsa.PrivateKey
)

func keys(t testing.TB) {
	keysOnce.Do(func() {
		var err error
		if _, edKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
}

// txt is a TXT record's data in zone-file syntax: strings of at most 255
// octets (RFC 1035 §3.3.14).
func txt(s string) string {
	var parts []string
	for len(s) > 255 {
		parts = append(parts, `"`+s[:255]+`"`)
		s = s[255:]
	}
	return strings.Join(append(parts, `"`+s+`"`), " ")
}

// zones is the DNS of the tests. The client is 192.0.2.1, the host
// mail.example.com, unless a test says otherwise.
func zones(t testing.TB) []dnstest.Zone {
	keys(t)
	rsaPub, err := x509.MarshalPKIXPublicKey(rsaKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	edRecord := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(edKey.Public().(ed25519.PublicKey))
	rsaRecord := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(rsaPub)
	return []dnstest.Zone{
		{Origin: "example.com.", Signed: true, Records: `
			@ TXT "v=spf1 ip4:192.0.2.1 -all"
			_dmarc TXT "v=DMARC1; p=reject; sp=quarantine; rua=mailto:dmarc@example.com"
			ed._domainkey TXT ` + txt(edRecord) + `
			rsa._domainkey TXT ` + txt(rsaRecord) + `
			tmp._domainkey TXT ` + txt(edRecord) + `
			mail A 192.0.2.1
			mail TXT "v=spf1 a -all"
			sub TXT "v=spf1 ip4:192.0.2.1 -all"
			tempspf TXT "v=spf1 -all"
			_dmarc.dmarctemp TXT "v=DMARC1; p=reject"
			drop TXT "v=spf1 -all"
		`},
		{Origin: "example.net.", Records: `
			pass TXT "v=spf1 ip4:192.0.2.0/24 -all"
			fail TXT "v=spf1 -all"
			softfail TXT "v=spf1 ~all"
			neutral TXT "v=spf1 ?all"
			perm TXT "v=spf1 bogus:x -all"
			none A 192.0.2.9
			temp TXT "v=spf1 -all"
			ptr TXT "v=spf1 ptr:example.com -all"
			liar A 192.0.2.99
			_dmarc.quarantine TXT "v=DMARC1; p=quarantine"
			_dmarc.monitor TXT "v=DMARC1; p=none"
			_dmarc.pctq TXT "v=DMARC1; p=quarantine; pct=0"
			_dmarc.pctr TXT "v=DMARC1; p=reject; pct=0"
			_dmarc.pct50 TXT "v=DMARC1; p=reject; pct=50"
			_dmarc.twice TXT "v=DMARC1; p=reject"
			_dmarc.twice TXT "v=DMARC1; p=none"
			_dmarc.bad TXT "v=DMARC1; p=bogus"
		`},
		{Origin: "relay.example.", Records: `
			@ TXT "v=spf1 ip4:192.0.2.0/24 -all"
		`},
		{Origin: "strict.example.", Records: `
			_dmarc TXT "v=DMARC1; p=reject; adkim=s; aspf=s"
			sub TXT "v=spf1 ip4:192.0.2.1 -all"
		`},
		{Origin: "2.0.192.in-addr.arpa.", Records: `
			1 PTR mail.example.com.
			2 PTR liar.example.net.
			4 PTR temp.example.net.
		`},
	}
}

type fixture struct {
	c    hostrpc.Client
	ck   *checker
	dns  *dnstest.Server
	logs *plugintest.LogBuffer
}

// setup serves the plugin over real gRPC and configures it as the core
// does: the plugin, then the instance "msgauth" with table (and the
// test resolver).
func setup(t testing.TB, table map[string]any) *fixture {
	t.Helper()
	s := dnstest.NewServer(t, zones(t)...)
	s.SetFault("temp.example.net.", dnstest.ServFail)
	s.SetFault("tempspf.example.com.", dnstest.ServFail)
	s.SetFault("_dmarc.dmarctemp.example.com.", dnstest.ServFail)
	s.SetFault("tmp._domainkey.example.com.", dnstest.ServFail)
	s.SetFault("drop.example.com.", dnstest.Drop)
	logs := &plugintest.LogBuffer{}
	ck := newChecker(slog.New(slog.NewJSONHandler(logs, nil)))
	ck.percent = func() int { return 50 }
	c := plugintest.Connect(t, newPlugin(ck), &plugintest.Host{})
	f := &fixture{c: c, ck: ck, dns: s, logs: logs}
	if err := c.Configure(testCtx(t), &sdk.Configuration{Kind: sdk.KindPlugin, Instance: "policy-msgauth", KeyPath: "plugins.policy-msgauth.config", Hostname: hostname}); err != nil {
		t.Fatalf("configure plugin: %v", err)
	}
	f.configure(t, "msgauth", table)
	return f
}

func (f *fixture) configure(t testing.TB, instance string, table map[string]any) {
	t.Helper()
	tbl := map[string]any{"resolver": f.dns.Addr, "timeout": "2s", "log_checks": true}
	for k, v := range table {
		tbl[k] = v
	}
	err := f.c.Configure(testCtx(t), &sdk.Configuration{Kind: sdk.KindPolicy, Instance: instance, KeyPath: "policies." + instance + ".config", Table: tbl, Hostname: hostname})
	if err != nil {
		t.Fatalf("configure %s: %v", instance, err)
	}
}

// envelope is the SMTP side of a message.
type envelope struct {
	instance string // Default "msgauth".
	ip       string // Default 192.0.2.1.
	helo     string // Default mail.example.com.
	from     string // MAIL FROM.
}

func (f *fixture) check(t *testing.T, env envelope, msg string) (sdk.Verdict, []parsedResult) {
	t.Helper()
	if env.instance == "" {
		env.instance = "msgauth"
	}
	if env.ip == "" {
		env.ip = "192.0.2.1"
	}
	if env.helo == "" {
		env.helo = "mail.example.com"
	}
	v, err := f.c.Checker().Check(testCtx(t), &sdk.CheckRequest{
		Instance:   env.instance,
		Stage:      sdk.StageData,
		Conn:       sdk.ConnInfo{Protocol: "smtp", Listener: "mx", RemoteAddr: env.ip + ":40000", LocalAddr: "192.0.2.25:25"},
		Helo:       env.helo,
		From:       env.from,
		Recipients: []string{"rcpt@example.org"},
		Size:       int64(len(msg)),
		Message:    strings.NewReader(msg),
	})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if len(v.PrependHeaders) != 1 {
		t.Fatalf("prepended %q, want one field", v.PrependHeaders)
	}
	h := v.PrependHeaders[0]
	id, results, err := parseAR(h)
	if err != nil {
		t.Fatalf("header field: %v\n%s", err, h)
	}
	if id != hostname {
		t.Errorf("authserv-id %q", id)
	}
	for _, l := range strings.Split(strings.TrimSuffix(h, "\r\n"), "\r\n") {
		if len(l) >= 78 {
			t.Errorf("line of %d characters: %q", len(l), l)
		}
	}
	return v, results
}

// find returns the results of method as "value prop=v ...", props in the
// order given.
func find(rs []parsedResult, method string, props ...string) []string {
	var out []string
	for _, r := range rs {
		if r.method != method {
			continue
		}
		s := r.value
		for _, p := range props {
			if v, ok := r.props[p]; ok {
				s += " " + p + "=" + v
			}
		}
		out = append(out, s)
	}
	return out
}

func want(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: %q, want %q", what, got, want)
	}
}

// message is a plain message from the author address.
func message(from string) string {
	return "From: Author <" + from + ">\r\n" +
		"To: rcpt@example.org\r\n" +
		"Subject: test\r\n" +
		"Date: Mon, 02 Jan 2026 15:04:05 +0000\r\n" +
		"Message-ID: <1@example.com>\r\n" +
		"\r\n" +
		"Hello.\r\n"
}

// sign prepends a DKIM-Signature of domain and selector with key.
func sign(t testing.TB, msg, domain, selector string, key crypto.Signer) string {
	t.Helper()
	var b bytes.Buffer
	err := dkim.Sign(&b, strings.NewReader(msg), &dkim.SignOptions{
		Domain: domain, Selector: selector, Signer: key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
		HeaderKeys: []string{"From", "To", "Subject", "Date", "Message-ID"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestDescribe(t *testing.T) {
	f := setup(t, nil)
	d, err := f.c.Describe(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "policy-msgauth" || d.Policy == nil || !slices.Equal(d.Policy.Stages, []sdk.Stage{sdk.StageData}) || d.Policy.Body != sdk.BodyFull {
		t.Errorf("description %+v, policy %+v", d, d.Policy)
	}
}

func TestSPF(t *testing.T) {
	f := setup(t, nil)
	for _, tc := range []struct {
		env      envelope
		mailfrom string
		helo     string
	}{
		{envelope{from: "bounce@pass.example.net"}, "pass smtp.mailfrom=pass.example.net", "pass smtp.helo=mail.example.com"},
		{envelope{from: "bounce@Pass.Example.NET"}, "pass smtp.mailfrom=pass.example.net", "pass smtp.helo=mail.example.com"},
		{envelope{from: "bounce@fail.example.net"}, "fail smtp.mailfrom=fail.example.net", "pass smtp.helo=mail.example.com"},
		{envelope{from: "bounce@softfail.example.net"}, "softfail smtp.mailfrom=softfail.example.net", "pass smtp.helo=mail.example.com"},
		{envelope{from: "bounce@neutral.example.net"}, "neutral smtp.mailfrom=neutral.example.net", "pass smtp.helo=mail.example.com"},
		{envelope{from: "bounce@none.example.net"}, "none smtp.mailfrom=none.example.net", "pass smtp.helo=mail.example.com"},
		{envelope{from: "bounce@missing.example.net"}, "none smtp.mailfrom=missing.example.net", "pass smtp.helo=mail.example.com"},
		{envelope{from: "bounce@perm.example.net"}, "permerror smtp.mailfrom=perm.example.net", "pass smtp.helo=mail.example.com"},
		{envelope{from: "bounce@temp.example.net"}, "temperror smtp.mailfrom=temp.example.net", "pass smtp.helo=mail.example.com"},
		// The "ptr" mechanism: 192.0.2.1 is mail.example.com, confirmed.
		{envelope{from: "bounce@ptr.example.net"}, "pass smtp.mailfrom=ptr.example.net", "pass smtp.helo=mail.example.com"},
		{envelope{from: "bounce@ptr.example.net", ip: "192.0.2.2", helo: "liar.example.net"}, "fail smtp.mailfrom=ptr.example.net", "none smtp.helo=liar.example.net"},
		// Another client: the HELO's record fails it.
		{envelope{from: "bounce@pass.example.net", ip: "192.0.2.7"}, "pass smtp.mailfrom=pass.example.net", "fail smtp.helo=mail.example.com"},
		// The null reverse-path is postmaster@HELO (RFC 7208 §2.4).
		{envelope{from: ""}, "pass smtp.mailfrom=postmaster@mail.example.com", "pass smtp.helo=mail.example.com"},
		{envelope{from: "", ip: "192.0.2.7"}, "fail smtp.mailfrom=postmaster@mail.example.com", "fail smtp.helo=mail.example.com"},
		// Not domains SPF can evaluate (RFC 7208 §4.3).
		{envelope{from: "", helo: "[192.0.2.1]"}, "none smtp.mailfrom=postmaster@[192.0.2.1]", "none smtp.helo=[192.0.2.1]"},
		{envelope{from: "bounce@localhost", helo: "localhost"}, "none smtp.mailfrom=localhost", "none smtp.helo=localhost"},
		// IPv6 client, SPF for IPv4 only.
		{envelope{from: "bounce@pass.example.net", ip: "[2001:db8::1]"}, "fail smtp.mailfrom=pass.example.net", "fail smtp.helo=mail.example.com"},
	} {
		_, rs := f.check(t, tc.env, message("a@example.net"))
		spf := find(rs, "spf", "smtp.mailfrom", "smtp.helo")
		want(t, fmt.Sprintf("%+v", tc.env), spf, tc.mailfrom, tc.helo)
	}
}

func TestSPFTimeout(t *testing.T) {
	f := setup(t, map[string]any{"timeout": "300ms"})
	start := time.Now()
	v, rs := f.check(t, envelope{from: "bounce@drop.example.com"}, message("a@example.com"))
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("check took %v with a 300ms timeout", d)
	}
	want(t, "spf", find(rs, "spf", "smtp.mailfrom"), "temperror smtp.mailfrom=drop.example.com", "pass")
	// Aligned with the author and not verified: never a reject.
	want(t, "dmarc", find(rs, "dmarc"), "temperror")
	if v.Action != sdk.ActionContinue {
		t.Errorf("verdict %+v", v)
	}
}

func TestDKIM(t *testing.T) {
	keys(t)
	f := setup(t, nil)
	msg := message("a@example.com")
	ed := sign(t, msg, "example.com", "ed", edKey)
	rsa := sign(t, msg, "example.com", "rsa", rsaKey)
	both := sign(t, ed, "example.com", "rsa", rsaKey)
	env := envelope{from: "bounce@pass.example.net"} // SPF passes, not aligned.
	props := []string{"header.d", "header.s", "header.a"}
	for _, tc := range []struct {
		name, msg string
		want      []string
		dmarc     string
	}{
		{"ed25519", ed, []string{"pass header.d=example.com header.s=ed header.a=ed25519-sha256"}, "pass"},
		{"rsa", rsa, []string{"pass header.d=example.com header.s=rsa header.a=rsa-sha256"}, "pass"},
		{"dual", both, []string{
			"pass header.d=example.com header.s=rsa header.a=rsa-sha256",
			"pass header.d=example.com header.s=ed header.a=ed25519-sha256",
		}, "pass"},
		{"body changed", strings.Replace(ed, "Hello.", "Hello!", 1), []string{"fail header.d=example.com header.s=ed header.a=ed25519-sha256"}, "fail"},
		{"header changed", strings.Replace(rsa, "Subject: test", "Subject: tset", 1), []string{"fail header.d=example.com header.s=rsa header.a=rsa-sha256"}, "fail"},
		{"one of two broken", strings.Replace(both, "b=", "b=AAAA", 1), []string{
			"fail header.d=example.com header.s=rsa header.a=rsa-sha256",
			"pass header.d=example.com header.s=ed header.a=ed25519-sha256",
		}, "pass"},
		{"no key", sign(t, msg, "example.com", "nokey", edKey), []string{"permerror header.d=example.com header.s=nokey header.a=ed25519-sha256"}, "fail"},
		{"key lookup fails", sign(t, msg, "example.com", "tmp", edKey), []string{"temperror header.d=example.com header.s=tmp header.a=ed25519-sha256"}, "temperror"},
		{"unaligned", sign(t, message("a@example.net"), "example.com", "ed", edKey), []string{"pass header.d=example.com header.s=ed header.a=ed25519-sha256"}, "none"},
		{"unsigned", msg, []string{"none"}, "fail"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, rs := f.check(t, env, tc.msg)
			want(t, "dkim", find(rs, "dkim", props...), tc.want...)
			want(t, "dmarc", find(rs, "dmarc"), tc.dmarc)
			for _, r := range rs {
				if r.method == "dkim" && r.value != "pass" && r.value != "none" && r.reason == "" {
					t.Errorf("dkim=%s without a reason", r.value)
				}
				if r.method == "dkim" && r.value != "none" && len(r.props["header.b"]) != 8 {
					t.Errorf("header.b %q", r.props["header.b"])
				}
			}
		})
	}
}

func TestDKIMMaxSignatures(t *testing.T) {
	keys(t)
	f := setup(t, map[string]any{"max_signatures": 1})
	both := sign(t, sign(t, message("a@example.com"), "example.com", "ed", edKey), "example.com", "rsa", rsaKey)
	_, rs := f.check(t, envelope{from: "bounce@pass.example.net"}, both)
	want(t, "dkim", find(rs, "dkim", "header.s"), "pass header.s=rsa")
	if !strings.Contains(f.logs.String(), `"dkim_more":true`) {
		t.Errorf("log %s", f.logs)
	}
}

// TestDKIMCost: headers made so that verifying them takes time quadratic
// in their size get permerror, quickly.
func TestDKIMCost(t *testing.T) {
	keys(t)
	f := setup(t, nil)
	signed := sign(t, message("a@example.com"), "example.com", "ed", edKey)
	// The right body hash, so that go-msgauth goes on to the header.
	bh := regexp.MustCompile(`bh=[^;]+;`).FindString(signed)
	for name, msg := range map[string]string{
		"many signed fields": "DKIM-Signature: v=1; a=ed25519-sha256; d=example.com; s=ed; " + bh + " b=AAAA; h=" +
			strings.Repeat("x:", 100000) + "from\r\n" + strings.Repeat("X: y\r\n", 20000) + signed,
		"many folded lines": "X-Long: x" + strings.Repeat("\r\n x", 200000) + "\r\n" + signed,
	} {
		start := time.Now()
		_, rs := f.check(t, envelope{from: "bounce@relay.example"}, msg)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: took %v", name, d)
		}
		for _, r := range rs {
			if r.method == "dkim" && (r.value != "permerror" || r.reason != "header too large to verify") {
				t.Errorf("%s: dkim=%s reason %q", name, r.value, r.reason)
			}
		}
	}
}

func TestDMARC(t *testing.T) {
	keys(t)
	f := setup(t, nil)
	f.configure(t, "quarantine", map[string]any{"dmarc_fail": "quarantine"})
	unaligned := envelope{from: "bounce@relay.example"} // SPF passes.
	for _, tc := range []struct {
		name       string
		env        envelope
		msg        string
		dmarc      string
		action     sdk.Action
		percent    int
		wantFrom   string
		wantPolicy string // The comment, "p=... dis=...".
	}{
		{"aligned dkim", unaligned, sign(t, message("a@example.com"), "example.com", "ed", edKey), "pass", sdk.ActionContinue, 50, "example.com", "p=reject dis=none"},
		{"aligned spf", envelope{from: "bounce@example.com"}, message("a@example.com"), "pass", sdk.ActionContinue, 50, "example.com", "p=reject dis=none"},
		{"relaxed spf", envelope{from: "bounce@sub.example.com"}, message("a@example.com"), "pass", sdk.ActionContinue, 50, "example.com", "p=reject dis=none"},
		{"relaxed dkim", unaligned, sign(t, message("a@sub.example.com"), "example.com", "ed", edKey), "pass", sdk.ActionContinue, 50, "sub.example.com", "p=quarantine dis=none"},
		{"null path, helo aligned", envelope{}, message("a@example.com"), "pass", sdk.ActionContinue, 50, "example.com", "p=reject dis=none"},
		{"fail reject", unaligned, message("a@example.com"), "fail", sdk.ActionReject, 50, "example.com", "p=reject dis=reject"},
		{"fail reject, quarantine instance", envelope{instance: "quarantine", from: "bounce@relay.example"}, message("a@example.com"), "fail", sdk.ActionQuarantine, 50, "example.com", "p=reject dis=quarantine"},
		{"dkim fails", unaligned, strings.Replace(sign(t, message("a@example.com"), "example.com", "ed", edKey), "Hello.", "Bye.", 1), "fail", sdk.ActionReject, 50, "example.com", "p=reject dis=reject"},
		{"spf pass but strict", envelope{from: "bounce@sub.strict.example"}, message("a@strict.example"), "fail", sdk.ActionReject, 50, "strict.example", "p=reject dis=reject"},
		{"sp for a subdomain", unaligned, message("a@sub.example.com"), "fail", sdk.ActionQuarantine, 50, "sub.example.com", "p=quarantine dis=quarantine"},
		{"p=quarantine", unaligned, message("a@quarantine.example.net"), "fail", sdk.ActionQuarantine, 50, "quarantine.example.net", "p=quarantine dis=quarantine"},
		{"p=none", unaligned, message("a@monitor.example.net"), "fail", sdk.ActionContinue, 50, "monitor.example.net", "p=none dis=none"},
		{"no policy", unaligned, message("a@example.net"), "none", sdk.ActionContinue, 50, "example.net", ""},
		{"no policy, no domain", unaligned, message("a@nowhere.invalid"), "none", sdk.ActionContinue, 50, "nowhere.invalid", ""},
		// pct=0: the policy is not applied; reject becomes quarantine
		// (RFC 7489 §6.6.4).
		{"pct=0 quarantine", unaligned, message("a@pctq.example.net"), "fail", sdk.ActionContinue, 0, "pctq.example.net", "p=quarantine dis=none"},
		{"pct=0 reject", unaligned, message("a@pctr.example.net"), "fail", sdk.ActionQuarantine, 0, "pctr.example.net", "p=reject dis=quarantine"},
		{"pct=50 drawn", unaligned, message("a@pct50.example.net"), "fail", sdk.ActionReject, 49, "pct50.example.net", "p=reject dis=reject"},
		{"pct=50 not drawn", unaligned, message("a@pct50.example.net"), "fail", sdk.ActionQuarantine, 50, "pct50.example.net", "p=reject dis=quarantine"},
		{"two records", unaligned, message("a@twice.example.net"), "permerror", sdk.ActionContinue, 50, "twice.example.net", ""},
		{"bad record", unaligned, message("a@bad.example.net"), "permerror", sdk.ActionContinue, 50, "bad.example.net", ""},
		{"policy lookup fails", unaligned, message("a@dmarctemp.example.com"), "temperror", sdk.ActionContinue, 50, "dmarctemp.example.com", ""},
		{"aligned spf temperror", envelope{from: "bounce@tempspf.example.com"}, message("a@example.com"), "temperror", sdk.ActionContinue, 50, "example.com", "p=reject dis=none"},
		{"multiple From fields", unaligned, "From: a@example.com\r\n" + message("b@example.com"), "permerror", sdk.ActionContinue, 50, "", ""},
		{"two addresses", unaligned, strings.Replace(message("a@example.com"), "From: Author <a@example.com>", "From: a@example.com, b@example.net", 1), "permerror", sdk.ActionContinue, 50, "", ""},
		{"no From", unaligned, "Subject: x\r\n\r\nbody\r\n", "permerror", sdk.ActionContinue, 50, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.ck.percent = func() int { return tc.percent }
			v, rs := f.check(t, tc.env, tc.msg)
			want(t, "dmarc", find(rs, "dmarc", "header.from"), strings.TrimSuffix(tc.dmarc+" header.from="+tc.wantFrom, " header.from="))
			if v.Action != tc.action {
				t.Errorf("action %v, want %v (%+v)", v.Action, tc.action, v)
			}
			h := v.PrependHeaders[0]
			if tc.wantPolicy != "" && !strings.Contains(h, "dmarc="+tc.dmarc+" ("+tc.wantPolicy+")") || tc.wantPolicy == "" && strings.Contains(h, "dis=") {
				t.Errorf("want policy comment %q:\n%s", tc.wantPolicy, h)
			}
			switch v.Action {
			case sdk.ActionReject:
				if v.Code != 550 || v.EnhancedCode != "5.7.1" || !strings.Contains(v.Text, "DMARC policy") || !strings.Contains(v.Text, tc.wantFrom) {
					t.Errorf("reject %+v", v)
				}
			case sdk.ActionQuarantine:
				if !strings.Contains(v.Text, "DMARC policy of "+tc.wantFrom) {
					t.Errorf("quarantine %+v", v)
				}
			}
			for _, r := range rs {
				if r.method == "dmarc" && (r.value == "permerror" || r.value == "temperror") && r.reason == "" {
					t.Errorf("dmarc=%s without a reason", r.value)
				}
			}
		})
	}
	if l := f.logs.String(); !strings.Contains(l, `"dmarc":"fail"`) || !strings.Contains(l, `"dmarc_dnssec":true`) || !strings.Contains(l, `"dmarc_dnssec":false`) {
		t.Errorf("log:\n%s", l)
	}
}

func TestIPRev(t *testing.T) {
	f := setup(t, nil)
	for _, tc := range []struct {
		ip   string
		want string
	}{
		{"192.0.2.1", "pass policy.iprev=192.0.2.1"},
		{"192.0.2.2", "fail policy.iprev=192.0.2.2"},      // liar.example.net is 192.0.2.99.
		{"192.0.2.3", "permerror policy.iprev=192.0.2.3"}, // No PTR.
		{"192.0.2.4", "temperror policy.iprev=192.0.2.4"}, // The name's A lookup fails.
		{"[::ffff:192.0.2.1]", "pass policy.iprev=192.0.2.1"},
		{"[2001:db8::1]", "permerror policy.iprev=2001:db8::1"},
	} {
		v, rs := f.check(t, envelope{ip: tc.ip, from: "bounce@example.com"}, message("a@example.com"))
		want(t, tc.ip, find(rs, "iprev", "policy.iprev"), tc.want)
		if tc.ip == "192.0.2.1" && !strings.Contains(v.PrependHeaders[0], "iprev=pass (mail.example.com)") {
			t.Errorf("no name:\n%s", v.PrependHeaders[0])
		}
	}
}

func TestOwnResultsDeleted(t *testing.T) {
	keys(t)
	f := setup(t, nil)
	// Counted as the core counts them: not a line without a colon, nor a
	// name that only Unicode case folding makes Authentication-Results.
	msg := "Authentication-Results\r\n" +
		"Authentication-Re\u017fults: mx.example.org; none\r\n" +
		"Authentication-Results: mx.example.org; dmarc=pass header.from=example.com\r\n" +
		"Received: from x by y\r\n" +
		"Authentication-Results: other.example.net; spf=pass smtp.mailfrom=example.com\r\n" +
		"X-Authentication-Results: mx.example.org; none\r\n" +
		"authentication-results :\r\n (forged) \"MX.Example.ORG.\" 1;\r\n dkim=pass\r\n" +
		"Authentication-Results: mx.example.org.evil.example; none\r\n" +
		"Authentication-Results: MX.EXAMPLE.ORG;none\r\n" +
		message("a@example.com")
	msg = sign(t, msg, "example.com", "ed", edKey)
	v, rs := f.check(t, envelope{from: "bounce@example.com"}, msg)
	wantRefs := []sdk.HeaderRef{{Name: "Authentication-Results", Index: 1}, {Name: "Authentication-Results", Index: 3}, {Name: "Authentication-Results", Index: 5}}
	if !slices.Equal(v.DeleteHeaders, wantRefs) {
		t.Errorf("deleted %+v, want %+v", v.DeleteHeaders, wantRefs)
	}
	// The fields signed or not, the signature still verifies.
	want(t, "dkim", find(rs, "dkim"), "pass")

	v, _ = f.check(t, envelope{from: "bounce@example.com"}, message("a@example.com"))
	if v.DeleteHeaders != nil {
		t.Errorf("deleted %+v from a message without such fields", v.DeleteHeaders)
	}
}

func TestNotChecked(t *testing.T) {
	f := setup(t, nil)
	ctx := testCtx(t)
	msg := message("a@example.com")
	for _, req := range []*sdk.CheckRequest{
		{Instance: "msgauth", Stage: sdk.StageData, Submission: true, Account: "alice", Conn: sdk.ConnInfo{RemoteAddr: "192.0.2.9:1"}, Size: int64(len(msg)), Message: strings.NewReader(msg)},
		{Instance: "msgauth", Stage: sdk.StageMail, Conn: sdk.ConnInfo{RemoteAddr: "192.0.2.9:1"}, From: "a@example.com"},
	} {
		v, err := f.c.Checker().Check(ctx, req)
		if err != nil || v.Action != sdk.ActionContinue || v.PrependHeaders != nil || v.DeleteHeaders != nil {
			t.Errorf("%v submission %v: %+v, %v", req.Stage, req.Submission, v, err)
		}
	}
	if len(f.dns.Queries()) != 0 {
		t.Errorf("queries %+v", f.dns.Queries())
	}
}

func TestCheckErrors(t *testing.T) {
	f := setup(t, nil)
	ctx := testCtx(t)
	msg := message("a@example.com")
	for name, req := range map[string]*sdk.CheckRequest{
		"unknown instance": {Instance: "other", Stage: sdk.StageData, Conn: sdk.ConnInfo{RemoteAddr: "192.0.2.1:1"}, Size: int64(len(msg)), Message: strings.NewReader(msg)},
		"bad address":      {Instance: "msgauth", Stage: sdk.StageData, Conn: sdk.ConnInfo{RemoteAddr: "somewhere"}, Size: int64(len(msg)), Message: strings.NewReader(msg)},
		"larger than said": {Instance: "msgauth", Stage: sdk.StageData, Conn: sdk.ConnInfo{RemoteAddr: "192.0.2.1:1"}, Size: 10, Message: strings.NewReader(msg + strings.Repeat("x", sizeSlack))},
	} {
		if v, err := f.c.Checker().Check(ctx, req); err == nil {
			t.Errorf("%s: %+v, want an error", name, v)
		}
	}
	// A message without a body, and one without even the empty line.
	for _, m := range []string{"From: a@example.com\r\n\r\n", "From: a@example.com\r\n", ""} {
		_, rs := f.check(t, envelope{from: "bounce@example.com"}, m)
		if m != "" {
			want(t, fmt.Sprintf("%q", m), find(rs, "dmarc"), "pass")
		}
	}
	keys(t)
	signed := sign(t, "From: a@example.com\r\n\r\n", "example.com", "ed", edKey)
	_, rs := f.check(t, envelope{from: "bounce@pass.example.net"}, strings.TrimSuffix(signed, "\r\n"))
	want(t, "dkim of a header-only message", find(rs, "dkim"), "pass")
}

func TestConfigure(t *testing.T) {
	f := setup(t, nil)
	ctx := testCtx(t)
	for _, tc := range []struct {
		kind     sdk.Kind
		table    map[string]any
		hostname string
		wantKeys []string
	}{
		{sdk.KindPolicy, map[string]any{"resolver": "127.0.0.1:53", "trust_ad": false, "dmarc_fail": "quarantine", "timeout": "1m", "max_signatures": 50}, hostname, nil},
		{sdk.KindPolicy, map[string]any{"resolver": "127.0.0.1:53", "bogus": 1}, hostname, []string{"bogus"}},
		{sdk.KindPolicy, map[string]any{"resolver": "127.0.0.1:53", "timeout": 5}, hostname, []string{"timeout"}},
		{sdk.KindPolicy, map[string]any{"resolver": "127.0.0.1:53", "max_signatures": "ten"}, hostname, []string{"max_signatures"}},
		{sdk.KindPolicy, map[string]any{
			"resolver": "127.0.0.1:99999", "dmarc_fail": "bounce", "timeout": "soon", "max_signatures": 0,
		}, hostname, []string{"resolver", "dmarc_fail", "timeout", "max_signatures"}},
		{sdk.KindPolicy, map[string]any{"resolver": "127.0.0.1:53", "timeout": "-1s", "max_signatures": 51}, hostname, []string{"timeout", "max_signatures"}},
		{sdk.KindPolicy, map[string]any{"resolver": "127.0.0.1:53", "timeout": "2m"}, hostname, []string{"timeout"}},
		{sdk.KindPolicy, map[string]any{"resolver": "127.0.0.1:53"}, "bad name!", []string{""}},
		{sdk.KindPlugin, map[string]any{"resolver": "127.0.0.1:53"}, hostname, []string{"resolver"}},
		{sdk.KindTransport, nil, hostname, []string{""}},
	} {
		err := f.c.Configure(ctx, &sdk.Configuration{Kind: tc.kind, Instance: "x", Table: tc.table, Hostname: tc.hostname, CheckOnly: true})
		var ces sdk.ConfigErrors
		if tc.wantKeys == nil {
			if err != nil {
				t.Errorf("%v: %v", tc.table, err)
			}
			continue
		}
		if !errors.As(err, &ces) {
			t.Errorf("%v: %v, want config errors for %q", tc.table, err, tc.wantKeys)
			continue
		}
		var keys []string
		for _, e := range ces {
			keys = append(keys, e.Key)
		}
		if !slices.Equal(keys, tc.wantKeys) {
			t.Errorf("%v: errors %v, want keys %q", tc.table, err, tc.wantKeys)
		}
	}
	// CheckOnly configured nothing.
	_, err := f.c.Checker().Check(ctx, &sdk.CheckRequest{Instance: "x", Stage: sdk.StageData, Conn: sdk.ConnInfo{RemoteAddr: "192.0.2.1:1"}, Message: strings.NewReader("")})
	if err == nil {
		t.Error("an instance configured with CheckOnly was used")
	}
}

// BenchmarkCheck is the cost of one check over gRPC, of a signed message
// that passes everything, its DNS answers cached: what a message costs the
// plugin on a busy MX.
func BenchmarkCheck(b *testing.B) {
	f := setup(b, map[string]any{"log_checks": false})
	// As real zones: negative answers carry the SOA, so they are cached.
	for _, z := range zones(b) {
		z.Records = "@ SOA ns." + z.Origin + " hostmaster." + z.Origin + " 1 3600 600 86400 300\n" + z.Records
		f.dns.SetZone(b, z)
	}
	msg := sign(b, message("a@example.com"), "example.com", "ed", edKey) + strings.Repeat("body line of a typical message\r\n", 120)
	req := func() *sdk.CheckRequest {
		return &sdk.CheckRequest{Instance: "msgauth", Stage: sdk.StageData, Helo: "mail.example.com", From: "a@example.com",
			Conn:       sdk.ConnInfo{Protocol: "smtp", Listener: "mx", RemoteAddr: "192.0.2.1:40000", LocalAddr: "192.0.2.25:25"},
			Recipients: []string{"rcpt@example.org"}, Size: int64(len(msg)), Message: strings.NewReader(msg)}
	}
	if v, err := f.c.Checker().Check(testCtx(b), req()); err != nil || !strings.Contains(v.PrependHeaders[0], "dmarc=pass") {
		b.Fatalf("%v %q", err, v.PrependHeaders)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := f.c.Checker().Check(context.Background(), req()); err != nil {
				b.Error(err)
			}
		}
	})
}

// TestReadMessageOneBuffer: a message of its announced size is read into
// one buffer, not regrown to find its end.
func TestReadMessageOneBuffer(t *testing.T) {
	msg := strings.Repeat("x", 4096)
	got, err := readMessage(strings.NewReader(msg), int64(len(msg)))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != msg {
		t.Fatalf("read %d bytes, want the %d of the message", len(got), len(msg))
	}
	if cap(got) >= 2*len(msg) {
		t.Errorf("buffer of %d bytes for a %d-byte message", cap(got), len(msg))
	}
}
