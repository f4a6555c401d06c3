package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds any bytes as mta.toml. Parse must not panic; it returns
// either errors, each naming the file, or a configuration that holds what
// checking promises: listeners named, of a known kind, at a host:port;
// every transport's plugin and every route's transport defined.
func FuzzParse(f *testing.F) {
	if src, err := os.ReadFile(filepath.Join("..", "..", "mta.toml")); err == nil {
		f.Add(src)
	}
	f.Add([]byte(base))
	f.Add([]byte(addressesSrc))
	f.Add([]byte(base + "[[listeners]]\nname = \"mx\"\nkind = \"smtp\"\naddress = \"127.0.0.1:25\"\nrelay_networks = [\"10.0.0.0/8\"]\nmax_connections_per_ip = 3\n[limits]\nexempt_networks = [\"::1\"]\n"))
	f.Add([]byte("hostname = \"a\"\n[[listeners]]\nname = 1\n"))
	f.Add([]byte("[plugins.\"../x\"]\npath = \"x\"\n[[routes]]\nto_domains = [\".\"]\ntransport = \"t\"\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := Parse("/x/mta.toml", src)
		if err != nil {
			es, ok := err.(Errors)
			if !ok || len(es) == 0 {
				t.Fatalf("error %T %v, want Errors", err, err)
			}
			for _, e := range es {
				if e.File != "/x/mta.toml" || e.Msg == "" {
					t.Fatalf("error %+v: no file or message", e)
				}
			}
			if c != nil {
				t.Fatal("a configuration with the errors")
			}
			return
		}
		for i, l := range c.Listeners {
			if l.Name == "" || checkHostPort(l.Address) != nil || l.Kind == "" {
				t.Fatalf("listeners[%d] accepted: %+v", i, l)
			}
			if c.ListenerByName(l.Name) == nil {
				t.Fatalf("listener %q not found by name", l.Name)
			}
		}
		for name, tr := range c.Transport {
			if tr == nil || c.Plugins[tr.Plugin] == nil {
				t.Fatalf("transport %q accepted without its plugin", name)
			}
		}
		for _, r := range c.Routes {
			if _, ok := c.Transport[r.Transport]; !ok && r.Transport != LocalTransport {
				t.Fatalf("route to unknown transport %q accepted", r.Transport)
			}
		}
		if c.Hostname == "" || strings.ContainsAny(c.Hostname, " \r\n\x00") {
			t.Fatalf("hostname %q accepted", c.Hostname)
		}
	})
}
