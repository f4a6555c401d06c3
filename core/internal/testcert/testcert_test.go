package testcert

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
)

// A client with ClientConfig completes a handshake with a server with
// ServerConfig of the same certificate, and refuses another's.
func TestHandshake(t *testing.T) {
	get := Once("mx.example.test")
	c := get(t)
	if get(t) != c {
		t.Fatal("Once made a second certificate")
	}
	other, err := New("mx.example.test")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		server *Cert
		addr   bool // Verify the IP address instead of the host name.
		ok     bool
	}{
		{"same certificate", c, false, true},
		{"by IP address", c, true, true},
		{"another certificate", other, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := tls.Listen("tcp", "127.0.0.1:0", tt.server.ServerConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				nc, err := l.Accept()
				if err == nil {
					nc.(*tls.Conn).Handshake()
					io.Copy(io.Discard, nc)
					nc.Close()
				}
			}()
			cfg := c.ClientConfig()
			if tt.addr {
				cfg.ServerName = "127.0.0.1"
			}
			nc, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			err = tls.Client(nc, cfg).Handshake()
			if (err == nil) != tt.ok {
				t.Errorf("handshake: %v, want success %v", err, tt.ok)
			}
		})
	}
}
