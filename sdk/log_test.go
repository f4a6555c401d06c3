package sdk

import (
	"log/slog"
	"testing"
)

func TestCoreLevel(t *testing.T) {
	for _, c := range []struct {
		passed string
		want   slog.Level
	}{
		{"", slog.LevelInfo}, {"debug", slog.LevelDebug}, {"warn", slog.LevelWarn}, {"ERROR", slog.LevelError}, {"loud", slog.LevelInfo},
	} {
		if got := coreLevel(c.passed, slog.LevelInfo).Level(); got != c.want {
			t.Errorf("core level %q: %v, want %v", c.passed, got, c.want)
		}
	}
}
