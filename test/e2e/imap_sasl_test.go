package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// startIMAPSASLServer serves the default accounts on the IMAP listeners
// too, with the auth-scram and auth-crammd5 plugins enabled.
func startIMAPSASLServer(t *testing.T) *mtatest.Server {
	t.Helper()
	bin := binaries(t)
	return startServer(t, setup{IMAP: true, Rest: allMechanismsAuth + fmt.Sprintf("[plugins.auth-scram]\npath = %q\n[plugins.auth-crammd5]\npath = %q\n",
		bin.Plugins["auth-scram"], bin.Plugins["auth-crammd5"]) + defaultRest})
}

// dialIMAPS connects go-imap's client to an imaps listener speaking exactly
// TLS version v.
func dialIMAPS(t *testing.T, addr string, v uint16) (*imapclient.Client, tls.ConnectionState) {
	t.Helper()
	nc, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	nc.SetDeadline(time.Now().Add(waitShort))
	c := imapclient.New(nc, nil)
	t.Cleanup(func() { c.Close() })
	if err := c.WaitGreeting(); err != nil {
		t.Fatal(err)
	}
	return c, nc.ConnectionState()
}

// imapSASLClient returns a client of mech for user and password on a
// connection with TLS state cs; b applies to SCRAM, where bindNone means
// the -PLUS variants' own binding.
func imapSASLClient(t *testing.T, mech, user, password string, b binding, cs tls.ConnectionState) sasl.Client {
	t.Helper()
	switch mech {
	case "PLAIN":
		return sasl.NewPlainClient("", user, password)
	case "LOGIN":
		return sasl.NewLoginClient(user, password)
	case "CRAM-MD5":
		return cramMD5{user, password}
	}
	if b == bindNone && strings.HasSuffix(mech, "-PLUS") {
		b = bindConn
	}
	return newSCRAMClient(t, mech, user, password, b, cs)
}

// wantIMAPCode checks that err is a NO with response code code.
func wantIMAPCode(t *testing.T, what string, err error, code imap.ResponseCode) {
	t.Helper()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo || ie.Code != code {
		t.Errorf("%s: got %v, want NO [%s]", what, err, code)
	}
}

// Every mechanism over TLS 1.2 and 1.3 logs in to IMAP with the right
// password and not with a wrong one; -PLUS binds to the connection, and a
// tampered binding or a downgrade ("y") fails.
func TestIMAPSASLMechanisms(t *testing.T) {
	t.Parallel()
	srv := startIMAPSASLServer(t)
	user, password := "alice@example.org", srv.Passwords["alice"]
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			c, _ := dialIMAPS(t, srv.Listeners["imaps"], v)
			for _, mech := range strings.Fields(allMechanisms) {
				if !c.Caps().Has(imap.Cap("AUTH=" + mech)) {
					t.Errorf("no AUTH=%s in %v", mech, c.Caps())
				}
			}
			if !c.Caps().Has(imap.CapSASLIR) {
				t.Errorf("no SASL-IR in %v", c.Caps())
			}
			type attempt struct {
				mech     string
				password string
				b        binding
				ok       bool
			}
			var attempts []attempt
			for _, mech := range strings.Fields(allMechanisms) {
				attempts = append(attempts, attempt{mech, password, bindNone, true}, attempt{mech, password + "x", bindNone, false})
			}
			// No more than two failures in a row: the third would be
			// delayed (core/authlimit).
			attempts = append(attempts,
				attempt{"SCRAM-SHA-256-PLUS", password, bindEndPoint, true},
				attempt{"SCRAM-SHA-256-PLUS", password, bindTampered, false},
				attempt{"SCRAM-SHA-1-PLUS", password, bindEndPoint, true},
				attempt{"SCRAM-SHA-1-PLUS", password, bindTampered, false},
				attempt{"SCRAM-SHA-256", password, bindAdvertise, false}, // Downgrade.
			)
			for _, a := range attempts {
				name := fmt.Sprintf("%s binding %d right %v", a.mech, a.b, a.ok)
				c, cs := dialIMAPS(t, srv.Listeners["imaps"], v)
				err := c.Authenticate(imapSASLClient(t, a.mech, user, a.password, a.b, cs))
				if !a.ok {
					wantIMAPCode(t, name, err, imap.ResponseCodeAuthenticationFailed)
					continue
				}
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				if _, err := c.Select("INBOX", nil).Wait(); err != nil {
					t.Errorf("%s: SELECT after AUTHENTICATE: %v", name, err)
				}
				c.Logout().Wait()
			}
		})
	}
}

// imapConn is IMAP spoken by hand, for STARTTLS and exact responses.
type imapConn struct {
	t   *testing.T
	nc  net.Conn
	r   *bufio.Reader
	tag int
}

func dialIMAP(t *testing.T, addr string) (*imapConn, string) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(waitShort))
	c := &imapConn{t: t, nc: nc, r: bufio.NewReader(nc)}
	t.Cleanup(func() { c.nc.Close() })
	return c, c.line()
}

