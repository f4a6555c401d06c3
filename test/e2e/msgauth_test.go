package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/sdk/direct/directtest"
	"github.com/switchyard-mta/switchyard/sdk/dkimkey"
	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// TestMsgAuth: server A signs what alice submits with policy-dkimsign (an
// ed25519 and an RSA key made by `mta dkim gen`) and delivers it with
// transport-direct to server B, whose MX checks it with policy-msgauth;
// DNS for both is a loopback server. Bob's copy says dkim=pass for both
// signatures, spf=pass, dmarc=pass and iprev=pass. Straight to B's MX: a
// forged From of a p=reject domain is refused with 550 5.7.1, a failure
// under p=quarantine lands in Junk, a body changed after signing gives
// dkim=fail, and an Authentication-Results field forged with B's name is
// removed.
func TestMsgAuth(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	keys := t.TempDir()
	gen := func(args ...string) string {
		t.Helper()
		out, errOut, code := runMTA(t, "", append([]string{"dkim", "gen"}, args...)...)
		if code != 0 {
			t.Fatalf("mta dkim gen %q: exit %d\n%s%s", args, code, out, errOut)
		}
		path := args[len(args)-1]
		line, err := dkimkey.ZoneRecordFile(path, args[len(args)-2], "a.example")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, line) {
			t.Errorf("mta dkim gen printed no %s:\n%s", line, out)
		}
		return line
	}
	edKey, rsaKey := filepath.Join(keys, "s1.pem"), filepath.Join(keys, "s2.pem")
	edRecord := gen("a.example", "s1", edKey)
	rsaRecord := gen("-rsa", "a.example", "s2", rsaKey)

	dnsSrv := directtest.NewDNS(t, []string{
		"b.example. 300 IN MX 10 mx.b.example.",
		"mx.b.example. 300 IN A 127.0.0.1",
		`a.example. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`_dmarc.a.example. 300 IN TXT "v=DMARC1; p=reject"`,
		edRecord, rsaRecord,
		"1.0.0.127.in-addr.arpa. 300 IN PTR mail.a.example.",
		"mail.a.example. 300 IN A 127.0.0.1",
		`mail.a.example. 300 IN TXT "v=spf1 a -all"`,
		`forged.example. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"`,
		`_dmarc.forged.example. 300 IN TXT "v=DMARC1; p=reject"`,
		`quar.example. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"`,
		`_dmarc.quar.example. 300 IN TXT "v=DMARC1; p=quarantine"`,
	})
	b := startServer(t, setup{Hostname: "mx.b.example", IMAP: true, Policies: []string{"msgauth"}, Rest: fmt.Sprintf(`
[plugins.policy-msgauth]
path = %q
[policies.msgauth]
plugin = "policy-msgauth"
[policies.msgauth.config]
resolver = %q
trust_ad = true
[domains."b.example"]
[accounts.bob]
domain = "b.example"
addresses = ["bob@b.example"]
`, bin.Plugins["policy-msgauth"], dnsSrv.Addr)})
	_, port, _ := net.SplitHostPort(b.Listeners["mx"])
	a := startServer(t, setup{Hostname: "mail.a.example", SubmitPolicies: []string{"dkim"}, Rest: fmt.Sprintf(`
[plugins.policy-dkimsign]
path = %q
[policies.dkim]
plugin = "policy-dkimsign"
[[policies.dkim.config.keys]]
domain = "a.example"
selector = "s1"
key_file = %q
[[policies.dkim.config.keys]]
domain = "a.example"
selector = "s2"
key_file = %q
`, bin.Plugins["policy-dkimsign"], edKey, rsaKey) + directRest(bin, dnsSrv.Addr, port)})

	// The records mta dns records prints for a.example are those in DNS.
	out, errOut, code := a.MTA("", []string{"dns", "records"}, "a.example")
	if code != 0 || !strings.Contains(out, edRecord) || !strings.Contains(out, rsaRecord) {
		t.Errorf("mta dns records a.example: exit %d, want both DKIM records\n%s%s", code, out, errOut)
	}

	cb := imapLogin(t, b, "imaps", "bob", b.Passwords["bob"], nil)
	submitAlice(t, a, "bob@b.example", []byte("From: alice@a.example\r\nTo: bob@b.example\r\nSubject: signed\r\nDate: Mon, 07 Dec 2026 01:00:00 +0000\r\nMessage-ID: <signed@a.example>\r\n\r\nsigned by A\r\n"))
	if n := waitMessages(t, cb, "INBOX", 1); n != 1 {
		t.Fatalf("bob's Inbox holds %d messages, want 1\nA:\n%s\nB:\n%s", n, a.Log(), b.Log())
	}
	ar := authResults(t, fetchBodyOf(t, cb, "INBOX", 1))
	for _, want := range []string{`dkim=pass[^;]* header\.d=a\.example[^;]* header\.s=s1`, `dkim=pass[^;]* header\.d=a\.example[^;]* header\.s=s2`,
		`spf=pass[^;]* smtp\.mailfrom=(alice@)?a\.example`, `dmarc=pass[^;]* header\.from=a\.example`, `iprev=pass`} {
		if !regexp.MustCompile(want).MatchString(ar) {
			t.Errorf("Authentication-Results lacks %s:\n%s", want, ar)
		}
	}

	// The independent verifier, dkimpy, on the copy bob got.
	verifyDKIMPy(t, fetchBodyOf(t, cb, "INBOX", 1), map[string]string{"s1._domainkey.a.example": keyRecord(t, edKey), "s2._domainkey.a.example": keyRecord(t, rsaKey)})

	direct := func(from, headerFrom, body string) error {
		c, err := mtatest.Dial(b.Listeners["mx"], false, false)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("mail.a.example"); err != nil {
			t.Fatal(err)
		}
		msg := "From: " + headerFrom + "\r\nTo: bob@b.example\r\nSubject: straight\r\n\r\n" + body
		return send(c, from, []string{"bob@b.example"}, []byte(msg))
	}
	err := direct("ceo@forged.example", "ceo@forged.example", "pay me\r\n")
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
		t.Errorf("forged From of a p=reject domain: %v, want 550 5.7.1", err)
	}
	if err := direct("news@quar.example", "news@quar.example", "maybe spam\r\n"); err != nil {
		t.Errorf("failure under p=quarantine: %v, want accepted", err)
	}
	if n := waitMessages(t, cb, "Junk", 1); n != 1 {
		t.Errorf("bob's Junk holds %d messages, want the p=quarantine one", n)
	}

	// Signed with A's key, changed after signing, a forged result of B's
	// on top: dkim=fail, and the forged field gone.
	key, err := dkimkey.Load(edKey)
	if err != nil {
		t.Fatal(err)
	}
	var signed bytes.Buffer
	orig := "From: alice@a.example\r\nTo: bob@b.example\r\nSubject: changed\r\n\r\noriginal body\r\n"
	if err := dkim.Sign(&signed, strings.NewReader(orig), &dkim.SignOptions{Domain: "a.example", Selector: "s1", Signer: key}); err != nil {
		t.Fatal(err)
	}
	changed := "Authentication-Results: mx.b.example; dkim=pass header.d=a.example\r\n" + strings.Replace(signed.String(), "original body", "altered body", 1)
	c, err := mtatest.Dial(b.Listeners["mx"], false, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := send(c, "alice@a.example", []string{"bob@b.example"}, []byte(changed)); err != nil {
		t.Fatalf("changed message: %v", err)
	}
	if n := waitMessages(t, cb, "INBOX", 2); n != 2 {
		t.Fatalf("bob's Inbox holds %d messages, want 2", n)
	}
	got := fetchBodyOf(t, cb, "INBOX", 2)
	ar = authResults(t, got)
	if !regexp.MustCompile(`dkim=fail[^;]* header\.d=a\.example`).MatchString(ar) || strings.Contains(ar, "dkim=pass") {
		t.Errorf("body changed after signing: want dkim=fail and no dkim=pass:\n%s", got)
	}
	if strings.Count(string(got), "Authentication-Results:") != 1 {
		t.Errorf("the forged Authentication-Results field is still there:\n%s", got)
	}
}

