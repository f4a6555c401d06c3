package config

import (
	"reflect"
	"testing"
)

const keysSrc = `# comment [not] = 1
hostname = "mail.example.org" # trailing
"quoted key" = 'literal'
a.b.c = 1
motd = """
fake = 1
[fake]
"""
lit = '''
[[fake]]'''

[transports.smarthost]
plugin = "p"
config = { host = "h", port = 25, auth = { user = "u" } }

[transports.other.config]
port = 2525
nested.deep = true

[[listeners]]
name = "a"
relay_networks = [
	"10.0.0.0/8", # first
	"::1",
]

[[listeners]]
name = "b"
[listeners.extra]
x = 1

[domains."example.org"]
[[domains."example.org".routes]]
transport = "t1"
[[domains."example.org".routes]]
transport = "t2"
[[domains.'example.net'.routes]]
transport = "t3"

[accounts.alice]
routes = [{ transport = "x" }, { transport = "y" }]
[accounts.bob.limits]
`

func TestLine(t *testing.T) {
	c := &Config{keys: indexKeys(keysSrc)}
	tests := []struct {
		key  string
		want int
	}{
		{"hostname", 2},
		{`"quoted key"`, 3},
		{"a.b.c", 4},
		{"a.b", 4}, // Defined by its descendant.
		{"a", 4},
		{"motd", 5},
		{"fake", 0}, // In a multi-line string.
		{"lit", 9},
		{"transports.smarthost", 12},
		{"transports.smarthost.plugin", 13},
		{"transports.smarthost.config.port", 14},
		{"transports.smarthost.config.auth.user", 14},
		{"transports.smarthost.config.missing", 14}, // Nearest ancestor.
		{"transports.other.config", 16},
		{"transports.other.config.port", 17},
		{"transports.other.config.nested.deep", 18},
		{"transports.other.config.nested", 18},
		{"listeners", 20},
		{"listeners[0]", 20},
		{"listeners.name", 21}, // toml.Key form: the first.
		{"listeners[0].name", 21},
		{"listeners[0].relay_networks", 22},
		{"listeners[0].relay_networks[0]", 23},
		{"listeners[0].relay_networks[1]", 24},
		{"listeners[1]", 27},
		{"listeners[1].name", 28},
		{"listeners[1].extra.x", 30},
		{"listeners[1].kind", 27},
		{"listeners[2].name", 0},
		{`domains."example.org"`, 32},
		{`domains."example.org".routes`, 33},
		{`domains."example.org".routes[1].transport`, 36},
		{`domains."example.net".routes[0].transport`, 38},
		{"domains.example.net.routes", 0}, // Unquoted dots are separators.
		{"accounts.alice.routes[1].transport", 41},
		{"accounts.alice.routes", 41},
		{"accounts.bob", 42},
		{"accounts.carol", 0},
		{"nothing", 0},
		{"", 0},
		{"listeners[x].name", 0},
		{`"unterminated`, 0},
	}
	for _, tt := range tests {
		if got := c.Line(tt.key); got != tt.want {
			t.Errorf("Line(%s): got %d, want %d", tt.key, got, tt.want)
		}
	}
}

func TestParseKeyPath(t *testing.T) {
	tests := []struct {
		in   string
		want []keyElem
	}{
		{"a", []keyElem{{"a", -1}}},
		{"a.b[2].c", []keyElem{{"a", -1}, {"b", 2}, {"c", -1}}},
		{`domains."example.org".routes[0]`, []keyElem{{"domains", -1}, {"example.org", -1}, {"routes", 0}}},
		{`x.'a.b'`, []keyElem{{"x", -1}, {"a.b", -1}}},
		{"a..b", nil},
		{"a.", nil},
		{"a[-1]", nil},
		{"a[1]b", nil},
	}
	for _, tt := range tests {
		got, _ := parseKeyPath(tt.in)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.in, got, tt.want)
		}
		if got != nil && keyString(got) != tt.in && tt.in != `x.'a.b'` {
			t.Errorf("%s: keyString gives %s", tt.in, keyString(got))
		}
	}
}

// TestIndexKeysMalformed checks the scanner ends on bad input.
func TestIndexKeysMalformed(t *testing.T) {
	for _, src := range []string{"[", "[[a", "a = [", "a = {", "a = \"", `a = """`, "a = '", "= 1", "a = [1, {b = }]", "a.\n", "\ufeffa = 1", `"\" = 1`} {
		indexKeys(src)
	}
	if got := indexKeys("\ufeffa = 1").line([]keyElem{{"a", -1}}); got != 1 {
		t.Errorf("after BOM: got line %d", got)
	}
}
