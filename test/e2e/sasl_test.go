package e2e

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/xdg-go/scram"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// allMechanisms is what submission offers over TLS with both mechanism
// plugins loaded, strongest first.
const allMechanisms = "SCRAM-SHA-256-PLUS SCRAM-SHA-256 SCRAM-SHA-1-PLUS SCRAM-SHA-1 CRAM-MD5 PLAIN LOGIN"

// startSASLServer serves the default accounts with the auth-scram and
// auth-crammd5 plugins enabled.
func startSASLServer(t *testing.T) *mtatest.Server {
	t.Helper()
	bin := binaries(t)
	return startServer(t, setup{Rest: allMechanismsAuth + fmt.Sprintf("[plugins.auth-scram]\npath = %q\n[plugins.auth-crammd5]\npath = %q\n",
		bin.Plugins["auth-scram"], bin.Plugins["auth-crammd5"]) + defaultRest})
}

// allMechanismsAuth offers allMechanisms: the default leaves the -PLUS
// variants out (core/sasl.Default), and these tests run them.
var allMechanismsAuth = "[auth]\nmechanisms = [\"" + strings.Join(strings.Fields(allMechanisms), "\", \"") + "\"]\n"

// dialTLSVersion connects to a submission listener, with STARTTLS or
// implicit TLS, speaking exactly TLS version v.
func dialTLSVersion(t *testing.T, addr string, implicitTLS bool, v uint16) *smtp.Client {
	t.Helper()
	tc := &tls.Config{InsecureSkipVerify: true, MinVersion: v, MaxVersion: v}
	var c *smtp.Client
	var err error
	if implicitTLS {
		c, err = smtp.DialTLS(addr, tc)
	} else {
		c, err = smtp.DialStartTLS(addr, tc)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	return c
}

// binding says how a SCRAM client binds to the TLS connection.
type binding int

const (
	bindNone      binding = iota // GS2 flag "n": SCRAM without -PLUS.
	bindAdvertise                // GS2 flag "y": could bind, saw no -PLUS.
	bindConn                     // -PLUS: tls-exporter on TLS 1.3, tls-unique on 1.2.
	bindEndPoint                 // -PLUS with tls-server-end-point.
	bindTampered                 // -PLUS with a flipped bit in the binding data.
)

// scramClient is a go-sasl client on xdg-go/scram's client, bound as b to
// the connection state cs.
type scramClient struct {
	mech string
	conv *scram.ClientConversation
}

func newSCRAMClient(t *testing.T, mech, user, password string, b binding, cs tls.ConnectionState) *scramClient {
	t.Helper()
	hash := scram.SHA256
	if strings.HasPrefix(mech, "SCRAM-SHA-1") {
		hash = scram.SHA1
	}
	client, err := hash.NewClient(user, password, "")
	if err != nil {
		t.Fatal(err)
	}
	var cb scram.ChannelBinding
	switch b {
	case bindNone:
		return &scramClient{mech, client.NewConversation()}
	case bindAdvertise:
		return &scramClient{mech, client.NewConversationAdvertisingChannelBinding()}
	case bindEndPoint:
		cb, err = scram.NewTLSServerEndpointBinding(&cs)
	default:
		if cs.Version == tls.VersionTLS13 {
			cb, err = scram.NewTLSExporterBinding(&cs)
		} else {
			cb = scram.NewTLSUniqueBinding(cs.TLSUnique)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if b == bindTampered {
		cb.Data[0] ^= 1
	}
	return &scramClient{mech, client.NewConversationWithChannelBinding(cb)}
}

func (c *scramClient) Start() (string, []byte, error) {
	first, err := c.conv.Step("")
	return c.mech, []byte(first), err
}

// Next answers server-first with client-final, and the server-final
// message, sent as a last challenge, with an empty response once verified.
func (c *scramClient) Next(challenge []byte) ([]byte, error) {
	resp, err := c.conv.Step(string(challenge))
	if err != nil {
		return nil, err
	}
	return []byte(resp), nil
}

// cramMD5 is the client side of CRAM-MD5 (RFC 2195).
type cramMD5 struct{ user, password string }

func (c cramMD5) Start() (string, []byte, error) { return "CRAM-MD5", nil, nil }

func (c cramMD5) Next(challenge []byte) ([]byte, error) {
	mac := hmac.New(md5.New, []byte(c.password))
	mac.Write(challenge)
	return []byte(c.user + " " + hex.EncodeToString(mac.Sum(nil))), nil
}

// authClient returns a client of mech for user and password on c.
func authClient(t *testing.T, c *smtp.Client, mech, user, password string, b binding) sasl.Client {
	t.Helper()
	switch mech {
	case "PLAIN":
		return sasl.NewPlainClient("", user, password)
	case "LOGIN":
		return sasl.NewLoginClient(user, password)
	case "CRAM-MD5":
		return cramMD5{user, password}
	}
	cs, ok := c.TLSConnectionState()
	if !ok {
		t.Fatal("no TLS")
	}
	if b == bindNone && strings.HasSuffix(mech, "-PLUS") {
		b = bindConn
	}
	return newSCRAMClient(t, mech, user, password, b, cs)
}

// Every mechanism over TLS 1.2 and 1.3 logs in with the right password and
// not with a wrong one; -PLUS binds to the connection, and a tampered
// binding or a downgrade ("y") fails.
func TestSASLMechanisms(t *testing.T) {
	t.Parallel()
	srv := startSASLServer(t)
	user, password := "alice@example.org", srv.Passwords["alice"]
	versions := []struct {
		name        string
		v           uint16
		listener    string
		implicitTLS bool
	}{
		{"TLS1.2-starttls", tls.VersionTLS12, "submission", false},
		{"TLS1.3-implicit", tls.VersionTLS13, "submissions", true},
	}
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			c := dialTLSVersion(t, srv.Listeners[ver.listener], ver.implicitTLS, ver.v)
			if ok, list := c.Extension("AUTH"); !ok || list != allMechanisms {
				t.Fatalf("AUTH %q, want %q", list, allMechanisms)
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
			attempts = append(attempts,
				attempt{"SCRAM-SHA-256-PLUS", password, bindEndPoint, true},
				attempt{"SCRAM-SHA-1-PLUS", password, bindEndPoint, true},
				attempt{"SCRAM-SHA-256-PLUS", password, bindTampered, false},
				attempt{"SCRAM-SHA-1-PLUS", password, bindTampered, false},
				attempt{"SCRAM-SHA-256", password, bindAdvertise, false}, // Downgrade.
			)
			for _, a := range attempts {
				name := fmt.Sprintf("%s binding %d right %v", a.mech, a.b, a.ok)
				c := dialTLSVersion(t, srv.Listeners[ver.listener], ver.implicitTLS, ver.v)
				cs, _ := c.TLSConnectionState()
				if cs.Version != ver.v {
					t.Fatalf("TLS version %x", cs.Version)
				}
				err := c.Auth(authClient(t, c, a.mech, user, a.password, a.b))
				if a.ok {
					if err != nil {
						t.Errorf("%s: %v", name, err)
						continue
					}
					if err := c.Mail(user, nil); err != nil {
						t.Errorf("%s: MAIL after AUTH: %v", name, err)
					}
					continue
				}
				wantSMTPError(t, name, err, 535, smtp.EnhancedCode{5, 7, 8})
			}
		})
	}
}

// Killing auth-scram makes its mechanisms answer 454 4.7.0 at once, while
// CRAM-MD5 works on; after the restart SCRAM works again.
func TestSASLPluginDown(t *testing.T) {
	t.Parallel()
	srv := startSASLServer(t)
	addr := srv.Listeners["submissions"]
	user, password := "alice@example.org", srv.Passwords["alice"]
	login := func(mech string) error {
		c := dialTLSVersion(t, addr, true, tls.VersionTLS13)
		defer c.Close()
		return c.Auth(authClient(t, c, mech, user, password, bindNone))
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
		t.Errorf("AUTH with the plugin down answered after %v", d)
	}
	wantSMTPError(t, "AUTH with the plugin down", err, 454, smtp.EnhancedCode{4, 7, 0})
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

// `mta account passwd` derives new SCRAM and CRAM-MD5 secrets, through the
// running server and with no server running.
func TestSASLPasswd(t *testing.T) {
	t.Parallel()
	srv := startSASLServer(t)
	addr := srv.Listeners["submissions"]
	user := "bob@example.org"
	check := func(when, password string, ok bool) {
		t.Helper()
		for _, mech := range []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN"} {
			c := dialTLSVersion(t, addr, true, tls.VersionTLS13)
			err := c.Auth(authClient(t, c, mech, user, password, bindNone))
			c.Close()
			if ok && err != nil {
				t.Errorf("%s: %s: %v", when, mech, err)
			} else if !ok {
				wantSMTPError(t, when+": "+mech, err, 535, smtp.EnhancedCode{5, 7, 8})
			}
		}
	}
	passwd := func(password string) {
		t.Helper()
		if out, errOut, code := srv.MTA(password+"\n", []string{"account", "passwd"}, "bob"); code != 0 {
			t.Fatalf("mta account passwd: exit %d\n%s%s", code, out, errOut)
		}
	}
	old := srv.Passwords["bob"]
	check("generated password", old, true)

	passwd("running-password")
	check("old password, changed while running", old, false)
	check("changed while running", "running-password", true)

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	passwd("stopped-password")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	addr = srv.Listeners["submissions"]
	check("changed while stopped", "stopped-password", true)
	check("password before, changed while stopped", "running-password", false)
}

// swaks submits with CRAM-MD5, PLAIN and LOGIN.
func TestSASLSwaks(t *testing.T) {
	t.Parallel()
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks not installed (apt-get install -y swaks)")
	}
	srv := startSASLServer(t)
	host, port, _ := strings.Cut(srv.Listeners["submission"], ":")
	for _, mech := range []string{"CRAM-MD5", "PLAIN", "LOGIN"} {
		for _, right := range []bool{true, false} {
			password := srv.Passwords["alice"]
			if !right {
				password += "x"
			}
			cmd := exec.Command(swaks, "--server", host, "--port", port, "--tls", "--auth", mech,
				"--auth-user", "alice@example.org", "--auth-password="+password,
				"--from", "alice@example.org", "--to", "bob@example.org", "--timeout", "20")
			out, err := cmd.CombinedOutput()
			if right && (err != nil || !strings.Contains(string(out), "<~  235 ")) {
				t.Errorf("swaks --auth %s: %v\n%s", mech, err, out)
			}
			if !right && (err == nil || !strings.Contains(string(out), "<~* 535 5.7.8")) {
				t.Errorf("swaks --auth %s, wrong password: %v\n%s", mech, err, out)
			}
		}
	}
}