// authResults returns the first Authentication-Results field of msg,
// unfolded.
func authResults(t *testing.T, msg []byte) string {
	t.Helper()
	m := regexp.MustCompile(`(?s)Authentication-Results:(.*?)\r\n[^ \t]`).FindSubmatch(msg)
	if m == nil {
		t.Fatalf("no Authentication-Results field:\n%s", msg)
	}
	return regexp.MustCompile(`\r\n[ \t]+`).ReplaceAllString(string(m[1]), " ")
}

// keyRecord is the DKIM key record of the private key file.
func keyRecord(t *testing.T, file string) string {
	t.Helper()
	key, err := dkimkey.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	r, err := dkimkey.Record(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// verifyDKIMPy has dkimpy (Debian's python3-dkim) verify every signature
// of msg with the key records given by name; it skips where dkimpy, or
// PyNaCl for ed25519, is missing.
func verifyDKIMPy(t *testing.T, msg []byte, records map[string]string) {
	t.Helper()
	var py string
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(p, "-c", "import dkim, nacl.signing").Run() == nil {
			py = p
			break
		}
	}
	if py == "" {
		t.Log("dkimpy with PyNaCl not installed (apt-get install python3-dkim): not verified independently")
		return
	}
	dir := t.TempDir()
	msgFile, recFile := filepath.Join(dir, "msg.eml"), filepath.Join(dir, "records.json")
	rec, _ := json.Marshal(records)
	if os.WriteFile(msgFile, msg, 0o600) != nil || os.WriteFile(recFile, rec, 0o600) != nil {
		t.Fatal("writing dkimpy input")
	}
	script := `
import dkim, json, sys
records = json.load(open(sys.argv[2]))
msg = open(sys.argv[1], 'rb').read()
d = dkim.DKIM(msg)
n = msg.count(b'\nDKIM-Signature:') + msg.startswith(b'DKIM-Signature:')
dns = lambda name, timeout=5: records.get(name.decode().rstrip('.'), '').encode() or None
print(n, ' '.join(str(d.verify(idx=i, dnsfunc=dns)) for i in range(n)))
`
	out, err := exec.Command(py, "-c", script, msgFile, recFile).CombinedOutput()
	if got := strings.TrimSpace(string(out)); err != nil || got != fmt.Sprintf("%d%s", len(records), strings.Repeat(" True", len(records))) {
		t.Errorf("dkimpy: %v: %q, want every one of %d signatures True", err, got, len(records))
	}
}
