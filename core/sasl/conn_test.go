package sasl

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/xdg-go/scram"
)

// newCert returns a self-signed certificate for mail.example.org signed
// with sig.
func newCert(t *testing.T, curve elliptic.Curve, sig x509.SignatureAlgorithm) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:       big.NewInt(1),
		Subject:            pkix.Name{CommonName: "mail.example.org"},
		DNSNames:           []string{"mail.example.org"},
		NotBefore:          time.Now().Add(-time.Hour),
		NotAfter:           time.Now().Add(time.Hour),
		SignatureAlgorithm: sig,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, crypto.Signer(key))
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// The binding data the server passes to plugins is what a SCRAM client
// computes on its side of the connection (xdg-go/scram's constructors).
func TestConnInfo(t *testing.T) {
	cert := newCert(t, elliptic.P256(), x509.ECDSAWithSHA256)
	other := newCert(t, elliptic.P384(), x509.ECDSAWithSHA384)
	srvTLS := &tls.Config{Certificates: []tls.Certificate{cert}}
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			type result struct {
				nc  net.Conn
				err error
			}
			accepted := make(chan result, 1)
			go func() {
				nc, err := l.Accept()
				if err == nil {
					tc := tls.Server(nc, srvTLS)
					err = tc.Handshake()
					nc = tc
				}
				accepted <- result{nc, err}
			}()
			cc, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{
				InsecureSkipVerify: true, ServerName: "mail.example.org", MinVersion: version, MaxVersion: version,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			r := <-accepted
			if r.err != nil {
				t.Fatal(r.err)
			}
			defer r.nc.Close()

			ci := ConnInfo("smtp", "submission", r.nc, srvTLS)
			if ci.Protocol != "smtp" || ci.Listener != "submission" || ci.LocalAddr != l.Addr().String() || ci.RemoteAddr != cc.LocalAddr().String() {
				t.Errorf("conn info %+v", ci)
			}
			ti := ci.TLS
			if ti == nil || ti.Version != version || ti.ServerName != "mail.example.org" {
				t.Fatalf("TLS info %+v", ti)
			}
			cs := cc.ConnectionState()
			sep, err := scram.NewTLSServerEndpointBinding(&cs)
			if err != nil || string(ti.ServerEndPoint) != string(sep.Data) || len(sep.Data) != 32 {
				t.Errorf("tls-server-end-point %x, client computes %x (%v)", ti.ServerEndPoint, sep.Data, err)
			}
			if version == tls.VersionTLS13 {
				exp, err := scram.NewTLSExporterBinding(&cs)
				if err != nil || len(ti.Exporter) != 32 || string(ti.Exporter) != string(exp.Data) || ti.Unique != nil {
					t.Errorf("tls-exporter %x, client computes %x (%v); tls-unique %x", ti.Exporter, exp.Data, err, ti.Unique)
				}
			} else if len(ti.Unique) == 0 || string(ti.Unique) != string(cs.TLSUnique) || ti.Exporter != nil {
				t.Errorf("tls-unique %x, client has %x; tls-exporter %x", ti.Unique, cs.TLSUnique, ti.Exporter)
			}

			// Another certificate gives another binding.
			if string(ServerEndPoint(leaf(&other))) == string(ti.ServerEndPoint) {
				t.Error("tls-server-end-point independent of the certificate")
			}
		})
	}
}

func TestConnInfoPlain(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if ci := ConnInfo("imap", "imap", a, nil); ci.TLS != nil {
		t.Errorf("TLS info without TLS: %+v", ci.TLS)
	}
}

// RFC 5929 §4.1: the certificate's own hash, SHA-256 in place of MD5 and
// SHA-1; none for signatures without a separate hash.
func TestServerEndPoint(t *testing.T) {
	tests := []struct {
		curve elliptic.Curve
		sig   x509.SignatureAlgorithm
		size  int
	}{
		{elliptic.P256(), x509.ECDSAWithSHA256, 32},
		{elliptic.P384(), x509.ECDSAWithSHA384, 48},
		{elliptic.P521(), x509.ECDSAWithSHA512, 64},
	}
	for _, tt := range tests {
		t.Run(tt.sig.String(), func(t *testing.T) {
			c := leaf(ptr(newCert(t, tt.curve, tt.sig)))
			if got := ServerEndPoint(c); len(got) != tt.size {
				t.Errorf("%d bytes, want %d", len(got), tt.size)
			}
		})
	}
	c := leaf(ptr(newCert(t, elliptic.P256(), x509.ECDSAWithSHA256)))
	c.SignatureAlgorithm = x509.SHA1WithRSA
	if len(ServerEndPoint(c)) != 32 {
		t.Error("SHA-1 certificate: want SHA-256")
	}
	c.SignatureAlgorithm = x509.PureEd25519
	if ServerEndPoint(c) != nil {
		t.Error("Ed25519 certificate: want none")
	}
}

func ptr[T any](v T) *T { return &v }

func TestServerCertificate(t *testing.T) {
	a, b := newCert(t, elliptic.P256(), x509.ECDSAWithSHA256), newCert(t, elliptic.P384(), x509.ECDSAWithSHA384)
	bLeaf := leaf(&b)
	bLeaf.DNSNames = []string{"other.example.org"}
	b.Leaf = bLeaf
	cfg := &tls.Config{Certificates: []tls.Certificate{a, b}}
	if got := ServerCertificate(cfg, "other.example.org"); got != bLeaf {
		t.Error("SNI other.example.org: not the second certificate")
	}
	if got := ServerCertificate(cfg, "unknown.example"); got == nil || got.Equal(bLeaf) {
		t.Error("unknown SNI: not the first certificate")
	}
	cfg = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &b, nil }}
	if ServerCertificate(cfg, "") != bLeaf {
		t.Error("GetCertificate not used")
	}
	if ServerCertificate(nil, "x") != nil {
		t.Error("nil config")
	}
}
