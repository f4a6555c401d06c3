package pluginhost

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHclogAdapter(t *testing.T) {
	tests := []struct {
		name string
		log  func(l hclog.Logger)
		want []string // msg and attributes of each record, "msg k=v ...", level first.
	}{
		{"levels", func(l hclog.Logger) {
			l.Trace("t")
			l.Debug("d")
			l.Info("i", "k", 1)
			l.Warn("w")
			l.Error("e", "err", fmt.Errorf("boom"))
			l.Log(hclog.NoLevel, "n")
			l.Log(hclog.Off, "off")
		}, []string{"DEBUG-4 t plugin=p", "DEBUG d plugin=p", "INFO i plugin=p k=1", "WARN w plugin=p", "ERROR e plugin=p err=boom", "INFO n plugin=p"}},
		{"named and with", func(l hclog.Logger) {
			n := l.Named("a").Named("b").With("k", "v")
			n.Info("m", "j", 2)
			n.ResetNamed("c").Info("m")
			if got := fmt.Sprint(n.ImpliedArgs()); got != "[k v]" {
				t.Errorf("implied args %s", got)
			}
			if n.Name() != "a.b" {
				t.Errorf("name %q", n.Name())
			}
		}, []string{"INFO m plugin=p logger=a.b k=v j=2", "INFO m plugin=p logger=c k=v"}},
		{"odd, format, dropped", func(l hclog.Logger) {
			l.Info("m", "plugin", "/bin/echo", "timestamp", "0001-01-01T00:00:00.000Z", "f", hclog.Fmt("%d-%s", 1, "x"), "odd")
		}, []string{"INFO m plugin=p f=1-x EXTRA_VALUE_AT_END=odd"}},
		{"standard writer", func(l hclog.Logger) {
			fmt.Fprint(l.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true}), "[WARN] w\n[ERR] e\nplain\n")
			l.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Error}).Print("[INFO] forced")
			fmt.Fprint(l.StandardWriter(nil), "[DEBUG] kept\n")
		}, []string{"WARN w plugin=p", "ERROR e plugin=p", "INFO plain plugin=p", "ERROR forced plugin=p", "INFO [DEBUG] kept plugin=p"}},
		{"exit", func(l hclog.Logger) {
			l.Named("x").Error(exitMessage, "error", "not the root logger")
			l.Error(exitMessage, "plugin", "/bin/echo", "id", "12", "error", "exit status 3")
		}, []string{"ERROR plugin process exited plugin=p logger=x error=not the root logger", "DEBUG plugin process exited plugin=p id=12 error=exit status 3", "exited exit status 3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var lines, got []string
			h := &recordHandler{level: slog.LevelDebug - 4, lines: &lines}
			a := &hclogAdapter{log: slog.New(h).With("plugin", "p"), path: "/bin/echo", exited: func(s string) { got = append(got, "exited "+s) }}
			tc.log(a)
			got = append(lines, got...)
			if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tc.want) {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestHclogAdapterLevel(t *testing.T) {
	for _, tc := range []struct {
		level slog.Level
		want  hclog.Level
	}{
		{slog.LevelDebug - 4, hclog.Trace},
		{slog.LevelDebug, hclog.Debug},
		{slog.LevelInfo, hclog.Info},
		{slog.LevelError, hclog.Error},
		{slog.LevelError + 1, hclog.Off},
	} {
		a := &hclogAdapter{log: slog.New(&recordHandler{level: tc.level, lines: new([]string)})}
		if got := a.GetLevel(); got != tc.want {
			t.Errorf("handler level %v: GetLevel %v, want %v", tc.level, got, tc.want)
		}
		if a.IsDebug() != (tc.want <= hclog.Debug) || a.IsWarn() != (tc.want <= hclog.Warn) {
			t.Errorf("handler level %v: IsDebug %v, IsWarn %v", tc.level, a.IsDebug(), a.IsWarn())
		}
	}
}

// recordHandler records "LEVEL msg k=v ..." lines.
type recordHandler struct {
	level slog.Level
	attrs []slog.Attr
	lines *[]string
}

func (h *recordHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	s := r.Level.String() + " " + r.Message
	for _, a := range h.attrs {
		s += " " + a.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		s += " " + a.String()
		return true
	})
	*h.lines = append(*h.lines, s)
	return nil
}

func (h *recordHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(c.attrs[:len(c.attrs):len(c.attrs)], attrs...)
	return &c
}

func (h *recordHandler) WithGroup(string) slog.Handler { return h }
