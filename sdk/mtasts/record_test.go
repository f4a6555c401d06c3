package mtasts

import (
	"context"
	"errors"
	"net"
	"reflect"
	"testing"
)

func TestParseRecord(t *testing.T) {
	tests := []struct {
		name string
		txt  string
		want *Record // nil: ErrRecordSyntax expected.
	}{
		{"rfc example", "v=STSv1; id=20160831085700Z;", &Record{Version: "STSv1", ID: "20160831085700Z"}},
		{"no trailing semicolon", "v=STSv1; id=abc123", &Record{Version: "STSv1", ID: "abc123"}},
		{"no spaces", "v=STSv1;id=1", &Record{Version: "STSv1", ID: "1"}},
		{"tabs and spaces", "v=STSv1 \t;\t id=1 ; ", &Record{Version: "STSv1", ID: "1"}},
		{"32 char id", "v=STSv1; id=0123456789abcdef0123456789ABCDEF", &Record{Version: "STSv1", ID: "0123456789abcdef0123456789ABCDEF"}},
		{"extension kept", "v=STSv1; id=1; ext_a-b.c=va:lue!", &Record{Version: "STSv1", ID: "1", Extensions: []Extension{{"ext_a-b.c", "va:lue!"}}}},
		{"extension before id", "v=STSv1; x=y; id=1", &Record{Version: "STSv1", ID: "1", Extensions: []Extension{{"x", "y"}}}},
		{"empty", "", nil},
		{"missing id", "v=STSv1;", nil},
		{"only version", "v=STSv1", nil},
		{"version not first", "id=1; v=STSv1", nil},
		{"leading space", " v=STSv1; id=1", nil},
		{"wrong version", "v=STSv2; id=1", nil},
		{"lowercase version", "v=stsv1; id=1", nil},
		{"uppercase id key is an extension", "v=STSv1; ID=1", nil},
		{"33 char id", "v=STSv1; id=0123456789abcdef0123456789ABCDEFx", nil},
		{"empty id", "v=STSv1; id=", nil},
		{"id with dash", "v=STSv1; id=2016-08-31", nil},
		{"duplicate id", "v=STSv1; id=1; id=2", nil},
		{"empty field", "v=STSv1;; id=1", nil},
		{"field without =", "v=STSv1; id=1; junk", nil},
		{"extension value with space", "v=STSv1; id=1; x=a b", nil},
		{"extension value with =", "v=STSv1; id=1; x=a=b", nil},
		{"extension name starting with _", "v=STSv1; id=1; _x=a", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRecord(tt.txt)
			if tt.want == nil {
				if !errors.Is(err, ErrRecordSyntax) {
					t.Fatalf("ParseRecord(%q) = %+v, %v; want ErrRecordSyntax", tt.txt, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRecord(%q): %v", tt.txt, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseRecord(%q) = %+v, want %+v", tt.txt, got, tt.want)
			}
		})
	}
}

func TestFindRecord(t *testing.T) {
	tests := []struct {
		name    string
		txts    []string
		wantID  string
		wantErr error
	}{
		{"one among others", []string{"v=spf1 -all", "v=STSv1; id=a1;", "hello"}, "a1", nil},
		{"none", []string{"v=spf1 -all"}, "", ErrNoRecord},
		{"empty", nil, "", ErrNoRecord},
		{"two", []string{"v=STSv1; id=a1;", "v=STSv1; id=a2;"}, "", ErrNoRecord},
		{"invalid counts as none", []string{"v=STSv1; id=a-1;"}, "", ErrRecordSyntax},
		{"v=STSv10 is not another version", []string{"v=STSv10; id=1"}, "", ErrNoRecord},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := FindRecord(tt.txts)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !errors.Is(err, ErrNoRecord) {
					t.Fatalf("FindRecord = %+v, %v; want %v and ErrNoRecord", r, err, tt.wantErr)
				}
				return
			}
			if err != nil || r.ID != tt.wantID {
				t.Fatalf("FindRecord = %+v, %v; want id %q", r, err, tt.wantID)
			}
		})
	}
}

func TestLookupRecord(t *testing.T) {
	tests := []struct {
		name    string
		txts    []string
		err     error
		wantErr error
	}{
		{"found", []string{"v=STSv1; id=7;"}, nil, nil},
		{"nodata", nil, nil, ErrNoRecord},
		{"nxdomain", nil, &net.DNSError{Err: "no such host", IsNotFound: true}, ErrNoRecord},
		{"resolver says no record", nil, ErrNoRecord, ErrNoRecord},
		{"servfail", nil, &net.DNSError{Err: "server misbehaving", IsTemporary: true}, ErrTemporary},
		{"timeout", nil, context.DeadlineExceeded, ErrTemporary},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked string
			lookup := func(ctx context.Context, name string) ([]string, error) {
				asked = name
				return tt.txts, tt.err
			}
			r, err := LookupRecord(context.Background(), lookup, "Example.COM.")
			if asked != "_mta-sts.Example.COM." {
				t.Errorf("looked up %q", asked)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("LookupRecord = %+v, %v; want %v", r, err, tt.wantErr)
				}
				return
			}
			if err != nil || r.ID != "7" {
				t.Fatalf("LookupRecord = %+v, %v", r, err)
			}
		})
	}
}
