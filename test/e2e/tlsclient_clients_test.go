package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/switchyard-mta/switchyard/core/certs"
	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// startTLSClientLocalhost is startTLSClientServer named localhost, so that
// clients can verify its self-signed certificate (for DNS localhost and IP
// 127.0.0.1), whose path it also returns.
func startTLSClientLocalhost(t *testing.T) (*mtatest.Server, string) {
	t.Helper()
	bin := binaries(t)
	srv := startServer(t, setup{Hostname: "localhost", IMAP: true, Rest: fmt.Sprintf("[plugins.auth-tlsclient]\npath = %q\n[plugins.auth-scram]\npath = %q\n",
		bin.Plugins["auth-tlsclient"], bin.Plugins["auth-scram"]) + tlsClientAccounts})
	trust, _ := certs.SelfSignedPaths(filepath.Join(srv.Dir, "data"))
	return srv, trust
}

// genKey makes a key with `mta tlspubkey gen` and registers its
// certificate with `mta tlspubkey add ARGS` (the address, flags before
// it); it returns the stem of the files.
func genKey(t *testing.T, srv *mtatest.Server, name string, args ...string) string {
	t.Helper()
	stem := filepath.Join(t.TempDir(), name)
	if out, errOut, code := runMTA(t, "", "tlspubkey", "gen", stem); code != 0 {
		t.Fatalf("mta tlspubkey gen: exit %d\n%s%s", code, out, errOut)
	}
	cert, err := os.ReadFile(stem + ".crt")
	if err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := srv.MTA(string(cert), []string{"tlspubkey", "add"}, args...); code != 0 {
		t.Fatalf("mta tlspubkey add: exit %d\n%s%s", code, out, errOut)
	}
	return stem
}

// TestTLSClientOpenSSL: `openssl s_client -cert -key` with the files
// `mta tlspubkey gen` wrote gets a PREAUTH greeting on imaps and can
// SELECT at once; the PKCS #12 bundle opens with an empty password.
func TestTLSClientOpenSSL(t *testing.T) {
	t.Parallel()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed (apt-get install openssl)")
	}
	srv, _ := startTLSClientLocalhost(t)
	stem := genKey(t, srv, "laptop", "alice@example.org")
	if out, err := exec.Command(openssl, "pkcs12", "-info", "-in", stem+".p12", "-passin", "pass:", "-noenc").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "BEGIN PRIVATE KEY") || !strings.Contains(string(out), "subject=CN") {
		t.Errorf("openssl pkcs12 -info: %v\n%s", err, out)
	}
	sClient := func(stem, input string, want ...string) {
		t.Helper()
		cmd := exec.Command(openssl, "s_client", "-connect", srv.Listeners["imaps"], "-cert", stem+".crt", "-key", stem+".key",
			"-quiet", "-crlf", "-verify_quiet")
		cmd.Stdin = strings.NewReader(input)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("openssl s_client: %v\n%s", err, out)
		}
		for _, w := range want {
			if !strings.Contains(string(out), w) {
				t.Errorf("openssl s_client output lacks %q:\n%s", w, out)
			}
		}
	}
	sClient(stem, "a SELECT INBOX\nb LOGOUT\n", "* PREAUTH ", "a OK [READ-WRITE]", "b OK")
	// Without PREAUTH: AUTHENTICATE EXTERNAL with "=" after the empty
	// challenge, and with SASL-IR (RFC 4959).
	desk := genKey(t, srv, "desk", "-no-imap-preauth", "a.smith@example.org")
	sClient(desk, "a AUTHENTICATE EXTERNAL\n=\nb SELECT INBOX\nc LOGOUT\n", "* OK ", "\n+ \r\n", "a OK", "b OK [READ-WRITE]")
	sClient(desk, "a AUTHENTICATE EXTERNAL =\nb SELECT INBOX\nc LOGOUT\n", "* OK ", "a OK", "b OK [READ-WRITE]")
	sClient(desk, "a AUTHENTICATE EXTERNAL Ym9iQGV4YW1wbGUub3Jn\nc LOGOUT\n", "a NO [AUTHENTICATIONFAILED]") // As bob.
}

