package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// tlsClientRest has alice with two addresses and bob, and the auth-tlsclient
// and auth-scram plugins; the mechanisms are the default order.
const tlsClientAccounts = `
[domains."example.org"]
[accounts.alice]
domain = "example.org"
addresses = ["alice@example.org", "a.smith@example.org"]
[accounts.bob]
domain = "example.org"
addresses = ["bob@example.org"]
`

func startTLSClientServer(t *testing.T) *mtatest.Server {
	t.Helper()
	bin := binaries(t)
	return startServer(t, setup{IMAP: true, Rest: fmt.Sprintf("[plugins.auth-tlsclient]\npath = %q\n[plugins.auth-scram]\npath = %q\n",
		bin.Plugins["auth-tlsclient"], bin.Plugins["auth-scram"]) + tlsClientAccounts})
}

// clientKey is a client's key and self-signed certificate, also as PEM
// files.
type clientKey struct {
	cert              tls.Certificate
	certFile, keyFile string
	certPEM           string
}

// newClientKey makes an ed25519 key with a certificate named name,
// expired years ago if expired.
func newClientKey(t *testing.T, name string, expired bool) *clientKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Hour)
	if expired {
		start = time.Now().AddDate(-3, 0, 0)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, NotBefore: start, NotAfter: start.AddDate(1, 0, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	k := &clientKey{
		cert:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv},
		certFile: filepath.Join(dir, name+".crt"),
		keyFile:  filepath.Join(dir, name+".key"),
		certPEM:  string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
	}
	if err := os.WriteFile(k.certFile, []byte(k.certPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// addKey registers k for address with `mta tlspubkey add` (through the
// running server's control socket) and returns its fingerprint.
func addKey(t *testing.T, srv *mtatest.Server, k *clientKey, args ...string) string {
	t.Helper()
	out, errOut, code := srv.MTA(k.certPEM, []string{"tlspubkey", "add"}, args...)
	if code != 0 {
		t.Fatalf("mta tlspubkey add %q: exit %d\n%s%s", args, code, out, errOut)
	}
	return fingerprintOf(t, k)
}

// fingerprintOf is the key's fingerprint as mta shows it.
func fingerprintOf(t *testing.T, k *clientKey) string {
	t.Helper()
	c, err := x509.ParseCertificate(k.cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return spkiFingerprint(c)
}

// tlsConfig presents k (nil: no certificate).
func tlsConfig(k *clientKey) *tls.Config {
	c := &tls.Config{InsecureSkipVerify: true}
	if k != nil {
		c.Certificates = []tls.Certificate{k.cert}
	}
	return c
}

// dialIMAPSKey connects to imaps presenting k and waits for the greeting.
func dialIMAPSKey(t *testing.T, srv *mtatest.Server, k *clientKey) *imapclient.Client {
	t.Helper()
	c, _ := dialIMAPSKeyState(t, srv, k)
	return c
}

// dialIMAPSKeyState is dialIMAPSKey, also returning the TLS state.
func dialIMAPSKeyState(t *testing.T, srv *mtatest.Server, k *clientKey) (*imapclient.Client, tls.ConnectionState) {
	t.Helper()
	nc, err := tls.Dial("tcp", srv.Listeners["imaps"], tlsConfig(k))
	if err != nil {
		t.Fatalf("dial imaps: %v", err)
	}
	nc.SetDeadline(time.Now().Add(waitShort))
	c := imapclient.New(nc, nil)
	t.Cleanup(func() { c.Close() })
	if err := c.WaitGreeting(); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	return c, nc.ConnectionState()
}

// dialIMAPKey connects to imap, does STARTTLS presenting k.
func dialIMAPKey(t *testing.T, srv *mtatest.Server, k *clientKey) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialStartTLS(srv.Listeners["imap"], &imapclient.Options{TLSConfig: tlsConfig(k)})
	if err != nil {
		t.Fatalf("dial imap: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func hasCap(c *imapclient.Client, cap imap.Cap) bool {
	caps, err := c.Capability().Wait()
	return err == nil && caps.Has(cap)
}

// TestTLSClientIMAP: a known key gets a PREAUTH greeting and can SELECT at
// once, also with an expired certificate; an unknown key a normal
// session without EXTERNAL; a no_imap_preauth key logs in with
// AUTHENTICATE EXTERNAL, also after STARTTLS; with alice's key, logins as
// bob fail and as alice's other address succeed; a removed key stops
// working at once.
func TestTLSClientIMAP(t *testing.T) {
	t.Parallel()
	srv := startTLSClientServer(t)
	alice := newClientKey(t, "alice-phone", true) // Expired: keys count, not certificates.
	laptop := newClientKey(t, "alice-laptop", false)
	stranger := newClientKey(t, "stranger", false)
	fp := addKey(t, srv, alice, "alice@example.org")
	addKey(t, srv, laptop, "-no-imap-preauth", "a.smith@example.org", "laptop")

	c := dialIMAPSKey(t, srv, alice)
	if c.State() != imap.ConnStateAuthenticated {
		t.Fatalf("known key: state %v, want PREAUTH (authenticated)", c.State())
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("SELECT after PREAUTH: %v", err)
	}
	c.Logout()

	c = dialIMAPSKey(t, srv, stranger)
	if c.State() != imap.ConnStateNotAuthenticated {
		t.Fatalf("unknown key: state %v, want not authenticated", c.State())
	}
	if hasCap(c, "AUTH=EXTERNAL") {
		t.Error("EXTERNAL announced for an unknown key")
	}
	wantIMAPCode(t, "EXTERNAL with an unknown key", c.Authenticate(sasl.NewExternalClient("")), imap.ResponseCodeAuthenticationFailed)
	if err := c.Login("bob@example.org", srv.Passwords["bob"]).Wait(); err != nil {
		t.Errorf("LOGIN as bob with an unknown key: %v", err)
	}

	// no_imap_preauth: an OK greeting, then EXTERNAL with SASL-IR ("=").
	c = dialIMAPSKey(t, srv, laptop)
	if c.State() != imap.ConnStateNotAuthenticated {
		t.Fatalf("no_imap_preauth key: state %v, want not authenticated", c.State())
	}
	if !hasCap(c, "AUTH=EXTERNAL") {
		t.Error("EXTERNAL not announced for a known key")
	}
	if err := c.Authenticate(sasl.NewExternalClient("")); err != nil {
		t.Fatalf("AUTHENTICATE EXTERNAL: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatalf("SELECT: %v", err)
	}

	// STARTTLS: no greeting to pre-authenticate; EXTERNAL, naming alice's
	// other address as authorization identity.
	c = dialIMAPKey(t, srv, alice)
	if !hasCap(c, "AUTH=EXTERNAL") {
		t.Error("EXTERNAL not announced after STARTTLS with a known key")
	}
	if err := c.Authenticate(sasl.NewExternalClient("a.smith@example.org")); err != nil {
		t.Fatalf("AUTHENTICATE EXTERNAL as alice's other address: %v", err)
	}
	c = dialIMAPKey(t, srv, alice)
	wantIMAPCode(t, "EXTERNAL naming bob", c.Authenticate(sasl.NewExternalClient("bob@example.org")), imap.ResponseCodeAuthenticationFailed)

	// Another mechanism with alice's key: alice only.
	c = dialIMAPSKey(t, srv, laptop)
	wantIMAPCode(t, "LOGIN as bob with alice's key", c.Login("bob@example.org", srv.Passwords["bob"]).Wait(), imap.ResponseCodeAuthenticationFailed)
	c, cs := dialIMAPSKeyState(t, srv, laptop)
	if err := c.Authenticate(newSCRAMClient(t, "SCRAM-SHA-256", "bob@example.org", srv.Passwords["bob"], bindNone, cs)); err == nil {
		t.Error("SCRAM as bob with alice's key succeeded")
	}
	c, cs = dialIMAPSKeyState(t, srv, laptop)
	if err := c.Authenticate(newSCRAMClient(t, "SCRAM-SHA-256", "a.smith@example.org", srv.Passwords["alice"], bindNone, cs)); err != nil {
		t.Errorf("SCRAM as alice's other address with her key: %v", err)
	}
	if !strings.Contains(srv.Log(), `reason="the TLS client key is of another account"`) {
		t.Error("log does not say why bob's login failed")
	}
	if !strings.Contains(srv.Log(), "key="+fp+" key_name=alice-phone") {
		t.Errorf("log does not name the key %s", fp)
	}

	// The last use shows, and a removed key stops working.
	out := mta(t, srv, "tlspubkey", "list", "alice")
	if line := lineWith(out, fp); line == "" || strings.Contains(line, "never") {
		t.Errorf("tlspubkey list: no last use of %s:\n%s", fp, out)
	}
	mta(t, srv, "tlspubkey", "rm", fp)
	c = dialIMAPSKey(t, srv, alice)
	if c.State() != imap.ConnStateNotAuthenticated {
		t.Fatalf("removed key: state %v, want not authenticated", c.State())
	}
	wantIMAPCode(t, "EXTERNAL with a removed key", c.Authenticate(sasl.NewExternalClient("")), imap.ResponseCodeAuthenticationFailed)
}

// TestTLSClientSubmission: a known key submits without AUTH on submissions
// and after STARTTLS; AUTH EXTERNAL is announced with any certificate and
// works with a known one; an unknown key gets the AUTH-required session;
// with alice's key PLAIN as bob fails, as alice's other address succeeds.
func TestTLSClientSubmission(t *testing.T) {
	t.Parallel()
	srv := startTLSClientServer(t)
	alice := newClientKey(t, "alice-phone", true)
	stranger := newClientKey(t, "stranger", false)
	addKey(t, srv, alice, "alice@example.org", "phone")
	msg := mtatest.MakeMessage("alice@example.org", "bob@example.org", "by-key", 100)

	dial := func(listener string, k *clientKey) *smtp.Client {
		t.Helper()
		var c *smtp.Client
		var err error
		if listener == "submissions" {
			c, err = smtp.DialTLS(srv.Listeners[listener], tlsConfig(k))
		} else {
			c, err = smtp.DialStartTLS(srv.Listeners[listener], tlsConfig(k))
		}
		if err != nil {
			t.Fatalf("dial %s: %v", listener, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for _, l := range []string{"submissions", "submission"} {
		c := dial(l, alice)
		if ok, mechs := c.Extension("AUTH"); !ok || !strings.HasPrefix(mechs, "EXTERNAL ") {
			t.Errorf("%s: AUTH %q, want EXTERNAL first", l, mechs)
		}
		if err := send(c, "alice@example.org", []string{"bob@example.org"}, msg); err != nil {
			t.Errorf("%s: sending with a known key, no AUTH: %v", l, err)
		}
		// AUTH EXTERNAL as clients configured for it send it, then MAIL.
		c = dial(l, alice)
		if err := c.Auth(sasl.NewExternalClient("")); err != nil {
			t.Errorf("%s: AUTH EXTERNAL: %v", l, err)
		}
		if err := send(c, "a.smith@example.org", []string{"bob@example.org"}, msg); err != nil {
			t.Errorf("%s: sending after AUTH EXTERNAL: %v", l, err)
		}
	}

	c := dial("submissions", stranger)
	if ok, mechs := c.Extension("AUTH"); !ok || !strings.HasPrefix(mechs, "EXTERNAL ") {
		t.Errorf("unknown key: AUTH %q, want EXTERNAL announced for a certificate", mechs)
	}
	wantSMTPError(t, "MAIL with an unknown key", c.Mail("alice@example.org", nil), 530, smtp.EnhancedCode{5, 7, 0})
	wantSMTPError(t, "AUTH EXTERNAL with an unknown key", c.Auth(sasl.NewExternalClient("")), 535, smtp.EnhancedCode{5, 7, 8})

	c = dial("submissions", nil)
	if ok, mechs := c.Extension("AUTH"); !ok || strings.Contains(mechs, "EXTERNAL") {
		t.Errorf("no certificate: AUTH %q, want no EXTERNAL", mechs)
	}

	c = dial("submissions", alice)
	wantSMTPError(t, "AUTH PLAIN as bob with alice's key", c.Auth(sasl.NewPlainClient("", "bob@example.org", srv.Passwords["bob"])), 535, smtp.EnhancedCode{5, 7, 8})
	// Still alice's session by her key, not bob's.
	wantSMTPError(t, "MAIL as bob", c.Mail("bob@example.org", nil), 553, smtp.EnhancedCode{5, 7, 1})
	c = dial("submissions", alice)
	if err := c.Auth(sasl.NewPlainClient("", "a.smith@example.org", srv.Passwords["alice"])); err != nil {
		t.Errorf("AUTH PLAIN as alice's other address with her key: %v", err)
	}
	if got := waitInbox(t, srv, "bob", 4); got < 4 {
		t.Errorf("bob has %d messages, want 4", got)
	}
}

// TestTLSClientPluginKilled: while auth-tlsclient is down after kill -9,
// a known key gets no PREAUTH and EXTERNAL fails temporarily, while
// passwords work; once restarted, PREAUTH works again.
func TestTLSClientPluginKilled(t *testing.T) {
	t.Parallel()
	srv := startTLSClientServer(t)
	alice := newClientKey(t, "alice-phone", false)
	addKey(t, srv, alice, "alice@example.org")
	pid, err := srv.PluginPID("auth-tlsclient")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Until the restart, which waits a backoff, the plugin is down; a
	// connection that still finds it up proves nothing, and is retried.
	sawDown := false
	for range 20 {
		c := dialIMAPSKey(t, srv, alice)
		if c.State() == imap.ConnStateAuthenticated {
			c.Close()
			time.Sleep(10 * time.Millisecond)
			continue
		}
		sawDown = true
		wantIMAPCode(t, "EXTERNAL while the plugin is down", c.Authenticate(sasl.NewExternalClient("")), imap.ResponseCodeUnavailable)
		if err := c.Login("alice@example.org", srv.Passwords["alice"]).Wait(); err != nil {
			t.Errorf("LOGIN while auth-tlsclient is down: %v", err)
		}
		break
	}
	if !sawDown {
		t.Fatal("auth-tlsclient never seen down after kill -9")
	}
	if !waitFor(waitShort, func() bool {
		c := dialIMAPSKey(t, srv, alice)
		defer c.Close()
		return c.State() == imap.ConnStateAuthenticated
	}) {
		t.Fatal("no PREAUTH after the plugin's restart")
	}
}

// spkiFingerprint is how mta names a key: base64url of the SHA-256 of the
// certificate's SubjectPublicKeyInfo, without padding.
func spkiFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// waitInbox waits until account's INBOX holds want messages, seen over
// imaps with its password, and returns how many it holds.
func waitInbox(t *testing.T, srv *mtatest.Server, account string, want int) int {
	t.Helper()
	var n uint32
	waitFor(waitShort, func() bool {
		c := dialIMAPSKey(t, srv, nil)
		defer c.Close()
		if err := c.Login(account+"@example.org", srv.Passwords[account]).Wait(); err != nil {
			t.Fatalf("LOGIN %s: %v", account, err)
		}
		sd, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatalf("SELECT: %v", err)
		}
		n = sd.NumMessages
		return int(n) >= want
	})
	return int(n)
}
