package config

import (
	"strings"
	"testing"

	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// domain parses s as an SMTP server would; invalid names are the zero
// Domain, which is never local.
func domain(s string) mailaddr.Domain {
	d, _ := mailaddr.ParseDomain(s)
	return d
}

// address is domain for addresses.
func address(s string) mailaddr.Address {
	a, _ := mailaddr.ParseAddress(s)
	return a
}

const addressesSrc = `hostname = "mail.example.org"
[domains."example.org"]
localpart_separator = "+"
[domains."Example.NET"]
[accounts.alice]
domain = "example.org"
addresses = ["alice@example.org", "a.smith@Example.ORG", "alice+list@example.org"]
[accounts.listkeeper]
domain = "example.org"
addresses = ["alice+list2@example.org"]
[accounts.bob]
domain = "example.net"
addresses = ["bob@example.net", "shared@example.net"]
[accounts.carol]
domain = "example.org"
addresses = ["Carol@example.org"]
[accounts.dave]
domain = "example.org"
addresses = ["carol@example.org"]
`

func TestAddresses(t *testing.T) {
	c, err := Parse("mta.toml", []byte(addressesSrc))
	if err != nil {
		t.Fatal(err)
	}

	local := []struct {
		domain string
		want   bool
	}{
		{"example.org", true},
		{"EXAMPLE.org", true},
		{"example.net", true},
		{"example.com", false},
		{"sub.example.org", false},
		{"", false},
	}
	for _, tt := range local {
		if got := c.IsLocalDomain(domain(tt.domain)); got != tt.want {
			t.Errorf("IsLocalDomain(%q): got %v", tt.domain, got)
		}
	}

	byAddress := []struct {
		addr, want string // want "": none.
	}{
		{"alice@example.org", "alice"},
		{"alice@EXAMPLE.ORG", "alice"},
		{"Alice@example.org", "alice"}, // Case-insensitive fallback.
		{"a.smith@example.org", "alice"},
		{"alice+tag@example.org", "alice"}, // Separator.
		{"alice+tag+more@example.org", "alice"},
		{"Alice+Tag@example.org", "alice"},
		{"alice+list@example.org", "alice"},
		{"alice+list2@example.org", "listkeeper"}, // Listed exactly.
		{"+tag@example.org", ""},
		{"bob+tag@example.net", ""}, // No separator at example.net.
		{"bob@example.net", "bob"},
		{"Carol@example.org", "carol"}, // Exact match wins.
		{"carol@example.org", "dave"},
		{"CAROL@example.org", ""}, // Ambiguous ignoring case.
		{"alice@example.com", ""},
		{"nobody@example.org", ""},
		{"alice", ""},
		{"@example.org", ""},
		{"alice@", ""},
		{"", ""},
	}
	for _, tt := range byAddress {
		got, ok := c.AccountByAddress(address(tt.addr))
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("AccountByAddress(%q): got %q, %v; want %q", tt.addr, got, ok, tt.want)
		}
	}

	byLogin := []struct {
		login, want string
	}{
		{"alice", "alice"},
		{"bob", "bob"},
		{"Alice", ""}, // Account names are exact.
		{"alice@example.org", "alice"},
		{"Alice@Example.org", "alice"},
		{"shared@example.net", "bob"},
		{"alice+tag@example.org", ""}, // No separator in logins.
		{"mallory", ""},
		{"", ""},
	}
	for _, tt := range byLogin {
		got, ok := c.AccountByLogin(tt.login)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("AccountByLogin(%q): got %q, %v; want %q", tt.login, got, ok, tt.want)
		}
	}

	mayUse := []struct {
		account, addr string
		want          bool
	}{
		{"alice", "alice@example.org", true},
		{"alice", "alice+news@example.org", true},
		{"alice", "a.smith@example.org", true},
		{"alice", "bob@example.net", false},
		{"alice", "alice+list2@example.org", false},
		{"listkeeper", "alice+list2@example.org", true},
		{"bob", "shared@EXAMPLE.NET", true},
		{"bob", "alice@example.org", false},
		{"nobody", "alice@example.org", false},
		{"alice", "", false},
	}
	for _, tt := range mayUse {
		if got := c.MayUseAddress(tt.account, address(tt.addr)); got != tt.want {
			t.Errorf("MayUseAddress(%q, %q): got %v", tt.account, tt.addr, got)
		}
	}

	// Addresses are stored with lower-case domains.
	if got := c.Accounts["alice"].Addresses[1]; got != "a.smith@example.org" {
		t.Errorf("normalized address: got %q", got)
	}
}