// TestTLSClientPython: Python's imaplib with a client certificate is in
// the authenticated state from the greeting and SELECTs without LOGIN.
func TestTLSClientPython(t *testing.T) {
	t.Parallel()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed (apt-get install python3)")
	}
	srv, trust := startTLSClientLocalhost(t)
	stem := genKey(t, srv, "python", "a.smith@example.org")
	_, port, _ := strings.Cut(srv.Listeners["imaps"], ":")
	script := `
import imaplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
m = imaplib.IMAP4_SSL("localhost", int(sys.argv[1]), ssl_context=ctx)
print("state", m.state)
typ, data = m.select("INBOX")
print("select", typ, data)
m.logout()
`
	out, err := exec.Command(python, "-c", script, port, trust, stem+".crt", stem+".key").CombinedOutput()
	if err != nil {
		t.Fatalf("python imaplib: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "state AUTH\n") || !strings.Contains(string(out), "select OK") {
		t.Errorf("python imaplib:\n%s", out)
	}
}

// TestTLSClientSwaks: swaks with --tls-cert/--tls-key submits without a
// password: the key logs the session in. (swaks 20201014, Debian 12's,
// has no EXTERNAL among its auth types, so --auth EXTERNAL cannot be run.)
func TestTLSClientSwaks(t *testing.T) {
	t.Parallel()
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks not installed (apt-get install -y swaks)")
	}
	srv, _ := startTLSClientLocalhost(t)
	stem := genKey(t, srv, "swaks", "alice@example.org")
	host, port, _ := strings.Cut(srv.Listeners["submission"], ":")
	args := []string{"--server", host, "--port", port, "--tls", "--tls-cert", stem + ".crt", "--tls-key", stem + ".key",
		"--from", "alice@example.org", "--to", "bob@example.org", "--timeout", "20", "--header", "Subject: swaks-key"}
	out, err := exec.Command(swaks, args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "<~  250 2.0.0 Delivered") {
		t.Fatalf("swaks with a client key: %v\n%s", err, out)
	}
	if n := waitInbox(t, srv, "bob", 1); n != 1 {
		t.Errorf("bob's Inbox holds %d messages, want 1", n)
	}
	// A certificate of no registered key: the normal AUTH-required session.
	other := newClientKey(t, "stranger", false)
	args[6], args[8] = other.certFile, other.keyFile
	if out, err := exec.Command(swaks, args...).CombinedOutput(); err == nil || !strings.Contains(string(out), "<~* 530 5.7.0") {
		t.Errorf("swaks with an unknown key: %v, want 530 5.7.0\n%s", err, out)
	}
}

