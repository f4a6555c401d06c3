package config

import (
	"testing"
	"time"
)

func TestByteSize(t *testing.T) {
	tests := []struct {
		in      any
		want    ByteSize
		wantErr bool
	}{
		{int64(0), 0, false},
		{int64(1234), 1234, false},
		{int64(-1), 0, true},
		{"123", 123, false},
		{"123B", 123, false},
		{"10KB", 10 << 10, false},
		{"10kb", 10 << 10, false},
		{"10K", 10 << 10, false},
		{"10KiB", 10 << 10, false},
		{"50MB", 50 << 20, false},
		{"50 MiB", 50 << 20, false},
		{" 50mb ", 50 << 20, false},
		{"1GB", 1 << 30, false},
		{"1gib", 1 << 30, false},
		{"2TB", 2 << 40, false},
		{"", 0, true},
		{"MB", 0, true},
		{"1.5GB", 0, true},
		{"-1MB", 0, true},
		{"10XB", 0, true},
		{"10BB", 0, true},
		{"9999999999TB", 0, true},
		{"99999999999999999999", 0, true},
		{1.5, 0, true},
		{true, 0, true},
	}
	for _, tt := range tests {
		var b ByteSize
		err := b.UnmarshalTOML(tt.in)
		if (err != nil) != tt.wantErr || err == nil && b != tt.want {
			t.Errorf("%#v: got %d, %v; want %d, error %v", tt.in, b, err, tt.want, tt.wantErr)
		}
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		in   ByteSize
		want string
	}{
		{0, "0B"},
		{1500, "1500B"},
		{1024, "1KB"},
		{50 << 20, "50MB"},
		{1536 << 20, "1536MB"},
		{1 << 30, "1GB"},
		{3 << 40, "3TB"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("%d: got %q, want %q", int64(tt.in), got, tt.want)
		}
		var back ByteSize
		if err := back.UnmarshalTOML(tt.in.String()); err != nil || back != tt.in {
			t.Errorf("%d: round trip gives %d, %v", int64(tt.in), back, err)
		}
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"5m", 5 * time.Minute, false},
		{"30s", 30 * time.Second, false},
		{"1h30m", 90 * time.Minute, false},
		{"300", 0, true},
		{"-1s", 0, true},
		{"soon", 0, true},
	}
	for _, tt := range tests {
		var d Duration
		err := d.UnmarshalText([]byte(tt.in))
		if (err != nil) != tt.wantErr || err == nil && time.Duration(d) != tt.want {
			t.Errorf("%q: got %v, %v; want %v, error %v", tt.in, d, err, tt.want, tt.wantErr)
		}
	}
	if got := Duration(5 * time.Minute).String(); got != "5m0s" {
		t.Errorf("String: got %q", got)
	}
}
