// Command echoplugin is the transport plugin of the pluginhost tests. It
// imports only sdk/, as a third-party plugin would.
//
// Transport keys: fail_domain (recipients there fail permanently), crash_on
// (a recipient that makes the process exit with status 3 mid-Deliver),
// fail_with (Deliver fails the attempt with this error), reject_key (if set, Configure rejects that key), reject_if (Configure
// fails while this file exists). Plugin key: lookup (a user name looked up
// through the host's Secret at Configure). Argument
// -no-transport makes it serve no transport. Delivered recipients are
// appended to delivered.txt in the data directory.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/switchyard-mta/switchyard/sdk"
)

type settings struct {
	FailDomain string `toml:"fail_domain"`
	CrashOn    string `toml:"crash_on"`
	RejectKey  string `toml:"reject_key"`
	Lookup     string `toml:"lookup"`
	RejectIf   string `toml:"reject_if"`
	FailWith   string `toml:"fail_with"`
}

type echo struct {
	log *slog.Logger

	mu        sync.Mutex
	dataDir   string
	instances map[string]settings
}

func (e *echo) Configure(ctx context.Context, c *sdk.Configuration) error {
	var s settings
	if err := c.Decode(&s); err != nil {
		return err
	}
	if s.RejectKey != "" {
		return sdk.ConfigErrors{{Key: "reject_key", Msg: fmt.Sprintf("rejected %q", s.RejectKey)}}
	}
	if _, err := os.Stat(s.RejectIf); s.RejectIf != "" && err == nil {
		return sdk.ConfigErrors{{Key: "reject_if", Msg: "file exists"}}
	}
	attrs := []any{slog.String("instance", c.Instance), slog.Int("kind", int(c.Kind)),
		slog.Bool("check_only", c.CheckOnly), slog.String("data_dir", c.DataDir)}
	if s.Lookup != "" && c.Host != nil {
		cred, err := c.Host.Secret(ctx, s.Lookup, "PLAIN")
		if err != nil {
			return sdk.ConfigErrors{{Key: "lookup", Msg: err.Error()}}
		}
		attrs = append(attrs, slog.String("account", cred.Account))
	}
	e.log.Info("configured", attrs...)
	if c.CheckOnly {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if c.Kind == sdk.KindPlugin {
		e.dataDir = c.DataDir
	} else {
		e.instances[c.Instance] = s
	}
	return nil
}

func (e *echo) Deliver(ctx context.Context, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	e.mu.Lock()
	s, ok := e.instances[req.Instance]
	dir := e.dataDir
	e.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("instance %q not configured", req.Instance)
	}
	if s.FailWith != "" {
		return nil, errors.New(s.FailWith)
	}
	n, err := io.Copy(io.Discard, req.Message)
	if err != nil {
		return nil, err
	}
	res := &sdk.DeliverResult{}
	var delivered []string
	for _, r := range req.Recipients {
		if r.Address == s.CrashOn {
			e.log.Error("crashing on purpose", slog.String("rcpt", r.Address))
			os.Exit(3)
		}
		rr := sdk.RecipientResult{Address: r.Address, Status: sdk.StatusDelivered, Code: 250, EnhancedCode: "2.0.0",
			Text: fmt.Sprintf("%s: %s %d bytes", req.Instance, req.QueueID, n)}
		if _, domain, _ := strings.Cut(r.Address, "@"); s.FailDomain != "" && domain == s.FailDomain {
			rr.Status, rr.Code, rr.EnhancedCode, rr.Text = sdk.StatusPermanent, 550, "5.1.1", "no such domain"
		} else {
			delivered = append(delivered, r.Address+"\n")
		}
		res.Recipients = append(res.Recipients, rr)
	}
	if dir != "" && len(delivered) > 0 {
		f, err := os.OpenFile(filepath.Join(dir, "delivered.txt"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return nil, err
		}
		_, err = f.WriteString(strings.Join(delivered, ""))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
	}
	return res, nil
}

func main() {
	// The logger must be made before sdk.Serve, which replaces os.Stderr.
	e := &echo{log: sdk.NewLogger(slog.LevelDebug), instances: map[string]settings{}}
	p := &sdk.Plugin{Name: "echo", Version: "1.0.0", Configurer: e}
	if !slices.Contains(os.Args[1:], "-no-transport") {
		p.Transport = e
	}
	sdk.Serve(p)
}