func (c *imapConn) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading response: %v", err)
	}
	return strings.TrimSuffix(l, "\r\n")
}

func (c *imapConn) write(l string) {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.nc, "%s\r\n", l); err != nil {
		c.t.Fatal(err)
	}
}

// cmd sends a command and returns its untagged responses, joined, and the
// tagged one without the tag.
func (c *imapConn) cmd(format string, args ...any) (untagged, result string) {
	c.t.Helper()
	c.tag++
	tag := fmt.Sprintf("t%d", c.tag)
	c.write(tag + " " + fmt.Sprintf(format, args...))
	var u []string
	for {
		l := c.line()
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			return strings.Join(u, "\n"), rest
		}
		u = append(u, l)
	}
}

// starttls upgrades the connection and returns its TLS state.
func (c *imapConn) starttls() tls.ConnectionState {
	c.t.Helper()
	if _, res := c.cmd("STARTTLS"); !strings.HasPrefix(res, "OK") {
		c.t.Fatalf("STARTTLS: %s", res)
	}
	tc := tls.Client(c.nc, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.nc, c.r = tc, bufio.NewReader(tc)
	return tc.ConnectionState()
}

// authenticate runs AUTHENTICATE with sc, its initial response with
// SASL-IR, and returns the tagged response without the tag.
func (c *imapConn) authenticate(sc sasl.Client) string {
	c.t.Helper()
	mech, ir, err := sc.Start()
	if err != nil {
		c.t.Fatal(err)
	}
	c.tag++
	tag := fmt.Sprintf("t%d", c.tag)
	switch {
	case ir == nil:
		c.write(tag + " AUTHENTICATE " + mech)
	case len(ir) == 0:
		c.write(tag + " AUTHENTICATE " + mech + " =") // RFC 4959 §3.
	default:
		c.write(tag + " AUTHENTICATE " + mech + " " + base64.StdEncoding.EncodeToString(ir))
	}
	for {
		l := c.line()
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			return rest
		}
		challenge, ok := strings.CutPrefix(l, "+ ")
		if !ok {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(challenge)
		if err != nil {
			c.t.Fatalf("challenge %q: %v", l, err)
		}
		resp, err := sc.Next(b)
		if err != nil {
			c.t.Fatalf("challenge %q: %v", b, err)
		}
		c.write(base64.StdEncoding.EncodeToString(resp))
	}
}

// On the STARTTLS listener: no AUTH= and no AUTHENTICATE before TLS; after
// it, the mechanisms in order, and SCRAM-SHA-256-PLUS binds to the new TLS
// connection.
func TestIMAPSASLStartTLS(t *testing.T) {
	t.Parallel()
	srv := startIMAPSASLServer(t)
	user, password := "alice@example.org", srv.Passwords["alice"]
	c, greeting := dialIMAP(t, srv.Listeners["imap"])
	if !strings.Contains(greeting, " LOGINDISABLED") || strings.Contains(greeting, "AUTH=") {
		t.Errorf("greeting before TLS: %s", greeting)
	}
	if res := c.authenticate(cramMD5{user, password}); !strings.HasPrefix(res, "NO [PRIVACYREQUIRED]") {
		t.Errorf("AUTHENTICATE before TLS: %s", res)
	}
	cs := c.starttls()
	caps, _ := c.cmd("CAPABILITY")
	want := " SASL-IR LITERAL- AUTH=" + strings.ReplaceAll(allMechanisms, " ", " AUTH=")
	if !strings.HasSuffix(caps, want) {
		t.Errorf("capabilities after STARTTLS: %s\nwant the end: %s", caps, want)
	}
	if res := c.authenticate(imapSASLClient(t, "SCRAM-SHA-256-PLUS", user, password, bindNone, cs)); !strings.HasPrefix(res, "OK [CAPABILITY ") {
		t.Fatalf("AUTHENTICATE SCRAM-SHA-256-PLUS after STARTTLS: %s", res)
	}
	if _, res := c.cmd("SELECT INBOX"); !strings.HasPrefix(res, "OK") {
		t.Errorf("SELECT: %s", res)
	}
}

// Killing auth-scram makes its mechanisms answer NO [UNAVAILABLE] at
// once, while CRAM-MD5 works on; after the restart SCRAM works again.
func TestIMAPSASLPluginDown(t *testing.T) {
	t.Parallel()
	srv := startIMAPSASLServer(t)
	user, password := "alice@example.org", srv.Passwords["alice"]
	login := func(mech string) error {
		c, cs := dialIMAPS(t, srv.Listeners["imaps"], tls.VersionTLS13)
		defer c.Close()
		return c.Authenticate(imapSASLClient(t, mech, user, password, bindNone, cs))
	}
	if err := login("SCRAM-SHA-256"); err != nil {
		t.Fatalf("before kill: %v", err)
	}
	pid, err := srv.PluginPID("auth-scram")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	err = login("SCRAM-SHA-256-PLUS")
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("AUTHENTICATE with the plugin down answered after %v", d)
	}
	wantIMAPCode(t, "AUTHENTICATE with the plugin down", err, imap.ResponseCodeUnavailable)
	if err := login("CRAM-MD5"); err != nil {
		t.Errorf("CRAM-MD5 while auth-scram is down: %v", err)
	}
	if !waitFor(waitShort, func() bool {
		p, err := srv.PluginPID("auth-scram")
		return err == nil && p != pid
	}) {
		t.Fatal("auth-scram not restarted")
	}
	if err := login("SCRAM-SHA-256-PLUS"); err != nil {
		t.Errorf("after restart: %v", err)
	}
}