// An [auth] mechanism no loaded plugin serves is an error with its line,
// from `mta config check` and from `mta serve`.
func TestSASLConfig(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	cfg := serverConfig(bin, setup{Rest: fmt.Sprintf("[plugins.auth-crammd5]\npath = %q\n", bin.Plugins["auth-crammd5"]) +
		"[auth]\nmechanisms = [\n  \"CRAM-MD5\",\n  \"SCRAM-SHA-256\",\n  \"PLAIN\",\n]\n" + defaultRest},
		mtatest.FreeAddr(), mtatest.FreeAddr(), mtatest.FreeAddr())
	path := filepath.Join(t.TempDir(), "mta.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	line := slices.Index(strings.Split(cfg, "\n"), `  "SCRAM-SHA-256",`) + 1
	want := fmt.Sprintf("%s:%d: auth.mechanisms[1]: SCRAM-SHA-256: no loaded plugin serves it", path, line)
	for _, cmd := range [][]string{{"config", "check"}, {"serve"}} {
		stdout, stderr, code := runMTA(t, "", append(cmd, "-config", path)...)
		if code != 2 || !strings.Contains(stderr, want) {
			t.Errorf("mta %s: exit %d, want 2 and %q\n%s%s", strings.Join(cmd, " "), code, want, stdout, stderr)
		}
	}
}
