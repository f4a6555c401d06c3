package smtpclient

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/switchyard-mta/switchyard/sdk/smtptest"
)

func TestSelectMechanism(t *testing.T) {
	bound := &tls.ConnectionState{Version: tls.VersionTLS12, TLSUnique: make([]byte, 12)}
	unbound := &tls.ConnectionState{Version: tls.VersionTLS12} // Resumed without extended master secret.
	all := "SCRAM-SHA-1 SCRAM-SHA-1-PLUS SCRAM-SHA-256 SCRAM-SHA-256-PLUS CRAM-MD5 PLAIN LOGIN"
	for _, tc := range []struct {
		preferred []string
		offered   string
		cs        *tls.ConnectionState
		want      string // "" for none.
	}{
		{nil, all, bound, "SCRAM-SHA-256-PLUS"},
		{nil, all, unbound, "SCRAM-SHA-256"},
		{nil, all, nil, "SCRAM-SHA-256"},
		{nil, "SCRAM-SHA-1 SCRAM-SHA-1-PLUS PLAIN", bound, "SCRAM-SHA-1-PLUS"},
		{nil, "scram-sha-1 cram-md5", bound, "SCRAM-SHA-1"},
		{nil, "LOGIN PLAIN CRAM-MD5", nil, "CRAM-MD5"},
		{nil, "LOGIN PLAIN", bound, "PLAIN"},
		{nil, "CRAM-MD5 login", bound, "CRAM-MD5"},
		{nil, "LOGIN PLAIN", nil, ""}, // No password in clear by default.
		{nil, "SCRAM-SHA-256-PLUS", nil, ""},
		{nil, "XOAUTH2 GSSAPI", bound, ""},
		{[]string{"LOGIN", "PLAIN"}, "PLAIN LOGIN", bound, "LOGIN"},
		{[]string{"login"}, "LOGIN", nil, "LOGIN"}, // As configured.
		{[]string{"LOGIN"}, "PLAIN", bound, ""},
		{[]string{"SCRAM-SHA-256"}, all, bound, "SCRAM-SHA-256"},
		{[]string{"SCRAM-SHA-256-PLUS", "PLAIN"}, all, nil, "PLAIN"},
		{[]string{"XOAUTH2", "CRAM-MD5"}, "XOAUTH2 CRAM-MD5", bound, "CRAM-MD5"},
	} {
		got, ok := SelectMechanism(tc.preferred, strings.Fields(tc.offered), tc.cs)
		if ok != (tc.want != "") || got != tc.want {
			t.Errorf("%v of %q (TLS %v): got %q %v, want %q", tc.preferred, tc.offered, tc.cs != nil, got, ok, tc.want)
		}
	}
}

