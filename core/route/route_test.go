package route

import (
	"testing"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/queue"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

var _ queue.Router = (*Table)(nil)

// domain parses s as the queue does; "" is the zero Domain.
func domain(s string) mailaddr.Domain {
	d, _ := mailaddr.ParseDomain(s)
	return d
}

func TestSelect(t *testing.T) {
	catchAll := config.Route{Transport: "any"}
	toExample := config.Route{ToDomains: []string{"example.com"}, Transport: "to-exact"}
	toSub := config.Route{ToDomains: []string{".Example.ORG"}, Transport: "to-sub"}
	fromSub := config.Route{FromDomains: []string{".sender.test"}, Transport: "from-sub"}
	retry := config.Route{MinimumAttempts: 2, Transport: "retry"}
	both := config.Route{FromDomains: []string{"a.test"}, ToDomains: []string{"b.test", "c.test"}, MinimumAttempts: 1, Transport: "both"}
	idn := config.Route{ToDomains: []string{"bücher.example"}, Transport: "idn"}

	tests := []struct {
		name                    string
		account, domain, global []config.Route
		from, to                string
		attempts                int
		want                    string
	}{
		{"no routes", nil, nil, nil, "a.test", "b.test", 0, Direct},
		{"global any", nil, nil, []config.Route{catchAll}, "a.test", "b.test", 0, "any"},
		{"global any null sender", nil, nil, []config.Route{catchAll}, "", "b.test", 0, "any"},
		{"account before domain and global", []config.Route{{Transport: "acc"}}, []config.Route{{Transport: "dom"}}, []config.Route{catchAll}, "a.test", "b.test", 0, "acc"},
		{"domain before global", nil, []config.Route{{Transport: "dom"}}, []config.Route{catchAll}, "a.test", "b.test", 0, "dom"},
		{"account no match falls to domain", []config.Route{toExample}, []config.Route{{Transport: "dom"}}, nil, "a.test", "b.test", 0, "dom"},
		{"first match wins", nil, nil, []config.Route{toExample, catchAll}, "a.test", "example.com", 0, "to-exact"},
		{"first match wins order", nil, nil, []config.Route{catchAll, toExample}, "a.test", "example.com", 0, "any"},
		{"exact to", nil, nil, []config.Route{toExample}, "", "example.com", 0, "to-exact"},
		{"exact to case", nil, nil, []config.Route{toExample}, "", "EXAMPLE.Com", 0, "to-exact"},
		{"exact to trailing dot", nil, nil, []config.Route{toExample}, "", "example.com.", 0, "to-exact"},
		{"exact to no subdomain", nil, nil, []config.Route{toExample}, "", "a.example.com", 0, Direct},
		{"exact to no suffix trick", nil, nil, []config.Route{toExample}, "", "badexample.com", 0, Direct},
		{"dot matches itself", nil, nil, []config.Route{toSub}, "", "example.org", 0, "to-sub"},
		{"dot matches subdomain", nil, nil, []config.Route{toSub}, "", "a.example.org", 0, "to-sub"},
		{"dot matches deep subdomain", nil, nil, []config.Route{toSub}, "", "a.b.EXAMPLE.org", 0, "to-sub"},
		{"dot no suffix trick", nil, nil, []config.Route{toSub}, "", "badexample.org", 0, Direct},
		{"dot other domain", nil, nil, []config.Route{toSub}, "", "example.net", 0, Direct},
		{"from sub", nil, nil, []config.Route{fromSub}, "mail.sender.test", "x.test", 0, "from-sub"},
		{"from sub itself", nil, nil, []config.Route{fromSub}, "Sender.Test", "x.test", 0, "from-sub"},
		{"from sub null sender", nil, nil, []config.Route{fromSub}, "", "x.test", 0, Direct},
		{"from sub other", nil, nil, []config.Route{fromSub}, "other.test", "x.test", 0, Direct},
		{"minimum attempts below", nil, nil, []config.Route{retry}, "", "x.test", 1, Direct},
		{"minimum attempts equal", nil, nil, []config.Route{retry}, "", "x.test", 2, "retry"},
		{"minimum attempts above", nil, nil, []config.Route{retry}, "", "x.test", 5, "retry"},
		{"fallback after attempts", nil, nil, []config.Route{retry, catchAll}, "", "x.test", 0, "any"},
		{"all fields match", nil, nil, []config.Route{both}, "a.test", "c.test", 1, "both"},
		{"all fields wrong from", nil, nil, []config.Route{both}, "z.test", "c.test", 1, Direct},
		{"all fields wrong to", nil, nil, []config.Route{both}, "a.test", "z.test", 1, Direct},
		{"all fields too early", nil, nil, []config.Route{both}, "a.test", "c.test", 0, Direct},
		{"idn u-label to a-label", nil, nil, []config.Route{idn}, "", "xn--bcher-kva.example", 0, "idn"},
		{"idn u-label to u-label", nil, nil, []config.Route{idn}, "", "BÜCHER.example", 0, "idn"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Select(normalized(tc.account), normalized(tc.domain), normalized(tc.global), domain(tc.from), domain(tc.to), tc.attempts)
			if got != tc.want {
				t.Errorf("Select(from %q, to %q, attempts %d) = %q, want %q", tc.from, tc.to, tc.attempts, got, tc.want)
			}
		})
	}
}

func TestTable(t *testing.T) {
	cfg := &config.Config{
		Routes: []config.Route{{ToDomains: []string{".gmail.com"}, Transport: "global"}},
		Domains: map[string]*config.Domain{
			"Example.COM": {Routes: []config.Route{{ToDomains: []string{".gmail.com", "yahoo.com"}, Transport: "domain"}}},
			"other.test":  {},
		},
		Accounts: map[string]*config.Account{
			"alice": {Domain: "example.com", Routes: []config.Route{{ToDomains: []string{"yahoo.com"}, MinimumAttempts: 1, Transport: "alice"}}},
			"bob":   {Domain: "example.com"},
		},
	}
	tab := FromConfig(cfg)
	tests := []struct {
		account, from, to string
		attempts          int
		want              string
	}{
		{"alice", "alice@example.com", "yahoo.com", 1, "alice"},
		{"alice", "alice@example.com", "yahoo.com", 0, "domain"},
		{"alice", "alice@example.com", "mx.gmail.com", 0, "domain"},
		{"bob", "bob@example.com", "yahoo.com", 3, "domain"},
		{"bob", "bob@other.test", "gmail.com", 0, "global"},
		{"bob", "bob@other.test", "yahoo.com", 0, Direct},
		{"", "relay@EXAMPLE.com", "yahoo.com", 0, "domain"},
		{"", "", "gmail.com", 0, "global"},
		{"", "", "example.net", 0, Direct},
		{"nobody", "x@y.test", "yahoo.com", 5, Direct},
	}
	for _, tc := range tests {
		from, _ := mailaddr.ParseAddress(tc.from)
		if got := tab.Route(tc.account, from.Domain, domain(tc.to), tc.attempts); got != tc.want {
			t.Errorf("Route(%q, %q, %q, %d) = %q, want %q", tc.account, tc.from, tc.to, tc.attempts, got, tc.want)
		}
	}
}