// cyrusTool finds a test client of cyrus-clients, which Debian installs
// outside PATH.
func cyrusTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	p := filepath.Join("/usr/lib/cyrus/bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Skip("cyrus-clients not installed (apt-get install cyrus-clients)")
	}
	return p
}

// cyrusBaseMechRE matches the AUTHENTICATE or AUTH command of a Cyrus SASL
// client binding to the channel ("p=" GS2 flag, base64 "cD1") under the
// name of the base mechanism (a SCRAM name without -PLUS).
var cyrusBaseMechRE = regexp.MustCompile(`C: \S* ?AUTH(?:ENTICATE)? SCRAM-SHA-[0-9]+ cD1`)

// imtest and smtptest of cyrus-clients log in with SCRAM, over IMAP and
// SMTP submission with implicit TLS and with STARTTLS, and fail with a
// wrong password.
//
// They take the channel binding from OpenSSL as tls-unique only, also on
// TLS 1.3, where it is undefined (RFC 9266 §3): -PLUS runs over TLS 1.2,
// which an OpenSSL configuration imposes on them.
func TestIMAPSASLCyrusClients(t *testing.T) {
	t.Parallel()
	imtest, smtptest := cyrusTool(t, "imtest"), cyrusTool(t, "smtptest")
	srv := startIMAPSASLServer(t)
	tls12 := filepath.Join(t.TempDir(), "openssl-tls12.cnf")
	if err := os.WriteFile(tls12, []byte("openssl_conf = conf\n[conf]\nssl_conf = ssl\n[ssl]\nsystem_default = tls\n[tls]\nMaxProtocol = TLSv1.2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		tool     string
		listener string
		tlsFlags []string // -s: implicit TLS; -t "": STARTTLS.
		mech     string
		tls12    bool
		right    bool
	}{
		{imtest, "imaps", []string{"-s"}, "SCRAM-SHA-256-PLUS", true, true},
		{imtest, "imaps", []string{"-s"}, "SCRAM-SHA-1", false, true},
		{imtest, "imaps", []string{"-s"}, "SCRAM-SHA-1", false, false},
		{imtest, "imap", []string{"-t", ""}, "SCRAM-SHA-1", true, true},
		{smtptest, "submissions", []string{"-s"}, "SCRAM-SHA-256-PLUS", true, true},
		{smtptest, "submissions", []string{"-s"}, "SCRAM-SHA-1", false, true},
		{smtptest, "submission", []string{"-t", ""}, "SCRAM-SHA-1", false, false},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s %s %s tls1.2=%v right=%v", filepath.Base(tt.tool), tt.listener, tt.mech, tt.tls12, tt.right)
		t.Run(name, func(t *testing.T) {
			password := srv.Passwords["alice"]
			if !tt.right {
				password += "x"
			}
			host, port, _ := net.SplitHostPort(srv.Listeners[tt.listener])
			args := append(append([]string{}, tt.tlsFlags...), "-p", port, "-a", "alice@example.org", "-w", password, "-m", tt.mech, host)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, tt.tool, args...)
			cmd.Env = os.Environ()
			if tt.tls12 {
				cmd.Env = append(cmd.Env, "OPENSSL_CONF="+tls12)
			}
			// Without input, they log out and exit, authenticated or not,
			// with status 0 either way.
			out, err := cmd.CombinedOutput()
			authenticated := strings.Contains(string(out), "\nAuthenticated.\n")
			switch {
			case err != nil:
				t.Fatalf("%v\n%s", err, out)
			case tt.tls12 && !strings.Contains(string(out), "TLSv1.2"):
				t.Fatalf("not TLS 1.2\n%s", out)
			case tt.right && !authenticated && strings.HasSuffix(tt.mech, "-PLUS") && cyrusBaseMechRE.Match(out):
				// Cyrus SASL (2.1.28 at least) returns the base name from
				// sasl_client_start while binding, and auth-scram refuses
				// a binding under a name without -PLUS (RFC 5802 §6).
				t.Skipf("the client binds to the channel (\"p=\") under the base name of %s, which auth-scram refuses: %s", tt.mech, cyrusBaseMechRE.Find(out))
			case tt.right && !authenticated:
				t.Errorf("not authenticated\n%s", out)
			case !tt.right && (authenticated || !strings.Contains(string(out), "Authentication failed")):
				t.Errorf("want authentication failed\n%s", out)
			}
		})
	}
}