// TestTLSClientMsmtp: msmtp with tls_cert_file/tls_key_file and auth
// external submits over STARTTLS; the log names the key.
func TestTLSClientMsmtp(t *testing.T) {
	t.Parallel()
	msmtp, err := exec.LookPath("msmtp")
	if err != nil {
		t.Skip("msmtp not installed (apt-get install msmtp)")
	}
	srv, trust := startTLSClientLocalhost(t)
	stem := genKey(t, srv, "msmtp", "alice@example.org")
	dir := t.TempDir()
	conf := filepath.Join(dir, "msmtprc")
	_, port, _ := strings.Cut(srv.Listeners["submission"], ":")
	rc := fmt.Sprintf("account default\nhost localhost\nport %s\ntls on\ntls_starttls on\ntls_trust_file %s\ntls_cert_file %s\ntls_key_file %s\nauth external\nuser alice@example.org\nfrom alice@example.org\ntimeout 20\n",
		port, trust, stem+".crt", stem+".key")
	if err := os.WriteFile(conf, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(msmtp, "-C", conf, "bob@example.org")
	cmd.Stdin = strings.NewReader("From: alice@example.org\nTo: bob@example.org\nSubject: msmtp-external\n\nsent with msmtp auth external\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("msmtp auth external: %v\n%s", err, out)
	}
	if n := waitInbox(t, srv, "bob", 1); n != 1 {
		t.Errorf("bob's Inbox holds %d messages, want 1", n)
	}
	re := regexp.MustCompile(`msg=authenticated listener=submission .*mech=EXTERNAL login=alice@example\.org account=alice key=\S+ key_name=msmtp`)
	if !re.MatchString(srv.Log()) {
		t.Errorf("no EXTERNAL login naming the key in the log:\n%s", srv.Log())
	}
}

// TestTLSClientRelay: transport-submission relays from one server to
// another's submissions listener, logged in by its client certificate
// (no password configured); and `mta sendmail` submits with a bare ed25519
// key, its certificate made on the fly.
func TestTLSClientRelay(t *testing.T) {
	t.Parallel()
	b, trust := startTLSClientLocalhost(t)
	relay := newClientKey(t, "relay", false)
	addKey(t, b, relay, "alice@example.org", "relay")
	_, port, _ := strings.Cut(b.Listeners["submissions"], ":")
	a := startServer(t, setup{Hostname: "mail.a.example", Rest: fmt.Sprintf(`
[domains."a.example"]
[accounts.carol]
domain = "a.example"
addresses = ["carol@a.example"]
[transports.tob]
plugin = "transport-submission"
[transports.tob.config]
host = "localhost"
port = %s
tls = "tls"
ca_file = %q
client_cert = %q
client_key = %q
[[routes]]
to_domains = ["example.org"]
transport = "tob"
`, port, trust, relay.certFile, relay.keyFile)})
	// Through a's pickup socket, as alice of b, whose key a holds.
	msg := "From: alice@example.org\nTo: bob@example.org\nSubject: relayed by key\n\nover transport-submission\n"
	if out, errOut, code := a.MTA(msg, []string{"sendmail"}, "-f", "alice@example.org", "bob@example.org"); code != 0 {
		t.Fatalf("mta sendmail on a: exit %d\n%s%s", code, out, errOut)
	}
	if n := waitInbox(t, b, "bob", 1); n != 1 {
		t.Fatalf("bob's Inbox on b holds %d messages, want 1\na:\n%s", n, a.Log())
	}
	re := regexp.MustCompile(`msg=authenticated listener=submissions .*mech=EXTERNAL login=alice@example\.org account=alice key=\S+ key_name=relay`)
	if !re.MatchString(b.Log()) {
		t.Errorf("no EXTERNAL login of the relay key on b:\n%s", b.Log())
	}

	// mta sendmail with only a private key: gen's key file, its
	// certificate registered, the file given alone.
	stem := genKey(t, b, "cron", "a.smith@example.org")
	_, subPort, _ := strings.Cut(b.Listeners["submission"], ":")
	conf := filepath.Join(t.TempDir(), "sendmail.toml")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`hostname = "client.example"
data_dir = "data"
[sendmail]
server = "localhost:%s"
tls = "starttls"
ca_file = %q
client_key = %q
from = "a.smith@example.org"
`, subPort, trust, stem+".key")), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	msg = "To: bob@example.org\nSubject: sendmail by key\n\nno password\n"
	if out, errOut, code := runMTA(t, msg, "sendmail", "-config", conf, "bob@example.org"); code != 0 {
		t.Fatalf("mta sendmail with a bare key: exit %d\n%s%s", code, out, errOut)
	}
	if n := waitInbox(t, b, "bob", 2); n != 2 {
		t.Errorf("bob's Inbox on b holds %d messages, want 2", n)
	}
	re = regexp.MustCompile(`msg=authenticated listener=submission .*mech=EXTERNAL login=a\.smith@example\.org account=alice key=\S+ key_name=cron`)
	if !re.MatchString(b.Log()) {
		t.Errorf("no EXTERNAL login of the bare key on b:\n%s", b.Log())
	}
	// An unregistered key: refused, exit 1 with the server's reply.
	os.Remove(stem + ".key")
	if out, errOut, code := runMTA(t, "", "tlspubkey", "gen", stem+"2"); code != 0 {
		t.Fatalf("gen: %s%s", out, errOut)
	}
	bad := strings.Replace(string(mustRead(t, conf)), stem+".key", stem+"2.key", 1)
	if err := os.WriteFile(conf, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := runMTA(t, msg, "sendmail", "-config", conf, "bob@example.org"); code != 1 || !strings.Contains(errOut, "535 5.7.8") {
		t.Errorf("mta sendmail with an unknown key: exit %d, want 1 and 535 5.7.8:\n%s", code, errOut)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
