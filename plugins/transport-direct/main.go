// Command transport-direct is a Switchyard transport plugin that delivers
// messages straight to the MX hosts of each recipient domain (RFC 5321 §5.1)
// with the engine of sdk/direct: DNSSEC-aware lookups, DANE (RFC 7672),
// MTA-STS (RFC 8461) with policies cached in the plugin's data directory,
// opportunistic STARTTLS otherwise (RFC 3207, RFC 7435), and REQUIRETLS
// (RFC 8689).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/direct"
)

func main() {
	t := newTransport(sdk.NewLogger(slog.LevelInfo))
	sdk.Serve(&sdk.Plugin{Name: "transport-direct", Version: "0.1.0", Transport: t})
}

// transport delivers for each configured instance with its engine.
type transport struct {
	log *slog.Logger

	mu      sync.Mutex
	engines map[string]*direct.Engine // By instance name.
}

var (
	_ sdk.Transport  = (*transport)(nil)
	_ sdk.Configurer = (*transport)(nil)
)

func newTransport(log *slog.Logger) *transport {
	return &transport{log: log, engines: map[string]*direct.Engine{}}
}

// Configure validates an instance table and, unless c.CheckOnly, puts it in
// force.
func (t *transport) Configure(ctx context.Context, c *sdk.Configuration) error {
	if c.Kind != sdk.KindTransport {
		return sdk.ConfigErrors{{Msg: "transport-direct takes configuration only as a transport"}}
	}
	cfg, err := parseConfig(c, t.log.With(slog.String("instance", c.Instance)))
	if err != nil {
		return err
	}
	if c.CheckOnly {
		return nil
	}
	e := direct.New(*cfg)
	t.mu.Lock()
	t.engines[c.Instance] = e
	t.mu.Unlock()
	return nil
}

// parseConfig decodes and validates the instance table of c (the keys of
// direct.Options) into an engine configuration.
func parseConfig(c *sdk.Configuration, log *slog.Logger) (*direct.Config, error) {
	var o direct.Options
	if err := c.Decode(&o); err != nil {
		return nil, err
	}
	cfg, errs := o.Config(c, nil, log)
	if errs != nil {
		return nil, errs
	}
	return cfg, nil
}

// Deliver delivers req with the engine of req.Instance.
func (t *transport) Deliver(ctx context.Context, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	t.mu.Lock()
	e := t.engines[req.Instance]
	t.mu.Unlock()
	if e == nil {
		return nil, fmt.Errorf("transport-direct: instance %q is not configured", req.Instance)
	}
	return e.Deliver(ctx, req)
}
