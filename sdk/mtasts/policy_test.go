package mtasts

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    *Policy
		wantErr string // Substring of the error, which wraps ErrPolicy.
	}{
		{
			name: "rfc example",
			body: "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n",
			want: &Policy{Version: "STSv1", Mode: ModeEnforce, MX: []string{"mail.example.com", "*.example.net", "backupmx.example.com"}, MaxAge: 604800 * time.Second},
		},
		{
			name: "lf lines, no final newline, any order",
			body: "mode: testing\nmax_age: 86400\nmx: mx.example.org\nversion: STSv1",
			want: &Policy{Version: "STSv1", Mode: ModeTesting, MX: []string{"mx.example.org"}, MaxAge: 86400 * time.Second},
		},
		{
			name: "whitespace after colon and at end of line, blank lines",
			body: "version:STSv1 \r\nmode:\t enforce\t\r\n\r\nmx:  mx.example.org.\r\nmax_age: 0\r\n\r\n",
			want: &Policy{Version: "STSv1", Mode: ModeEnforce, MX: []string{"mx.example.org."}, MaxAge: 0},
		},
		{
			name: "mode none without mx",
			body: "version: STSv1\nmode: none\nmax_age: 31557600\n",
			want: &Policy{Version: "STSv1", Mode: ModeNone, MaxAge: MaxMaxAge},
		},
		{
			name: "extension kept",
			body: "version: STSv1\nmode: enforce\nmx: mx.example.org\nmax_age: 60\nx-note: hello world\n",
			want: &Policy{Version: "STSv1", Mode: ModeEnforce, MX: []string{"mx.example.org"}, MaxAge: time.Minute, Extensions: []Extension{{"x-note", "hello world"}}},
		},
		{name: "empty", body: "", wantErr: "missing version"},
		{name: "missing version", body: "mode: enforce\nmx: a.example\nmax_age: 1\n", wantErr: "missing version"},
		{name: "missing mode", body: "version: STSv1\nmx: a.example\nmax_age: 1\n", wantErr: "missing mode"},
		{name: "missing max_age", body: "version: STSv1\nmode: enforce\nmx: a.example\n", wantErr: "missing max_age"},
		{name: "enforce without mx", body: "version: STSv1\nmode: enforce\nmax_age: 1\n", wantErr: "without mx"},
		{name: "testing without mx", body: "version: STSv1\nmode: testing\nmax_age: 1\n", wantErr: "without mx"},
		{name: "wrong version", body: "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", wantErr: "line 1: version"},
		{name: "unknown mode", body: "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n", wantErr: "line 2: mode"},
		{name: "mode is case-sensitive", body: "version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n", wantErr: "line 2: mode"},
		{name: "max_age too large", body: "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n", wantErr: "line 4: max_age 31557601 exceeds"},
		{name: "max_age 11 digits", body: "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 00000000001\n", wantErr: "not 1-10 digits"},
		{name: "max_age 10 digits huge", body: "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 9999999999\n", wantErr: "exceeds"},
		{name: "max_age negative", body: "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", wantErr: "not 1-10 digits"},
		{name: "max_age signed", body: "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: +1\n", wantErr: "not 1-10 digits"},
		{name: "max_age empty", body: "version: STSv1\nmode: enforce\nmx: a.example\nmax_age:\n", wantErr: "not 1-10 digits"},
		{name: "duplicate mode", body: "version: STSv1\nmode: enforce\nmode: none\nmx: a.example\nmax_age: 1\n", wantErr: "line 3: duplicate mode"},
		{name: "no colon", body: "version: STSv1\nmode enforce\n", wantErr: "line 2: missing colon"},
		{name: "bad mx", body: "version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1\n", wantErr: "line 3: bad mx pattern"},
		{name: "mx with inner wildcard", body: "version: STSv1\nmode: enforce\nmx: mx.*.example\nmax_age: 1\n", wantErr: "bad mx pattern"},
		{name: "mx bare wildcard", body: "version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n", wantErr: "bad mx pattern"},
		{name: "mx with port", body: "version: STSv1\nmode: enforce\nmx: a.example:25\nmax_age: 1\n", wantErr: "bad mx pattern"},
		{name: "field name is case-sensitive", body: "Version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n", wantErr: "missing version"},
		{name: "leading space in field name", body: " version: STSv1\n", wantErr: "line 1: bad field"},
		{name: "html", body: "<html><body>not found</body></html>\n", wantErr: "line 1: missing colon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePolicy([]byte(tt.body))
			if tt.wantErr != "" {
				if !errors.Is(err, ErrPolicy) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePolicy = %+v, %v; want ErrPolicy with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePolicy: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParsePolicy = %+v, want %+v", got, tt.want)
			}
			// String gives back an equivalent policy file.
			again, err := ParsePolicy([]byte(got.String()))
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("round trip of %q = %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestMatchMX(t *testing.T) {
	p := &Policy{Mode: ModeEnforce, MX: []string{"mail.example.com", "*.example.net", "Backup.Example.ORG."}}
	tests := []struct {
		host string
		want bool
	}{
		{"mail.example.com", true},
		{"MAIL.Example.Com", true},
		{"mail.example.com.", true},
		{"backup.example.org", true},
		{"backup.example.org.", true},
		{"mx1.example.net", true},  // Wildcard: one leftmost label (§4.1).
		{"MX1.EXAMPLE.NET.", true}, // Case and trailing dot ignored with wildcards too.
		{"example.net", false},     // The wildcard needs a label.
		{"a.b.example.net", false}, // Exactly one label, not more.
		{".example.net", false},    // An empty label is not one.
		{"mx1.example.net.evil", false},
		{"mx1example.net", false},
		{"example.com", false},
		{"xmail.example.com", false},
		{"mail.example.com.evil", false},
		{"", false},
		{".", false},
	}
	for _, tt := range tests {
		if got := p.MatchMX(tt.host); got != tt.want {
			t.Errorf("MatchMX(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
	if (&Policy{Mode: ModeNone}).MatchMX("mail.example.com") {
		t.Errorf("policy without mx matched")
	}
}

func TestModes(t *testing.T) {
	tests := []struct {
		p                *Policy
		enforce, testing bool
	}{
		{&Policy{Mode: ModeEnforce}, true, false},
		{&Policy{Mode: ModeTesting}, false, true},
		{&Policy{Mode: ModeNone}, false, false},
		{nil, false, false},
	}
	for _, tt := range tests {
		if tt.p.Enforce() != tt.enforce || tt.p.Testing() != tt.testing {
			t.Errorf("%+v: Enforce %v, Testing %v", tt.p, tt.p.Enforce(), tt.p.Testing())
		}
	}
}
