package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// example is the contract example of mta.toml.
const example = `hostname = "mail.example.org"
data_dir = "data"
[tls]
cert = "cert.pem"
key = "key.pem"
[limits]
max_message_size = "50MB"
max_recipients = 1000
[queue]
backoff_scale = 1.0
[[listeners]]
name = "submission"
kind = "submission"
address = "127.0.0.1:1587"
[[listeners]]
name = "mx"
kind = "smtp"
address = "127.0.0.1:1025"
relay_networks = []
[plugins.transport-submission]
path = "bin/plugins/transport-submission"
[transports.smarthost]
plugin = "transport-submission"
[transports.smarthost.config]
host = "127.0.0.1"
port = 2525
tls = "none"
[[routes]]
to_domains = ["example.net", ".example.com"]
from_domains = []
minimum_attempts = 0
transport = "smarthost"
[domains."example.org"]
[[domains."example.org".routes]]
transport = "smarthost"
[accounts.alice]
domain = "example.org"
addresses = ["alice@example.org"]
[[accounts.alice.routes]]
transport = "smarthost"
`

func TestLoadExample(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mta.toml")
	if err := os.WriteFile(path, []byte(example), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"File", c.File, path},
		{"Dir", c.Dir, dir},
		{"DataDir", c.DataDir, filepath.Join(dir, "data")},
		{"TLS.Cert", c.TLS.Cert, filepath.Join(dir, "cert.pem")},
		{"TLS.Key", c.TLS.Key, filepath.Join(dir, "key.pem")},
		{"Plugin.Path", c.Plugins["transport-submission"].Path, filepath.Join(dir, "bin/plugins/transport-submission")},
		{"MaxMessageSize", c.Limits.MaxMessageSize, ByteSize(50 << 20)},
		{"MaxRecipients", c.Limits.MaxRecipients, 1000},
		{"ReadTimeout", c.Limits.ReadTimeout, Duration(5 * time.Minute)},
		{"WriteTimeout", c.Limits.WriteTimeout, Duration(time.Minute)},
		{"BackoffScale", c.Queue.BackoffScale, 1.0},
		{"MaxAttempts", c.Queue.MaxAttempts, 9},
		{"MaxParallel", c.Queue.MaxParallel, 64},
		{"MaxPerDestination", c.Queue.MaxPerDestination, 16},
		{"Listeners", len(c.Listeners), 2},
		{"transport config", c.Transport["smarthost"].Config, map[string]any{"host": "127.0.0.1", "port": int64(2525), "tls": "none"}},
		{"route domains", c.Routes[0].ToDomains, []string{"example.net", ".example.com"}},
		{"domain routes", c.Domains["example.org"].Routes[0].Transport, "smarthost"},
		{"account routes", c.Accounts["alice"].Routes[0].Transport, "smarthost"},
		{"line of port", c.Line("transports.smarthost.config.port"), 26},
		{"line of kind", c.Line("listeners[1].kind"), 17},
		{"account", must(c.AccountByAddress(address("Alice@Example.org"))), "alice"},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s: got %#v, want %#v", ch.name, ch.got, ch.want)
		}
	}
}

func must(s string, ok bool) string {
	if !ok {
		return "(not found)"
	}
	return s
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "mta.toml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want fs.ErrNotExist", err)
	}
}

