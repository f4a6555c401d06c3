package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ByteSize is a size written as an integer of bytes or as a string of an
// integer and a unit in powers of 1024: "123", "10KB", "50MB", "1GB", also
// "10KiB", "10k" or "50 mb".
type ByteSize int64

// byteUnits are the units of ByteSize, largest first, as String writes them.
var byteUnits = []struct {
	name string
	size int64
}{
	{"TB", 1 << 40},
	{"GB", 1 << 30},
	{"MB", 1 << 20},
	{"KB", 1 << 10},
}

// UnmarshalTOML implements toml.Unmarshaler.
func (b *ByteSize) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return fmt.Errorf("negative size %d", v)
		}
		*b = ByteSize(v)
		return nil
	case string:
		n, err := parseByteSize(v)
		if err != nil {
			return err
		}
		*b = n
		return nil
	}
	return fmt.Errorf(`want an integer of bytes or a string like "50MB", not %T`, v)
}

func parseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf(`invalid size %q: want an integer and a unit, like "50MB"`, s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %w", s, err)
	}
	mult := int64(1)
	switch unit := strings.ToUpper(strings.TrimSpace(t[i:])); unit {
	case "", "B":
	default:
		unit = strings.TrimSuffix(strings.TrimSuffix(unit, "B"), "I")
		found := false
		for _, u := range byteUnits {
			if unit == u.name[:1] {
				mult, found = u.size, true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("invalid size %q: unknown unit %q (want B, KB, MB, GB or TB)", s, t[i:])
		}
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return ByteSize(n * mult), nil
}

// String returns the size in the largest unit that divides it, e.g. "50MB",
// or in bytes, e.g. "1500B".
func (b ByteSize) String() string {
	for _, u := range byteUnits {
		if b != 0 && int64(b)%u.size == 0 {
			return strconv.FormatInt(int64(b)/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// Duration is written as a Go duration string, e.g. "5m" or "30s".
type Duration time.Duration

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf(`invalid duration %q: want a string like "5m" or "30s"`, text)
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", text)
	}
	*d = Duration(v)
	return nil
}

// String returns the duration as time.Duration writes it, e.g. "5m0s".
func (d Duration) String() string {
	return time.Duration(d).String()
}
