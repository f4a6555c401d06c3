package pluginhost

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// exitMessage is what go-plugin logs, with an "error" argument such as
// "exit status 3", when a plugin process ends (go-plugin client.go).
const exitMessage = "plugin process exited"

// forcedMessage is what go-plugin warns of whenever it kills a process,
// also one that never started or had already exited; the manager warns
// itself when a stop had to kill (proc.stop).
const forcedMessage = "plugin failed to exit gracefully"

// hclogAdapter is the hclog.Logger that go-plugin logs to: its own messages
// and every line a plugin writes to stderr. It writes through slog; a plugin's
// JSON lines (sdk.NewLogger) keep their level and attributes.
type hclogAdapter struct {
	log     *slog.Logger // Carries plugin=NAME.
	name    string       // Set by Named; logged as "logger".
	implied []any        // From With.
	path    string       // The executable; go-plugin's "plugin" argument, dropped when equal.
	// exited, if set, gets the status in go-plugin's exit line. Only the
	// root logger has it: go-plugin logs the exit there, and a plugin's own
	// lines go through a Named one.
	exited func(status string)
}

var _ hclog.Logger = (*hclogAdapter)(nil)

// slogLevel maps an hclog level to slog; trace is below debug.
func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	if msg == exitMessage && a.exited != nil {
		// The manager logs the exit with more context.
		a.exited(a.argString(args, "error"))
		level = hclog.Debug
	}
	if msg == forcedMessage {
		level = hclog.Debug
	}
	ctx := context.Background()
	l := slogLevel(level)
	if !a.log.Enabled(ctx, l) {
		return
	}
	a.log.LogAttrs(ctx, l, msg, a.attrs(args)...)
}

func (a *hclogAdapter) argString(args []any, key string) string {
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && k == key {
			return fmt.Sprint(args[i+1])
		}
	}
	return ""
}

// attrs turns hclog's alternating keys and values into slog attributes.
func (a *hclogAdapter) attrs(args []any) []slog.Attr {
	all := append(slices.Clip(a.implied), args...)
	attrs := make([]slog.Attr, 0, len(all)/2+1)
	if a.name != "" {
		attrs = append(attrs, slog.String("logger", a.name))
	}
	for i := 0; i < len(all); i += 2 {
		if i+1 == len(all) {
			attrs = append(attrs, slog.Any(hclog.MissingKey, all[i]))
			break
		}
		key, ok := all[i].(string)
		if !ok {
			key = fmt.Sprint(all[i])
		}
		v := all[i+1]
		switch {
		case key == "timestamp":
			continue // The plugin's time of a forwarded line; slog has its own.
		case key == "plugin" && isString(v, a.path):
			continue // plugin=NAME says it.
		}
		if f, ok := v.(hclog.Format); ok && len(f) > 0 {
			if s, ok := f[0].(string); ok {
				v = fmt.Sprintf(s, f[1:]...)
			}
		}
		attrs = append(attrs, slog.Any(key, v))
	}
	return attrs
}

func isString(v any, s string) bool {
	vs, ok := v.(string)
	return ok && vs == s
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(l hclog.Level) bool {
	return a.log.Enabled(context.Background(), slogLevel(l))
}

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return slices.Clone(a.implied) }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	c := a.derive()
	c.implied = append(slices.Clip(a.implied), args...)
	return c
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	c := a.derive()
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return c
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := a.derive()
	c.name = name
	return c
}

// derive returns a copy of a for a sub-logger.
func (a *hclogAdapter) derive() *hclogAdapter {
	c := *a
	c.exited = nil
	return &c
}

// SetLevel does nothing: the slog handler decides the level.
func (a *hclogAdapter) SetLevel(hclog.Level) {}

// GetLevel returns the lowest level the slog handler takes. go-plugin skips
// plugin lines below it.
func (a *hclogAdapter) GetLevel() hclog.Level {
	for l := hclog.Trace; l <= hclog.Error; l++ {
		if a.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return &stdWriter{a: a, opts: *opts}
}

// stdWriter logs each line written to it, as hclog's standard writer does:
// at ForceLevel, or at the level of a "[WARN] " style prefix with
// InferLevels, or else at info.
type stdWriter struct {
	a    *hclogAdapter
	opts hclog.StandardLoggerOptions
}

var levelPrefixes = []struct {
	prefix string
	level  hclog.Level
}{
	{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info},
	{"[WARN]", hclog.Warn}, {"[ERROR]", hclog.Error}, {"[ERR]", hclog.Error},
}

func (w *stdWriter) Write(p []byte) (int, error) {
	for line := range bytes.Lines(p) {
		s := strings.TrimRight(string(line), "\r\n")
		level := hclog.Info
		for _, lp := range levelPrefixes {
			if rest, ok := strings.CutPrefix(s, lp.prefix); ok {
				if w.opts.InferLevels {
					level = lp.level
				}
				if w.opts.InferLevels || w.opts.ForceLevel != hclog.NoLevel {
					s = strings.TrimSpace(rest)
				}
				break
			}
		}
		if w.opts.ForceLevel != hclog.NoLevel {
			level = w.opts.ForceLevel
		}
		w.a.Log(level, s)
	}
	return len(p), nil
}
