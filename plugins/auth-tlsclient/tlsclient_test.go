package authtlsclient

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/hostrpc"
	"github.com/switchyard-mta/switchyard/sdk/plugintest"
)

// certificate returns a self-signed certificate of a new ed25519 key,
// expired if expired.
func certificate(t testing.TB, expired bool) *x509.Certificate {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-time.Hour)
	if expired {
		start = time.Now().AddDate(-2, 0, 0)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "phone"}, NotBefore: start, NotAfter: start.AddDate(1, 0, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func spkiHash(c *x509.Certificate) []byte {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return sum[:]
}

type fixture struct {
	c     hostrpc.Client
	logs  *plugintest.LogBuffer
	alice *x509.Certificate // Known, of account alice.
	other *x509.Certificate // Unknown.
	host  *plugintest.Host
}

// setup serves the plugin over real gRPC, configured with host (nil: a
// plugintest.Host knowing alice's key).
func setup(t *testing.T, host sdk.Host) *fixture {
	t.Helper()
	f := &fixture{logs: &plugintest.LogBuffer{}, alice: certificate(t, true), other: certificate(t, false)}
	if host == nil {
		f.host = &plugintest.Host{}
		f.host.SetTLSPublicKey(spkiHash(f.alice), sdk.TLSKey{
			Account: "alice", Login: "alice@example.org", Name: "phone",
			Addresses: []string{"alice@example.org", "a.smith@example.com"},
		})
		host = f.host
	}
	m := &mechanism{log: slog.New(slog.NewJSONHandler(f.logs, nil))}
	f.c = plugintest.Connect(t, &sdk.Plugin{Name: "auth-tlsclient", Version: "0.1.0", Mechanisms: []string{mechanismName}, Mechanism: m, Configurer: m}, host)
	if err := f.c.Configure(t.Context(), &sdk.Configuration{Kind: sdk.KindMechanism, Instance: "auth-tlsclient"}); err != nil {
		t.Fatal(err)
	}
	return f
}

func conn(protocol string, cert *x509.Certificate) sdk.ConnInfo {
	ci := sdk.ConnInfo{Protocol: protocol, RemoteAddr: "192.0.2.1:4000", TLS: &sdk.TLSInfo{Version: 0x0304}}
	if cert != nil {
		ci.TLS.PeerCertificates = []*x509.Certificate{cert}
	}
	return ci
}

// external runs an exchange with the given responses in turn; the first
// is the initial response (nil: none).
func (f *fixture) external(t *testing.T, ci sdk.ConnInfo, responses ...[]byte) (challenges int, o *sdk.AuthOutcome) {
	t.Helper()
	ex, err := f.c.Mechanism().Start(t.Context(), mechanismName, ci)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range responses {
		c, o, err := ex.Next(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		if o != nil {
			return challenges, o
		}
		if len(c) != 0 {
			t.Fatalf("challenge %q, want an empty one", c)
		}
		challenges++
	}
	t.Fatal("no outcome")
	return 0, nil
}

func TestExternal(t *testing.T) {
	f := setup(t, nil)
	tests := []struct {
		name       string
		cert       *x509.Certificate
		responses  [][]byte
		challenges int
		want       sdk.AuthOutcome
	}{
		{"empty initial response", f.alice, [][]byte{{}}, 0, sdk.AuthOutcome{Success: true, Account: "alice", Login: "alice@example.org"}},
		{"no initial response", f.alice, [][]byte{nil, {}}, 1, sdk.AuthOutcome{Success: true, Account: "alice", Login: "alice@example.org"}},
		{"authzid the login", f.alice, [][]byte{[]byte("Alice@Example.org")}, 0, sdk.AuthOutcome{Success: true, Account: "alice", Login: "alice@example.org"}},
		{"authzid another address of the account", f.alice, [][]byte{nil, []byte("a.smith@example.com")}, 1, sdk.AuthOutcome{Success: true, Account: "alice", Login: "a.smith@example.com"}},
		{"authzid of another account", f.alice, [][]byte{[]byte("bob@example.org")}, 0, sdk.AuthOutcome{Account: "alice", Login: "bob@example.org", Reason: "authorization identity is not an address of the key's account"}},
		{"authzid with NUL", f.alice, [][]byte{[]byte("alice@example.org\x00")}, 0, sdk.AuthOutcome{Reason: "malformed authorization identity"}},
		{"authzid not UTF-8", f.alice, [][]byte{{0xff}}, 0, sdk.AuthOutcome{Reason: "malformed authorization identity"}},
		{"authzid too long", f.alice, [][]byte{bytes.Repeat([]byte("a"), 400)}, 0, sdk.AuthOutcome{Reason: "malformed authorization identity"}},
		{"unknown key", f.other, [][]byte{{}}, 0, sdk.AuthOutcome{Reason: "unknown TLS client key"}},
		{"no certificate", nil, [][]byte{{}}, 0, sdk.AuthOutcome{Reason: "no TLS client certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, o := f.external(t, conn("smtp", tt.cert), tt.responses...)
			if n != tt.challenges || !reflect.DeepEqual(*o, tt.want) {
				t.Errorf("%d challenges, %+v; want %d, %+v", n, *o, tt.challenges, tt.want)
			}
		})
	}
}

func TestPreAuth(t *testing.T) {
	f := setup(t, nil)
	noPreauth := certificate(t, false)
	f.host.SetTLSPublicKey(spkiHash(noPreauth), sdk.TLSKey{Account: "alice", Login: "alice@example.org", NoIMAPPreauth: true})
	tests := []struct {
		name     string
		protocol string
		cert     *x509.Certificate
		want     sdk.AuthOutcome
	}{
		{"imap, known, expired certificate", "imap", f.alice, sdk.AuthOutcome{Success: true, Account: "alice", Login: "alice@example.org"}},
		{"smtp, known", "smtp", f.alice, sdk.AuthOutcome{Success: true, Account: "alice", Login: "alice@example.org"}},
		{"imap, no_imap_preauth", "imap", noPreauth, sdk.AuthOutcome{Account: "alice", Login: "alice@example.org", Reason: "key has no_imap_preauth"}},
		{"smtp, no_imap_preauth", "smtp", noPreauth, sdk.AuthOutcome{Success: true, Account: "alice", Login: "alice@example.org"}},
		{"unknown", "imap", f.other, sdk.AuthOutcome{Reason: "unknown TLS client key"}},
		{"none", "imap", nil, sdk.AuthOutcome{Reason: "no TLS client certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := f.c.Mechanism().(sdk.PreAuther).PreAuth(t.Context(), conn(tt.protocol, tt.cert))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*o, tt.want) {
				t.Errorf("%+v, want %+v", *o, tt.want)
			}
		})
	}
	// EXTERNAL still logs in with no_imap_preauth.
	if _, o := f.external(t, conn("imap", noPreauth), []byte{}); !o.Success {
		t.Errorf("EXTERNAL with no_imap_preauth: %+v", *o)
	}
}

// failingHost fails every lookup, as a core whose store is down.
type failingHost struct{}

func (failingHost) Secret(ctx context.Context, username, mechanism string) (*sdk.Credential, error) {
	return nil, errors.New("store offline")
}

func (failingHost) TLSPublicKey(ctx context.Context, spkiSHA256 []byte) (*sdk.TLSKey, error) {
	return nil, errors.New("store offline")
}

func TestTemporary(t *testing.T) {
	f := setup(t, failingHost{})
	cert := certificate(t, false)
	if _, o := f.external(t, conn("smtp", cert), []byte{}); !o.Temporary || o.Success {
		t.Errorf("EXTERNAL with the store offline: %+v, want temporary", *o)
	}
	o, err := f.c.Mechanism().(sdk.PreAuther).PreAuth(t.Context(), conn("imap", cert))
	if err != nil || !o.Temporary {
		t.Errorf("PreAuth with the store offline: %+v, %v; want temporary", o, err)
	}
	if !strings.Contains(f.logs.String(), "store offline") {
		t.Errorf("log lacks the cause:\n%s", f.logs)
	}
}

func TestConfigureRefusesKeys(t *testing.T) {
	f := setup(t, nil)
	err := f.c.Configure(t.Context(), &sdk.Configuration{Kind: sdk.KindMechanism, Instance: "auth-tlsclient", Table: map[string]any{"x": "y"}})
	if err == nil {
		t.Error("a config key was accepted")
	}
}
