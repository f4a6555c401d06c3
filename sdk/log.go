package sdk

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
)

// LogLevelEnv names the environment variable in which the core passes its
// [log] level ("debug", "info", "warn" or "error") to the plugins it
// starts, so that they do not format lines it would drop.
const LogLevelEnv = "SWITCHYARD_LOG_LEVEL"

// NewLogger returns the logger a plugin should use. It writes JSON lines to
// stderr in the form go-plugin forwards to the core, which re-logs them with
// the plugin's name; the core adds the time. It may be called before or
// after Serve. It logs from level, or from the level the core passes in
// $SWITCHYARD_LOG_LEVEL (LogLevelEnv) where it does.
func NewLogger(level slog.Leveler) *slog.Logger {
	// File descriptor 2 itself: Serve replaces os.Stderr with a pipe whose
	// output the core discards.
	return newLogger(os.NewFile(uintptr(syscall.Stderr), "/dev/stderr"), coreLevel(os.Getenv(LogLevelEnv), level))
}

// coreLevel returns the level the core passed, if it is one, else level.
func coreLevel(passed string, level slog.Leveler) slog.Leveler {
	var l slog.Level
	if passed == "" || l.UnmarshalText([]byte(passed)) != nil {
		return level
	}
	return l
}

func newLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.Attr{}
			case slog.LevelKey:
				return slog.String("@level", strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			}
			return a
		},
	}))
}
