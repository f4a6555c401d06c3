package smtp

import (
	"testing"
	"time"
)

func TestParser(t *testing.T) {
	validReversePaths := []struct {
		raw, path, after string
	}{
		{"<>", "", ""},
		{"<root@nsa.gov>", "root@nsa.gov", ""},
		{"root@nsa.gov", "root@nsa.gov", ""},
		{"<root@nsa.gov> AUTH=asdf@example.org", "root@nsa.gov", " AUTH=asdf@example.org"},
		{"root@nsa.gov AUTH=asdf@example.org", "root@nsa.gov", " AUTH=asdf@example.org"},
	}
	for _, tc := range validReversePaths {
		p := parser{tc.raw}
		path, err := p.parseReversePath()
		if err != nil {
			t.Errorf("parser.parseReversePath(%q) = %v", tc.raw, err)
		} else if path != tc.path {
			t.Errorf("parser.parseReversePath(%q) = %q, want %q", tc.raw, path, tc.path)
		} else if p.s != tc.after {
			t.Errorf("parser.parseReversePath(%q): got after = %q, want %q", tc.raw, p.s, tc.after)
		}
	}

	invalidReversePaths := []string{
		"",
		" ",
		"asdf",
		"<Foo Bar <root@nsa.gov>>",
		" BODY=8BITMIME SIZE=12345",
		"a:b:c@example.org",
		"<root@nsa.gov",
	}
	for _, tc := range invalidReversePaths {
		p := parser{tc}
		if path, err := p.parseReversePath(); err == nil {
			t.Errorf("parser.parseReversePath(%q) = %q, want error", tc, path)
		}
	}
}

// parseHold: HOLDFOR and HOLDUNTIL as RFC 4865 §3 defines them, within the
// longest hold offered. (Switchyard patch.)
func TestParseHold(t *testing.T) {
	now := time.Date(2030, 1, 2, 15, 4, 5, 500e6, time.UTC)
	max := time.Hour
	for _, tc := range []struct {
		args map[string]string
		max  time.Duration
		want time.Time // Zero: none, or refused.
		code int       // Zero: accepted.
	}{
		{map[string]string{"SIZE": "10"}, max, time.Time{}, 0},
		{map[string]string{"SIZE": "10"}, 0, time.Time{}, 0},
		{map[string]string{"HOLDFOR": "0"}, max, now, 0},
		{map[string]string{"HOLDFOR": "3600"}, max, now.Add(max), 0},
		{map[string]string{"HOLDFOR": "000000060"}, max, now.Add(time.Minute), 0},
		{map[string]string{"HOLDFOR": "3601"}, max, time.Time{}, 554},
		{map[string]string{"HOLDFOR": "999999999"}, max, time.Time{}, 554},
		{map[string]string{"HOLDFOR": "1000000000"}, max, time.Time{}, 501},
		{map[string]string{"HOLDFOR": ""}, max, time.Time{}, 501},
		{map[string]string{"HOLDFOR": "-1"}, max, time.Time{}, 501},
		{map[string]string{"HOLDFOR": "+1"}, max, time.Time{}, 501},
		{map[string]string{"HOLDFOR": "1.5"}, max, time.Time{}, 501},
		{map[string]string{"HOLDFOR": "٣"}, max, time.Time{}, 501},
		{map[string]string{"HOLDFOR": "5"}, 0, time.Time{}, 555},
		{map[string]string{"HOLDUNTIL": "2030-01-02T15:04:05Z"}, 0, time.Time{}, 555},
		{map[string]string{"HOLDFOR": "5", "HOLDUNTIL": "2030-01-02T15:30:00Z"}, max, time.Time{}, 501},
		{map[string]string{"HOLDUNTIL": "2030-01-02T15:30:00Z"}, max, time.Date(2030, 1, 2, 15, 30, 0, 0, time.UTC), 0},
		{map[string]string{"HOLDUNTIL": "2030-01-02t15:30:00.25z"}, max, time.Date(2030, 1, 2, 15, 30, 0, 250e6, time.UTC), 0},
		{map[string]string{"HOLDUNTIL": "2030-01-02T17:30:00+02:00"}, max, time.Date(2030, 1, 2, 15, 30, 0, 0, time.UTC), 0},
		// Within the current second: due at once.
		{map[string]string{"HOLDUNTIL": "2030-01-02T15:04:05Z"}, max, time.Date(2030, 1, 2, 15, 4, 5, 0, time.UTC), 0},
		{map[string]string{"HOLDUNTIL": "2030-01-02T15:04:04Z"}, max, time.Time{}, 554},
		{map[string]string{"HOLDUNTIL": "2030-01-02T16:04:05Z"}, max, time.Date(2030, 1, 2, 16, 4, 5, 0, time.UTC), 0},
		{map[string]string{"HOLDUNTIL": "2030-01-02T16:04:06Z"}, max, time.Time{}, 554},
		{map[string]string{"HOLDUNTIL": "2030-01-02 15:30:00Z"}, max, time.Time{}, 501},
		{map[string]string{"HOLDUNTIL": "2030-01-02T15:30:00"}, max, time.Time{}, 501},
		{map[string]string{"HOLDUNTIL": "2030-01-02"}, max, time.Time{}, 501},
		{map[string]string{"HOLDUNTIL": "1893456000"}, max, time.Time{}, 501},
		{map[string]string{"HOLDUNTIL": ""}, max, time.Time{}, 501},
	} {
		got, err := parseHold(tc.args, now, tc.max)
		code := 0
		if err != nil {
			code = err.Code
			if err.EnhancedCode != (EnhancedCode{5, 5, 4}) || err.Message == "" {
				t.Errorf("parseHold(%v): reply %d %v %q, want X.5.4 and a text", tc.args, err.Code, err.EnhancedCode, err.Message)
			}
		}
		if code != tc.code || !got.Equal(tc.want) {
			t.Errorf("parseHold(%v, max %v) = %v, %d; want %v, %d", tc.args, tc.max, got, code, tc.want, tc.code)
		}
	}
}
