package direct

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/switchyard-mta/switchyard/sdk"
)

// Transport is an sdk.Transport with one Engine per configured instance,
// for plugins built on the engine: they only say how an instance table
// becomes a Config.
type Transport struct {
	Name  string // The plugin's name, for messages.
	Log   *slog.Logger
	Parse func(c *sdk.Configuration, log *slog.Logger) (*Config, error) // Problems as sdk.ConfigErrors.

	mu      sync.Mutex
	engines map[string]*Engine // By instance name.
}

var (
	_ sdk.Transport  = (*Transport)(nil)
	_ sdk.Configurer = (*Transport)(nil)
)

// Configure validates an instance table and, unless c.CheckOnly, puts it in
// force, replacing the instance's engine; the old one's idle sessions end.
func (t *Transport) Configure(ctx context.Context, c *sdk.Configuration) error {
	if c.Kind != sdk.KindTransport {
		return sdk.ConfigErrors{{Msg: t.Name + " takes configuration only as a transport"}}
	}
	cfg, err := t.Parse(c, t.Log.With(slog.String("instance", c.Instance)))
	if err != nil {
		return err
	}
	if c.CheckOnly {
		return nil
	}
	e := New(*cfg)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.engines == nil {
		t.engines = map[string]*Engine{}
	}
	if old := t.engines[c.Instance]; old != nil {
		old.Close()
	}
	t.engines[c.Instance] = e
	return nil
}

// Deliver delivers req with the engine of req.Instance.
func (t *Transport) Deliver(ctx context.Context, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	t.mu.Lock()
	e := t.engines[req.Instance]
	t.mu.Unlock()
	if e == nil {
		return nil, fmt.Errorf("%s: instance %q is not configured", t.Name, req.Instance)
	}
	return e.Deliver(ctx, req)
}