// TestDefaults checks defaults, explicit values and integers for floats.
func TestDefaults(t *testing.T) {
	src := `hostname = "localhost"
[limits]
max_message_size = 1024
read_timeout = "30s"
[queue]
backoff_scale = 2
max_attempts = 3
`
	c, err := Parse("mta.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	got := []any{c.Limits.MaxMessageSize, c.Limits.MaxRecipients, c.Limits.ReadTimeout, c.Limits.WriteTimeout, c.Queue}
	want := []any{ByteSize(1024), 1000, Duration(30 * time.Second), Duration(time.Minute), Queue{BackoffScale: 2, MaxAttempts: 3, MaxParallel: 64, MaxPerDestination: 16}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if !filepath.IsAbs(c.DataDir) || filepath.Base(c.DataDir) != "data" {
		t.Errorf("DataDir %q, want absolute .../data", c.DataDir)
	}
}

// base is a valid configuration that error cases extend.
const base = `hostname = "mail.example.org"
[tls]
self_signed = true
[plugins.p]
path = "/bin/p"
[transports.t]
plugin = "p"
[domains."example.org"]
`

// baseLines is the number of lines of base: the first added line is
// baseLines+1.
var baseLines = strings.Count(base, "\n")

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string // Appended to base unless full.
		full bool
		want []string // With base's lines, "mta.toml:L" is given relative: L+baseLines.
	}{
		{
			name: "hostname required",
			src:  "[limits]\n",
			full: true,
			want: []string{"mta.toml: hostname: required"},
		},
		{
			name: "auth mechanisms",
			src:  "[auth]\nmechanisms = [\n  \"SCRAM-SHA-256\",\n  \"scram-sha-1\",\n  \"SCRAM-SHA-256\",\n]\n",
			want: []string{
				`mta.toml:+4: auth.mechanisms[1]: invalid SASL mechanism name "scram-sha-1": want 1 to 20 upper-case letters, digits, '-' and '_' (RFC 4422 §3.1)`,
				`mta.toml:+5: auth.mechanisms[2]: SCRAM-SHA-256 is also auth.mechanisms[0]`,
			},
		},
		{
			name: "auth mechanisms empty",
			src:  "[auth]\nmechanisms = []\n",
			want: []string{"mta.toml:+2: auth.mechanisms: lists no mechanism; omit it for the default"},
		},
		{
			name: "unknown key at top level",
			src:  "bogus = 1\n" + base,
			full: true,
			want: []string{"mta.toml:1: bogus: unknown key"},
		},
		{
			name: "unknown key in limits",
			src:  "[limits]\nmax_recipients = 10\nmax_recipient = 10\n",
			want: []string{"mta.toml:+3: limits.max_recipient: unknown key"},
		},
		{
			name: "unknown dotted key",
			src:  "limits.foo = 1\n" + base,
			full: true,
			want: []string{"mta.toml:1: limits.foo: unknown key"},
		},
		{
			name: "unknown table reported once",
			src:  "[limits.sub]\na = 1\nb = 2\n",
			want: []string{"mta.toml:+1: limits.sub: unknown key"},
		},
		{
			name: "unknown key in second listener",
			src: `[[listeners]]
name = "a"
kind = "smtp"
address = "127.0.0.1:1025"
[[listeners]]
name = "b"
kind = "smtp"
# comment
adress = "127.0.0.1:1026"
`,
			want: []string{
				"mta.toml:+5: listeners[1].address: required",
				"mta.toml:+9: listeners[1].adress: unknown key",
			},
		},
		{
			name: "plugin config tables are the plugin's",
			src:  "[transports.t.config]\nanything = 1\n[transports.t.config.sub]\nx = \"y\"\n[plugins.p.config]\nz = [1]\n",
		},
		{
			name: "type error",
			src:  "[limits]\nmax_recipients = \"x\"\n",
			want: []string{"mta.toml:+2: limits.max_recipients: wrong type: string, want integer"},
		},
		{
			name: "bad size",
			src:  "[limits]\nmax_message_size = \"50XB\"\n",
			want: []string{`mta.toml:+2: limits.max_message_size: invalid size "50XB": unknown unit "XB" (want B, KB, MB, GB or TB)`},
		},
		{
			name: "syntax error",
			src:  "hostname = \"a\"\nfoo = = 1\n",
			full: true,
			want: []string{"mta.toml:2: foo: expected value but found '=' instead"},
		},
		{
			name: "non-positive limits and queue",
			src:  "[limits]\nmax_recipients = 0\nwrite_timeout = \"0s\"\n[queue]\nbackoff_scale = 0\nmax_parallel = -1\n",
			want: []string{
				"mta.toml:+2: limits.max_recipients: must be positive, is 0",
				"mta.toml:+3: limits.write_timeout: must be positive",
				"mta.toml:+5: queue.backoff_scale: must be positive, is 0",
				"mta.toml:+6: queue.max_parallel: must be positive, is -1",
			},
		},
		{
			name: "route to unknown transport",
			src:  "[[routes]]\ntransport = \"nope\"\n[[routes]]\ntransport = \"direct\"\n[[routes]]\nminimum_attempts = -1\ntransport = \"t\"\n",
			want: []string{
				`mta.toml:+2: routes[0].transport: unknown transport "nope" (not in [transports])`,
				`mta.toml:+4: routes[1].transport: unknown transport "direct" (not in [transports])`,
				"mta.toml:+6: routes[2].minimum_attempts: must not be negative",
			},
		},
		{
			name: "route domains",
			src:  "[[domains.\"example.org\".routes]]\ntransport = \"t\"\nto_domains = [\n  \"Example.COM\",\n  \"exa mple.net\",\n]\n",
			want: []string{`mta.toml:+5: domains."example.org".routes[0].to_domains[1]: invalid domain name "exa mple.net": character ' '`},
		},
		{
			name: "transport with unknown plugin",
			src:  "[transports.u]\nplugin = \"missing\"\n[transports.v]\n",
			want: []string{
				`mta.toml:+2: transports.u.plugin: unknown plugin "missing" (not in [plugins])`,
				"mta.toml:+3: transports.v.plugin: required",
			},
		},
		{
			name: "plugins",
			src:  "[plugins.q]\nsha256 = \"abc\"\n[plugins.\"../x\"]\npath = \"x\"\n",
			want: []string{
				"mta.toml:+1: plugins.q.path: required",
				"mta.toml:+2: plugins.q.sha256: want 64 hex digits",
				`mta.toml:+3: plugins."../x": invalid plugin name "../x": want letters, digits, '-', '_' and '.'`,
			},
		},
		{
			name: "listeners",
			src: `[[listeners]]
name = "a"
kind = "smpt"
address = "127.0.0.1"
[[listeners]]
name = "a"
kind = "submission"
address = "127.0.0.1:99999"
relay_networks = ["10.0.0.0/8"]
[[listeners]]
name = "c"
kind = "smtp"
address = "[::1]:25"
relay_networks = ["10.0.0.0/8", "10.0.0.0/33", "host"]
`,
			want: []string{
				`mta.toml:+3: listeners[0].kind: unknown kind "smpt" (want smtp, submission, submissions, imap or imaps)`,
				`mta.toml:+4: listeners[0].address: want host:port: address 127.0.0.1: missing port in address`,
				`mta.toml:+6: listeners[1].name: "a" is also the name of listeners[0]`,
				`mta.toml:+8: listeners[1].address: invalid port "99999" in "127.0.0.1:99999"`,
				`mta.toml:+9: listeners[1].relay_networks: only for kind "smtp"`,
				`mta.toml:+14: listeners[2].relay_networks[1]: netip.ParsePrefix("10.0.0.0/33"): prefix length out of range`,
				`mta.toml:+14: listeners[2].relay_networks[2]: ParseAddr("host"): unable to parse IP`,
			},
		},
		{
			name: "connection limits",
			src: `[limits]
max_connections = 0
max_connections_per_ip = -1
exempt_networks = ["127.0.0.1/40"]
[[listeners]]
name = "a"
kind = "smtp"
address = "127.0.0.1:25"
max_connections = 0
connection_rate_per_ip = -5
`,
			want: []string{
				"mta.toml:+2: limits.max_connections: must be positive, is 0",
				"mta.toml:+3: limits.max_connections_per_ip: must be 0 (no cap) or more, is -1",
				`mta.toml:+4: limits.exempt_networks[0]: netip.ParsePrefix("127.0.0.1/40"): prefix length out of range`,
				"mta.toml:+9: listeners[0].max_connections: must be 1 or more, is 0",
				"mta.toml:+10: listeners[0].connection_rate_per_ip: must be 0 or more, is -5",
			},
		},
		{
			name: "tls required",
			src:  "hostname = \"a\"\n[[listeners]]\nname = \"s\"\nkind = \"submissions\"\naddress = \":1465\"\n",
			full: true,
			want: []string{`mta.toml: tls: cert and key, or self_signed, required by listeners[0] ("s", kind submissions)`},
		},
		{
			name: "tls half",
			src:  "hostname = \"a\"\n[tls]\ncert = \"c.pem\"\n",
			full: true,
			want: []string{"mta.toml:2: tls.key: required with cert"},
		},
		{
			name: "tls both",
			src:  "hostname = \"a\"\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nself_signed = true\n",
			full: true,
			want: []string{"mta.toml:5: tls.self_signed: set either self_signed or cert and key, not both"},
		},
		{
			name: "domains",
			src:  "[domains.\"Example.ORG\"]\n[domains.\"b_c.example\"]\nlocalpart_separator = \"x\"\n",
			want: []string{
				`mta.toml:+1: domains."Example.ORG": domain "example.org" is listed twice (ignoring case, U-labels equal to A-labels)`,
				`mta.toml:+2: domains."b_c.example": invalid domain name "b_c.example": character '_'`,
				`mta.toml:+3: domains."b_c.example".localpart_separator: invalid separator "x": want one of !#$%&'*+-/=?^_` + "`{|}~",
			},
		},
		{
			name: "accounts",
			src: `[accounts.alice]
domain = "example.org"
addresses = ["alice@example.org", "alice@example.net", "nodomain", "bob@EXAMPLE.org"]
[accounts.bob]
domain = "example.com"
addresses = ["bob@example.org"]
[accounts."a@b"]
domain = "example.org"
[accounts.carol]
`,
			want: []string{
				`mta.toml:+3: accounts.alice.addresses[1]: domain "example.net" is not in [domains]`,
				`mta.toml:+3: accounts.alice.addresses[2]: invalid address "nodomain": want localpart@domain`,
				`mta.toml:+5: accounts.bob.domain: domain "example.com" is not in [domains]`,
				`mta.toml:+6: accounts.bob.addresses[0]: "bob@example.org" is also an address of account "alice"`,
				`mta.toml:+7: accounts."a@b": invalid account name "a@b": no '@', '/', '\', spaces or control characters`,
				`mta.toml:+9: accounts.carol.domain: required`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.src
			if !tt.full {
				src = base + src
			}
			_, err := Parse("mta.toml", []byte(src))
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			var want []string
			for _, w := range tt.want {
				want = append(want, relLine(w))
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			var errs Errors
			if err != nil && !errors.As(err, &errs) {
				t.Errorf("error %T, want Errors", err)
			}
		})
	}
}

// relLine turns "mta.toml:+N:" into "mta.toml:M:" with M = N + baseLines.
func relLine(s string) string {
	rest, ok := strings.CutPrefix(s, "mta.toml:+")
	if !ok {
		return s
	}
	n, rest, _ := strings.Cut(rest, ":")
	line, _ := strconv.Atoi(n)
	return "mta.toml:" + strconv.Itoa(line+baseLines) + ":" + rest
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{"mta.toml", 12, "listeners[1].kind", `unknown kind "smpt"`}, `mta.toml:12: listeners[1].kind: unknown kind "smpt"`},
		{Error{"/etc/mta.toml", 0, "hostname", "required"}, "/etc/mta.toml: hostname: required"},
		{Error{"mta.toml", 3, "", "syntax"}, "mta.toml:3: syntax"},
		{Error{"", 3, "k", "m"}, "line 3: k: m"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestRelayNetworks(t *testing.T) {
	src := base + `[[listeners]]
name = "mx"
kind = "smtp"
address = "127.0.0.1:1025"
relay_networks = ["10.0.0.0/8", "192.168.1.5", "::1", "2001:db8::/32", "10.1.2.3/8"]
`
	c, err := Parse("mta.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var want []netip.Prefix
	for _, s := range []string{"10.0.0.0/8", "192.168.1.5/32", "::1/128", "2001:db8::/32", "10.0.0.0/8"} {
		want = append(want, netip.MustParsePrefix(s))
	}
	if got := c.ListenerByName("mx").RelayPrefixes; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if c.ListenerByName("submission") != nil {
		t.Errorf("ListenerByName of a missing listener is not nil")
	}
}

func TestConnLimits(t *testing.T) {
	src := base + `[limits]
max_connections_per_ip = 5
exempt_networks = ["127.0.0.0/8"]
exempt_relay_networks = true
[[listeners]]
name = "mx"
kind = "smtp"
address = "127.0.0.1:1025"
relay_networks = ["10.0.0.0/8"]
connection_rate_per_ip = 0
[[listeners]]
name = "sub"
kind = "submission"
address = "127.0.0.1:1587"
max_connections = 100
max_connections_per_ip = 50
`
	c, err := Parse("mta.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.MaxConnections != DefaultMaxConnections || c.Limits.GreetingTimeout != DefaultGreetingTimeout {
		t.Errorf("defaults: %d, %v", c.Limits.MaxConnections, c.Limits.GreetingTimeout)
	}
	loop, ten := netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")
	if got, want := c.ListenerByName("mx").Conns, (ConnLimits{MaxPerIP: 5, Exempt: []netip.Prefix{loop, ten}}); !reflect.DeepEqual(got, want) {
		t.Errorf("mx: got %+v, want %+v", got, want)
	}
	if got, want := c.ListenerByName("sub").Conns, (ConnLimits{MaxConnections: 100, MaxPerIP: 50, RatePerIP: DefaultConnRatePerIP, Exempt: []netip.Prefix{loop}}); !reflect.DeepEqual(got, want) {
		t.Errorf("sub: got %+v, want %+v", got, want)
	}
}

func TestReservedTransport(t *testing.T) {
	_, err := Parse("/x/mta.toml", []byte("hostname = \"h.example\"\n[plugins.p]\npath = \"p\"\n[transports.local]\nplugin = \"p\"\n"))
	if err == nil || !strings.Contains(err.Error(), `mta.toml:4: transports.local: the name "local" is reserved`) {
		t.Fatalf("got %v", err)
	}
}

func TestLogConfig(t *testing.T) {
	c, err := Parse("mta.toml", []byte(base))
	if err != nil || c.Log != (Log{Level: "info", Format: "text"}) {
		t.Fatalf("defaults: %+v %v", c.Log, err)
	}
	_, err = Parse("mta.toml", []byte(base+"[log]\nlevel = \"loud\"\nformat = \"xml\"\n"))
	if err == nil || !strings.Contains(err.Error(), `log.level: must be "debug", "info", "warn" or "error", not "loud"`) || !strings.Contains(err.Error(), `log.format: must be "text" or "json", not "xml"`) {
		t.Fatalf("got %v", err)
	}
}

func TestPolicies(t *testing.T) {
	src := `hostname = "h.example"
[plugins.p]
path = "p"
[policies.a]
plugin = "p"
[policies.b]
plugin = "p"
timeout = "3s"
on_error = "accept"
[policies.b.config]
x = 1
[[listeners]]
name = "mx"
kind = "smtp"
address = "127.0.0.1:2525"
policies = ["b", "a"]
`
	c, err := Parse("/x/mta.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.Policies["a"], c.Policies["b"]
	if a.Timeout != DefaultPolicyTimeout || a.OnError != OnErrorTempfail || b.Timeout != Duration(3*time.Second) || b.OnError != OnErrorAccept || b.Config["x"] != int64(1) {
		t.Errorf("policies %+v %+v", a, b)
	}
	if got := c.Listeners[0].Policies; !slices.Equal(got, []string{"b", "a"}) {
		t.Errorf("listener policies %v", got)
	}
	for _, tc := range []struct{ src, want string }{
		{"[policies.c]\n", "policies.c.plugin: required"},
		{"[policies.c]\nplugin = \"q\"\n", `policies.c.plugin: unknown plugin "q"`},
		{"[policies.c]\nplugin = \"p\"\non_error = \"reject\"\n", `policies.c.on_error: must be "tempfail" or "accept", not "reject"`},
		{"[policies.c]\nplugin = \"p\"\ntimeout = \"-1s\"\n", `policies.c.timeout: negative duration "-1s"`},
		{"[[listeners]]\nname = \"sub\"\nkind = \"submission\"\naddress = \"127.0.0.1:2587\"\npolicies = [\"nope\"]\n", `listeners[1].policies[0]: unknown policy "nope"`},
		{"[[listeners]]\nname = \"sub\"\nkind = \"submission\"\naddress = \"127.0.0.1:2587\"\npolicies = [\"a\", \"a\"]\n", `listeners[1].policies[1]: "a" is listed twice`},
		{"[[listeners]]\nname = \"imap\"\nkind = \"imap\"\naddress = \"127.0.0.1:2143\"\npolicies = [\"a\"]\n", "listeners[1].policies: only for SMTP listeners"},
	} {
		if _, err := Parse("/x/mta.toml", []byte(src+tc.src)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.src, err, tc.want)
		}
	}
}
