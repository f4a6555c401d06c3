package e2e

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/switchyard-mta/switchyard/core/certs"
	"github.com/switchyard-mta/switchyard/sdk/dane"
	"github.com/switchyard-mta/switchyard/sdk/direct/directtest"
	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// directRest is the local part of server A's configuration: transport-direct
// as the instance "direct" asking the test resolver, with no routes, so the
// fallback transport "direct" delivers every non-local domain.
func directRest(bin *mtatest.Binaries, resolver, port string) string {
	return fmt.Sprintf(`
[plugins.transport-direct]
path = %q
[transports.direct]
plugin = "transport-direct"
[transports.direct.config]
resolver = %q
trust_ad = true
port = %s
[domains."a.example"]
[accounts.alice]
domain = "a.example"
addresses = ["alice@a.example"]
`, bin.Plugins["transport-direct"], resolver, port)
}

// submitAlice submits msg from alice@a.example to rcpt on srv.
func submitAlice(t *testing.T, srv *mtatest.Server, rcpt string, msg []byte) {
	t.Helper()
	c := dialAuth(t, srv.Listeners["submission"], false, "alice@a.example", srv.Passwords["alice"])
	if err := send(c, "alice@a.example", []string{rcpt}, msg); err != nil {
		t.Fatalf("submitting to %s: %v", rcpt, err)
	}
	if err := c.Quit(); err != nil {
		t.Fatalf("QUIT: %v", err)
	}
}

// The full path of direct delivery: submission on A, A's queue, the route
// fallback "direct", transport-direct finding b.example's MX through the
// test resolver, server B as that MX, bob reading with IMAP. In an unsigned
// zone the delivery uses opportunistic STARTTLS; in a signed zone with a
// DANE-EE TLSA record for B's key (RFC 7672) it is DANE-verified.
func TestDirectDelivery(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	for _, tc := range []struct {
		name    string
		signed  bool
		wantTLS string // A's queue log attribute tls.
	}{
		{"opportunistic", false, "opportunistic"},
		{"dane", true, "dane"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := startServer(t, setup{Hostname: "mx.b.example", IMAP: true, Rest: `
[domains."b.example"]
[accounts.bob]
domain = "b.example"
addresses = ["bob@b.example"]
`})
			host, port, err := net.SplitHostPort(b.Listeners["mx"])
			if err != nil || host != "127.0.0.1" {
				t.Fatalf("B's mx listener %q, want 127.0.0.1:port (%v)", b.Listeners["mx"], err)
			}
			zone := []string{
				"b.example. 300 IN MX 10 mx.b.example.",
				"mx.b.example. 300 IN A 127.0.0.1",
			}
			var signed []string
			if tc.signed {
				// B's self-signed certificate exists once B has started.
				tlsa := "_" + port + "._tcp.mx.b.example."
				rec, err := dane.NewRecord(dane.UsageDANEEE, dane.SelectorSPKI, dane.MatchSHA256, selfSignedCert(t, b))
				if err != nil {
					t.Fatal(err)
				}
				zone = append(zone, tlsa+" 300 IN TLSA "+rec.String())
				signed = []string{"b.example.", "mx.b.example.", tlsa}
			}
			dnsSrv := directtest.NewDNS(t, zone, signed...)
			a := startServer(t, setup{Hostname: "mail.a.example", IMAP: true, Rest: directRest(bin, dnsSrv.Addr, port)})

			// bob@b.example waits in IDLE.
			evB := newIMAPEvents()
			cb := imapLogin(t, b, "imaps", "bob", b.Passwords["bob"], evB.handler())
			selectMailbox(t, cb, "INBOX", false)
			idle, err := cb.Idle()
			if err != nil {
				t.Fatalf("IDLE on b: %v", err)
			}
			msg := mtatest.MakeMessage("alice@a.example", "bob@b.example", "direct-"+tc.name, 3000)
			submitAlice(t, a, "bob@b.example", msg)
			if n := recv(t, evB.exists, waitShort, "EXISTS on b"); n != 1 {
				t.Errorf("EXISTS %d on b, want 1", n)
			}
			if err := idle.Close(); err != nil {
				t.Fatal(err)
			}
			if err := idle.Wait(); err != nil {
				t.Fatalf("IDLE on b: %v", err)
			}
			// B's Received field, over A's, over the bytes submitted: A
			// came in over STARTTLS (RFC 3848: ESMTPS).
			fields := splitReceived(t, fetchBody(t, cb, imap.SeqSetNum(1)), msg, 2)
			for i, want := range [][]string{
				{"from mail.a.example ", "by mx.b.example with ESMTPS", "for <bob@b.example>"},
				{"by mail.a.example with ESMTPSA", "for <bob@b.example>"},
			} {
				for _, w := range want {
					if !strings.Contains(fields[i], w) {
						t.Errorf("Received field %d lacks %q:\n%s", i, w, fields[i])
					}
				}
			}
			waitQueueEmpty(t, a)
			// A's queue line for the attempt: transport direct, the MX
			// host, and how TLS was verified.
			re := regexp.MustCompile(`(?m)^.*msg=delivery .*to=\S+@b\.example transport=direct .*status=sent remote=mx\.b\.example ip=127\.0\.0\.1 tls=` + tc.wantTLS + ` `)
			if !waitFor(waitShort, func() bool { return re.MatchString(a.Log()) }) {
				t.Errorf("A's log lacks a delivery through direct to mx.b.example with tls=%s", tc.wantTLS)
			}
		})
	}
}

// A recipient domain with a null MX (RFC 7505) accepts no mail: the
// delivery fails permanently at once with 5.1.10 and the sender reads the
// failure DSN in her Inbox on A.
func TestDirectNullMX(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	dnsSrv := directtest.NewDNS(t, []string{"null.example. 300 IN MX 0 ."})
	a := startServer(t, setup{Hostname: "mail.a.example", IMAP: true, Rest: directRest(bin, dnsSrv.Addr, "25")})

	evA := newIMAPEvents()
	ca := imapLogin(t, a, "imap", "alice@a.example", a.Passwords["alice"], evA.handler())
	selectMailbox(t, ca, "INBOX", false)
	idle, err := ca.Idle()
	if err != nil {
		t.Fatalf("IDLE on a: %v", err)
	}
	orig := mtatest.MakeMessage("alice@a.example", "carol@null.example", "to-null-mx", 1500)
	submitAlice(t, a, "carol@null.example", orig)
	if n := recv(t, evA.exists, waitShort, "EXISTS on a (the DSN)"); n != 1 {
		t.Errorf("EXISTS %d on a, want 1", n)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatalf("IDLE on a: %v", err)
	}
	checkFailureDSN(t, fetchBody(t, ca, imap.SeqSetNum(1)), mustHeader(t, orig, "Message-Id"), "carol@null.example", "5.1.10")
	waitQueueEmpty(t, a)
	re := regexp.MustCompile(`(?m)^.*msg=delivery .*to=\S+@null\.example transport=direct attempt=1 status=bounced .*enhanced=5\.1\.10 `)
	if !re.MatchString(a.Log()) {
		t.Errorf("A's log lacks a permanent 5.1.10 failure of the first attempt through direct")
	}
}

// selfSignedCert returns the certificate srv generated for itself.
func selfSignedCert(t *testing.T, srv *mtatest.Server) *x509.Certificate {
	t.Helper()
	path, _ := certs.SelfSignedPaths(filepath.Join(srv.Dir, "data"))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
