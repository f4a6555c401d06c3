package mtasts

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// testCA is a certificate authority for tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mtasts test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue returns a server certificate for names signed by the CA.
func (ca *testCA) issue(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// startPolicyServer serves handler over HTTPS on 127.0.0.1 with cert. It
// returns the port and a client that dials the server whatever the host
// name, trusting roots.
func startPolicyServer(t *testing.T, handler http.Handler, cert tls.Certificate, roots *x509.CertPool) (int, *http.Client) {
	t.Helper()
	srv := httptest.NewUnstartedServer(handler)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // Failed handshakes are expected.
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return port, &http.Client{Transport: tr}
}

const rfcPolicy = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n"

func TestFetch(t *testing.T) {
	ca := newTestCA(t)
	var followed atomic.Bool
	// Limit-sized bodies: a valid policy padded with extension lines.
	padded := func(size int) string {
		s := rfcPolicy
		for i := 0; len(s) < size; i++ {
			line := fmt.Sprintf("x%d: %s\n", i, strings.Repeat("p", 60))
			if rest := size - len(s); len(line) > rest {
				line = "y: " + strings.Repeat("p", rest-4) + "\n"
			}
			s += line
		}
		return s
	}
	atLimit, overLimit := padded(MaxPolicySize), padded(MaxPolicySize+1)
	if len(atLimit) != MaxPolicySize || len(overLimit) != MaxPolicySize+1 {
		t.Fatalf("padding: %d, %d", len(atLimit), len(overLimit))
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			followed.Store(true)
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, rfcPolicy)
			return
		}
		if r.URL.Path != "/.well-known/mta-sts.txt" {
			http.NotFound(w, r)
			return
		}
		host, _, _ := net.SplitHostPort(r.Host)
		switch host {
		case "mta-sts.ok.example":
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, rfcPolicy)
		case "mta-sts.charset.example":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprint(w, rfcPolicy)
		case "mta-sts.html.example":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, rfcPolicy)
		case "mta-sts.notype.example":
			w.Header()["Content-Type"] = nil // No sniffing either.
			fmt.Fprint(w, rfcPolicy)
		case "mta-sts.redirect.example":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "mta-sts.missing.example":
			http.NotFound(w, r)
		case "mta-sts.invalid.example":
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, "version: STSv1\nmode: enforce\n")
		case "mta-sts.atlimit.example":
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, atLimit)
		case "mta-sts.big.example":
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, overLimit)
		case "mta-sts.slow.example":
			<-r.Context().Done()
		default:
			http.Error(w, "unknown host "+host, http.StatusInternalServerError)
		}
	})
	names := []string{"mta-sts.ok.example", "mta-sts.charset.example", "mta-sts.html.example",
		"mta-sts.notype.example", "mta-sts.redirect.example", "mta-sts.missing.example",
		"mta-sts.invalid.example", "mta-sts.atlimit.example", "mta-sts.big.example", "mta-sts.slow.example"}
	port, client := startPolicyServer(t, handler, ca.issue(t, names...), ca.pool)

	tests := []struct {
		domain  string
		wantErr string // Empty: the RFC policy is expected.
	}{
		{"ok.example", ""},
		{"OK.example.", ""},
		{"charset.example", ""},
		{"atlimit.example", ""},
		{"html.example", `content type "text/html"`},
		{"notype.example", `content type ""`},
		{"redirect.example", "302"},
		{"missing.example", "404"},
		{"invalid.example", "missing max_age"},
		{"big.example", "exceeds 65536 bytes"},
		{"slow.example", "deadline exceeded"},
		{"other.example", "certificate"}, // Not a name on the certificate.
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			p, err := Fetch(ctx, client, tt.domain, port)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Fetch = %+v, %v; want ErrPolicy with %q", p, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if !p.Enforce() || len(p.MX) != 3 || p.MaxAge != 604800*time.Second || !p.MatchMX("mx7.example.net") {
				t.Fatalf("Fetch = %+v", p)
			}
		})
	}
	if followed.Load() {
		t.Errorf("redirect was followed")
	}
	if client.CheckRedirect != nil {
		t.Errorf("Fetch modified the client")
	}
}

func TestFetchBadCertificate(t *testing.T) {
	ca, otherCA := newTestCA(t), newTestCA(t)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, rfcPolicy)
	})
	tests := []struct {
		name     string
		cert     tls.Certificate
		insecure bool
		wantErr  string
	}{
		{"unknown authority", otherCA.issue(t, "mta-sts.example.com"), false, "unknown authority"},
		{"wrong name", ca.issue(t, "example.com", "mta-sts.example.org"), false, "is valid for example.com, mta-sts.example.org"},
		{"verification skipped by client", otherCA.issue(t, "mta-sts.example.com"), true, "not verified"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port, client := startPolicyServer(t, handler, tt.cert, ca.pool)
			client.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify = tt.insecure
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			p, err := Fetch(ctx, client, "example.com", port)
			if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Fetch = %+v, %v; want ErrPolicy with %q", p, err, tt.wantErr)
			}
		})
	}
	// The same server setup with the right certificate works.
	port, client := startPolicyServer(t, handler, ca.issue(t, "mta-sts.example.com"), ca.pool)
	if _, err := Fetch(context.Background(), client, "example.com", port); err != nil {
		t.Fatalf("Fetch with valid certificate: %v", err)
	}
}

func TestPolicyURL(t *testing.T) {
	tests := []struct {
		domain string
		port   int
		want   string
	}{
		{"example.com", 0, "https://mta-sts.example.com/.well-known/mta-sts.txt"},
		{"example.com.", 443, "https://mta-sts.example.com/.well-known/mta-sts.txt"},
		{"Example.COM", 8443, "https://mta-sts.example.com:8443/.well-known/mta-sts.txt"},
	}
	for _, tt := range tests {
		if got := PolicyURL(tt.domain, tt.port); got != tt.want {
			t.Errorf("PolicyURL(%q, %d) = %q, want %q", tt.domain, tt.port, got, tt.want)
		}
	}
}