// Addresses match in Unicode NFC: a decomposed é (e + U+0301) finds the
// account configured with the composed one, in the localpart and the domain.
func TestAddressNFC(t *testing.T) {
	c, err := Parse("/x/mta.toml", []byte("hostname = \"h.example\"\n[domains.\"caf\u00e9.example\"]\n[accounts.rene]\ndomain = \"caf\u00e9.example\"\naddresses = [\"ren\u00e9@caf\u00e9.example\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"ren\u00e9@caf\u00e9.example", "rene\u0301@cafe\u0301.example", "RENE\u0301@CAFE\u0301.EXAMPLE"} {
		if acc, ok := c.AccountByAddress(address(addr)); !ok || acc != "rene" {
			t.Errorf("AccountByAddress(%+q) = %q, %v", addr, acc, ok)
		}
	}
	if !c.IsLocalDomain(domain("cafe\u0301.example")) {
		t.Error("decomposed domain not local")
	}
}

func TestPostmaster(t *testing.T) {
	src := `hostname = "mail.example.org"
[domains."example.org"]
[domains."example.net"]
[accounts.zed]
domain = "example.org"
addresses = ["zed@example.org"]
[accounts.amy]
domain = "example.net"
addresses = ["amy@example.net", "postmaster@example.net"]
`
	c, err := Parse("/x/mta.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	// The first account in the file, not in name order.
	if c.Postmaster != "zed" || c.PostmasterAddress() != "postmaster@example.org" {
		t.Errorf("postmaster %q %q", c.Postmaster, c.PostmasterAddress())
	}
	for addr, want := range map[string]string{"postmaster@example.org": "zed", "PostMaster@EXAMPLE.org": "zed", "postmaster@example.net": "amy"} {
		if got, _ := c.AccountByAddress(address(addr)); got != want {
			t.Errorf("%s: %q, want %q", addr, got, want)
		}
	}
	c, err = Parse("/x/mta.toml", []byte("postmaster = \"amy\"\n"+src))
	if err != nil || c.Postmaster != "amy" {
		t.Fatalf("explicit: %v %q", err, c.Postmaster)
	}
	if got, _ := c.AccountByAddress(address("postmaster@example.org")); got != "amy" {
		t.Errorf("explicit: postmaster@example.org is %q", got)
	}
	if _, err := Parse("/x/mta.toml", []byte("postmaster = \"nobody\"\n"+src)); err == nil || !strings.Contains(err.Error(), `mta.toml:1: postmaster: no account "nobody"`) {
		t.Errorf("unknown postmaster: %v", err)
	}
}

// A domain is one domain in U-labels, A-labels, any case, with a trailing
// dot: with bücher.example configured, mail to its A-label form is local.
func TestIDNDomain(t *testing.T) {
	for _, configured := range []string{"bücher.example", "xn--bcher-kva.example"} {
		c, err := Parse("/x/mta.toml", []byte("hostname = \"h.example\"\n[domains.\""+configured+"\"]\n[accounts.joerg]\ndomain = \""+configured+"\"\naddresses = [\"jörg@"+configured+"\"]\n"))
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"bücher.example", "BÜCHER.example.", "xn--bcher-kva.example", "XN--BCHER-KVA.EXAMPLE"} {
			if !c.IsLocalDomain(domain(d)) {
				t.Errorf("configured %s: %s not local", configured, d)
			}
			if a, ok := c.AccountByAddress(address("jörg@" + d)); !ok || a != "joerg" {
				t.Errorf("configured %s: jörg@%s is %q", configured, d, a)
			}
		}
		if c.IsLocalDomain(domain("xn--bcher-kvb.example")) || c.IsLocalDomain(domain("xn--zz")) {
			t.Errorf("configured %s: another or invalid A-label is local", configured)
		}
	}
}

// TestSendAs: an account may send as its own addresses and those of its
// send_as, domains (in any form) and addresses; no one else may.
func TestSendAs(t *testing.T) {
	c, err := Parse("/x/mta.toml", []byte(`hostname = "h.example"
[domains."example.org"]
[accounts.relay]
domain = "example.org"
addresses = ["relay@example.org"]
send_as = ["customer.example", "Bücher.example", "boss@partner.example"]
[accounts.alice]
domain = "example.org"
addresses = ["alice@example.org"]
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		account, addr string
		want          bool
	}{
		{"relay", "relay@example.org", true},
		{"relay", "anyone@customer.example", true},
		{"relay", "anyone@CUSTOMER.example", true},
		{"relay", "x@xn--bcher-kva.example", true},
		{"relay", "x@sub.customer.example", false},
		{"relay", "boss@partner.example", true},
		{"relay", "boss@PARTNER.example", true},
		{"relay", "other@partner.example", false},
		{"relay", "alice@example.org", false},
		{"alice", "anyone@customer.example", false},
		{"alice", "alice@example.org", true},
		{"nobody", "anyone@customer.example", false},
	} {
		if got := c.MayUseAddress(tc.account, address(tc.addr)); got != tc.want {
			t.Errorf("MayUseAddress(%s, %s) = %v, want %v", tc.account, tc.addr, got, tc.want)
		}
	}
	if c.OwnsAddress("relay", address("boss@partner.example")) {
		t.Error("a send_as address is owned")
	}
	for _, bad := range []string{`["not a domain!"]`, `["x@"]`, `["@example.net"]`} {
		_, err := Parse("/x/mta.toml", []byte("hostname = \"h.example\"\n[domains.\"example.org\"]\n[accounts.a]\ndomain = \"example.org\"\nsend_as = "+bad+"\n"))
		if err == nil || !strings.Contains(err.Error(), "accounts.a.send_as[0]") {
			t.Errorf("send_as = %s: %v, want an error at accounts.a.send_as[0]", bad, err)
		}
	}
}

// TestCatchall: unknown addresses of a domain go to its catch-all
// account, which owns none of them and may not send as them.
func TestCatchall(t *testing.T) {
	c, err := Parse("/x/mta.toml", []byte(`hostname = "h.example"
[domains."example.org"]
catchall = "inbox"
[domains."example.net"]
[accounts.alice]
domain = "example.org"
addresses = ["alice@example.org"]
[accounts.inbox]
domain = "example.org"
addresses = ["inbox@example.org"]
`))
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{"alice@example.org": "alice", "nobody@example.org": "inbox", "ALICE@example.org": "alice", "nobody@example.net": ""} {
		if got, _ := c.AccountByAddress(address(addr)); got != want {
			t.Errorf("AccountByAddress(%s) = %q, want %q", addr, got, want)
		}
	}
	if _, ok := c.OwnerOfAddress(address("nobody@example.org")); ok {
		t.Error("the catch-all owns an unknown address")
	}
	if c.MayUseAddress("inbox", address("nobody@example.org")) || !c.MayUseAddress("inbox", address("inbox@example.org")) {
		t.Error("the catch-all may send as an unknown address, or not as its own")
	}
	if _, err := Parse("/x/mta.toml", []byte("hostname = \"h.example\"\n[domains.\"example.org\"]\ncatchall = \"nobody\"\n")); err == nil || !strings.Contains(err.Error(), `domains."example.org".catchall: unknown account "nobody"`) {
		t.Errorf("unknown catch-all account: %v", err)
	}
}

// TestAliases: an alias resolves by its localpart in any case and with a
// +tag, lists its members' accounts, lets members send as it only with
// allow_msg_from, and is refused when it names a non-local member or an
// account's address.
func TestAliases(t *testing.T) {
	c, err := Parse("/x/mta.toml", []byte(`hostname = "h.example"
[domains."example.org"]
localpart_separator = "+"
[domains."example.org".aliases.team]
members = ["alice@example.org", "Bob@EXAMPLE.org"]
allow_msg_from = true
[domains."example.org".aliases.all]
members = ["alice@example.org"]
post_public = true
[accounts.alice]
domain = "example.org"
addresses = ["alice@example.org"]
[accounts.bob]
domain = "example.org"
addresses = ["Bob@example.org"]
`))
	if err != nil {
		t.Fatal(err)
	}
	al := c.AliasOf(address("Team+x@example.org"))
	if al == nil || al.Address != "team@example.org" || strings.Join(al.Accounts, ",") != "alice,bob" || al.Members[1] != "Bob@example.org" {
		t.Fatalf("alias %+v", al)
	}
	if c.AliasOf(address("alice@example.org")) != nil || c.AliasOf(address("team@example.net")) != nil {
		t.Error("an account's address or another domain is an alias")
	}
	if !c.MayUseAddress("bob", address("team@example.org")) || c.MayUseAddress("bob", address("all@example.org")) || c.MayUseAddress("carol", address("team@example.org")) {
		t.Error("allow_msg_from not applied as configured")
	}
	for src, want := range map[string]string{
		"[domains.\"example.org\".aliases.x]\nmembers = [\"nobody@example.org\"]\n":    `domains."example.org".aliases.x.members[0]: "nobody@example.org" is not an address of a local account`,
		"[domains.\"example.org\".aliases.x]\n":                                        `domains."example.org".aliases.x.members: required`,
		"[domains.\"example.org\".aliases.alice]\nmembers = [\"alice@example.org\"]\n": `domains."example.org".aliases.alice: alice@example.org is also an address of account "alice"`,
	} {
		_, err := Parse("/x/mta.toml", []byte("hostname = \"h.example\"\n[domains.\"example.org\"]\n[accounts.alice]\ndomain = \"example.org\"\naddresses = [\"alice@example.org\"]\n"+src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", src, err, want)
		}
	}
}
