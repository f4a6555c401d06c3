package config

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse feeds any bytes as mta.toml. Load must not panic, and agree
// with Parse of the same bytes, every time; it returns either errors, each
// naming the file and a line within it, or a configuration that holds what
// checking promises: listeners named, of a known kind, at a host:port;
// every transport's plugin and every route's transport defined; every
// account at a local domain, each of its addresses resolving to it.
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
		// Load from a file, as the server does; Parse of the same bytes,
		// and Parse again, must say the same (no map order in the errors).
		path := filepath.Join(t.TempDir(), "mta.toml")
		if err := os.WriteFile(path, src, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path)
		c2, err2 := Parse(path, src)
		if !sameErrors(err, err2) || (c == nil) != (c2 == nil) {
			t.Fatalf("Load: %v\nParse: %v", err, err2)
		}
		if _, err3 := Parse(path, src); !sameErrors(err, err3) {
			t.Fatalf("Parse not deterministic:\n%v\n%v", err, err3)
		}
		lines := bytes.Count(src, []byte("\n")) + 1
		if err != nil {
			es, ok := err.(Errors)
			if !ok || len(es) == 0 {
				t.Fatalf("error %T %v, want Errors", err, err)
			}
			for _, e := range es {
				if e.File != path || e.Msg == "" || e.Line < 0 || e.Line > lines {
					t.Fatalf("error %+v: no file or message, or line beyond %d", e, lines)
				}
				if !strings.HasPrefix(e.Error(), path) {
					t.Fatalf("error %q does not start with the file", e.Error())
				}
			}
			if c != nil {
				t.Fatal("a configuration with the errors")
			}
			// mta config check goes on with what it can: keys of errors
			// found again in the file, within it.
			if cc, _ := LoadChecked(path); cc != nil {
				for _, e := range es {
					if ke := cc.KeyError(e.Key, "x"); ke.File != path || ke.Line < 0 || ke.Line > lines {
						t.Fatalf("KeyError(%q): %+v, file of %d lines", e.Key, ke, lines)
					}
				}
			}
			return
		}
		for name, a := range c.Accounts {
			if a == nil || !c.IsLocalDomain(domain(a.Domain)) {
				t.Fatalf("account %q accepted without a local domain: %+v", name, a)
			}
			for _, addr := range a.Addresses {
				if got, ok := c.AccountByAddress(address(addr)); !ok || got != name || !c.MayUseAddress(name, address(addr)) {
					t.Fatalf("address %q of account %q resolves to %q, %v", addr, name, got, ok)
				}
			}
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

// sameErrors says whether two results of parsing the same bytes agree. A
// lone error may differ: the TOML decoder stops at the first value of the
// wrong type, and in a table decoded into a map ([domains], [accounts])
// which one comes first is Go's map order.
func sameErrors(a, b error) bool {
	ea, _ := a.(Errors)
	eb, _ := b.(Errors)
	if len(ea) == 1 && len(eb) == 1 {
		return true
	}
	return reflect.DeepEqual(a, b)
}