// TestAuth authenticates with every mechanism against a server of its own,
// with the right and a wrong password, over TLS 1.2, TLS 1.3 and plaintext.
func TestAuth(t *testing.T) {
	for _, mech := range Mechanisms() {
		for _, version := range []uint16{0, tls.VersionTLS12, tls.VersionTLS13} {
			plus := strings.HasSuffix(mech, "-PLUS")
			if version == 0 && (plus || mech == "PLAIN" || mech == "LOGIN") {
				continue // Not without TLS.
			}
			for _, pass := range []string{"s3cret", "wrong"} {
				name := fmt.Sprintf("%s/tls%x/%s", mech, version, pass)
				t.Run(name, func(t *testing.T) {
					o := smtptest.Options{Mechanisms: []string{mech}, Users: map[string]string{"relay@example.org": "s3cret"}, AllowInsecureAuth: version == 0}
					if version != 0 {
						o.TLS, o.TLSConfig = smtptest.StartTLS, &tls.Config{MaxVersion: version}
					}
					s := smtptest.NewServer(t, o)
					cfg := &Config{}
					if version != 0 {
						cfg = &Config{TLS: TLSStartTLS, TLSConfig: s.ClientConfig()}
					}
					c := dial(t, s.Addr, cfg)
					got, err := c.Authenticate("relay@example.org", pass, nil)
					if got != mech {
						t.Errorf("used %q", got)
					}
					recs := s.Auths()
					if len(recs) != 1 {
						t.Fatalf("server saw %d exchanges: %+v (client: %v)", len(recs), recs, err)
					}
					rec := recs[0]
					if pass == "wrong" {
						var re *ReplyError
						if !errors.As(err, &re) || re.Reply.Code != 535 || re.Command != "AUTH "+mech || rec.OK {
							t.Fatalf("wrong password: %v; server ok %v", err, rec.OK)
						}
						return
					}
					if err != nil || !rec.OK {
						t.Fatalf("authenticate: %v; server ok %v", err, rec.OK)
					}
					if !strings.HasPrefix(mech, "SCRAM") {
						return
					}
					// RFC 5802 §6: the gs2 flag, and for -PLUS the same
					// binding data on both sides.
					wantGS2 := "n,,"
					switch {
					case plus && version == tls.VersionTLS13:
						wantGS2 = "p=tls-exporter,,"
					case plus:
						wantGS2 = "p=tls-unique,,"
					case version != 0:
						wantGS2 = "y,," // TLS, but no -PLUS offered.
					}
					if rec.GS2 != wantGS2 {
						t.Errorf("gs2 header %q, want %q", rec.GS2, wantGS2)
					}
					if plus {
						size := 32 // RFC 9266 §2
						if version == tls.VersionTLS12 {
							size = 12 // The Finished message's verify_data (RFC 5246 §7.4.9).
						}
						if len(rec.ServerBinding) != size || !bytes.Equal(rec.ClientBinding, rec.ServerBinding) {
							t.Errorf("binding data: client %x, server %x", rec.ClientBinding, rec.ServerBinding)
						}
					} else if len(rec.ClientBinding) != 0 {
						t.Errorf("binding data %x sent without -PLUS", rec.ClientBinding)
					}
					// Authenticated: mail goes through.
					r, err := c.Mail("relay@example.org", nil)
					want(t, "MAIL", r, err, 250, "2.0.0")
				})
			}
		}
	}
}

// TestSCRAMNegotiation covers the choice of mechanism and gs2 flag when
// the server offers both variants, and what a client must refuse.
func TestSCRAMNegotiation(t *testing.T) {
	both := []string{"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "PLAIN"}
	for _, tc := range []struct {
		name       string
		mechanisms []string // Offered.
		fault      smtptest.SCRAMFault
		configured []string
		used       string
		gs2        string
		err        error // ErrSASL, or nil for a 535 when ok is false.
		ok         bool
	}{
		{name: "default picks -PLUS", mechanisms: both, used: "SCRAM-SHA-256-PLUS", gs2: "p=tls-exporter,,", ok: true},
		{name: "configured plain variant", mechanisms: both, configured: []string{"SCRAM-SHA-256"}, used: "SCRAM-SHA-256", gs2: "n,,", ok: true},
		{name: "only PLAIN over TLS", mechanisms: []string{"PLAIN", "LOGIN"}, used: "PLAIN", ok: true},
		{name: "stripped -PLUS is a downgrade", mechanisms: []string{"SCRAM-SHA-256"}, fault: smtptest.SCRAMPlusStripped, used: "SCRAM-SHA-256", gs2: "y,,"},
		{name: "wrong binding data", mechanisms: both, fault: smtptest.SCRAMWrongBinding, used: "SCRAM-SHA-256-PLUS", gs2: "p=tls-exporter,,"},
		{name: "wrong server signature", mechanisms: both, fault: smtptest.SCRAMWrongSignature, used: "SCRAM-SHA-256-PLUS", gs2: "p=tls-exporter,,", err: ErrSASL},
		{name: "no server-final", mechanisms: both, fault: smtptest.SCRAMNoFinal, used: "SCRAM-SHA-256-PLUS", gs2: "p=tls-exporter,,", err: ErrSASL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := smtptest.NewServer(t, smtptest.Options{TLS: smtptest.ImplicitTLS, Mechanisms: tc.mechanisms, Users: map[string]string{"u": "p"}, SCRAMFault: tc.fault})
			c := dial(t, s.Addr, &Config{TLS: TLSImplicit, TLSConfig: s.ClientConfig()})
			used, err := c.Authenticate("u", "p", tc.configured)
			if used != tc.used {
				t.Errorf("used %q, want %q", used, tc.used)
			}
			recs := s.Auths()
			if len(recs) != 1 || recs[0].GS2 != tc.gs2 {
				t.Fatalf("server saw %+v, want gs2 %q", recs, tc.gs2)
			}
			var re *ReplyError
			switch {
			case tc.ok:
				if err != nil {
					t.Fatal(err)
				}
			case tc.err != nil:
				if !errors.Is(err, tc.err) {
					t.Fatalf("got %v, want %v", err, tc.err)
				}
			default:
				if !errors.As(err, &re) || re.Reply.Code != 535 {
					t.Fatalf("got %v, want a 535 reply", err)
				}
			}
		})
	}
}

func TestAuthenticateErrors(t *testing.T) {
	// go-smtp does not offer AUTH without TLS.
	s := smtptest.NewServer(t, smtptest.Options{Mechanisms: []string{"PLAIN"}})
	c := dial(t, s.Addr, &Config{})
	if _, err := c.Authenticate("u", "p", nil); !errors.Is(err, ErrNoAUTH) {
		t.Errorf("got %v, want ErrNoAUTH", err)
	}
	s = smtptest.NewServer(t, smtptest.Options{TLS: smtptest.ImplicitTLS, Mechanisms: []string{"PLAIN"}})
	c = dial(t, s.Addr, &Config{TLS: TLSImplicit, TLSConfig: s.ClientConfig()})
	if _, err := c.Authenticate("u", "p", []string{"LOGIN"}); !errors.Is(err, ErrNoMechanism) || !strings.Contains(err.Error(), "PLAIN") {
		t.Errorf("got %v, want ErrNoMechanism naming the offer", err)
	}
	if strings.Contains(s.Trace(), "\nAUTH") {
		t.Error("AUTH sent without a usable mechanism")
	}
}

// TestLongInitialResponse: an initial response that would make the AUTH
// line longer than 512 octets follows an empty challenge (RFC 4954 §4).
func TestLongInitialResponse(t *testing.T) {
	user := strings.Repeat("u", 400)
	s := smtptest.NewServer(t, smtptest.Options{TLS: smtptest.ImplicitTLS, Mechanisms: []string{"PLAIN"}, Users: map[string]string{user: "p"}})
	c := dial(t, s.Addr, &Config{TLS: TLSImplicit, TLSConfig: s.ClientConfig()})
	if _, err := c.Authenticate(user, "p", nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s.Trace(), "AUTH PLAIN\r\n") {
		t.Error("initial response sent on the AUTH line")
	}
}

// TestLoginPrompts: LOGIN answers prompts by what they ask, or else by order.
func TestLoginPrompts(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString
	for _, tc := range []struct{ first, second string }{
		{"Username:", "Password:"},
		{"User Name", "Passwort"},
		{"", ""},
		{"?", "?"},
	} {
		t.Run(tc.first, func(t *testing.T) {
			var got []string
			addr := scripted(t, "220 x", func(cmd string) string {
				switch {
				case strings.HasPrefix(cmd, "EHLO"):
					return "250-x\r\n250 AUTH LOGIN"
				case cmd == "AUTH LOGIN":
					return "334 " + b64([]byte(tc.first))
				}
				dec, _ := base64.StdEncoding.DecodeString(cmd)
				got = append(got, string(dec))
				if len(got) == 1 {
					return "334 " + b64([]byte(tc.second))
				}
				return "235 2.7.0 ok"
			})
			c := dial(t, addr, &Config{})
			if _, err := c.Authenticate("user", "pass", []string{"LOGIN"}); err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, " ") != "user pass" {
				t.Errorf("answers %q", got)
			}
		})
	}
}

// TestCRAMMD5 checks the example of RFC 2195 §2.
func TestCRAMMD5(t *testing.T) {
	c, err := NewSASLClient("cram-md5", "tim", "tanstaaftanstaaf", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mech, ir, err := c.Start(); mech != "CRAM-MD5" || ir != nil || err != nil {
		t.Fatalf("start: %q %q %v", mech, ir, err)
	}
	resp, err := c.Next([]byte("<1896.697170952@postoffice.reston.mci.net>"))
	if err != nil || string(resp) != "tim b913a602c7eda7a495b4e6e7334d3890" {
		t.Errorf("got %q, %v", resp, err)
	}
	if _, err := c.Next([]byte("again")); err == nil {
		t.Error("answered a second challenge")
	}
	if _, err := NewSASLClient("SCRAM-SHA-256-PLUS", "u", "p", nil, nil); err == nil {
		t.Error("SCRAM-SHA-256-PLUS without TLS")
	}
	if _, err := NewSASLClient("XOAUTH2", "u", "p", nil, nil); err == nil {
		t.Error("unsupported mechanism")
	}
}
