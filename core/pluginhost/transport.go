package pluginhost

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/switchyard-mta/switchyard/sdk"
)

// Deliver makes a delivery attempt through the transport configured as
// [transports.NAME], setting req.Instance. It implements the queue's
// Deliverer: an unknown transport is ErrNoTransport; a plugin that is down,
// and a delivery the plugin could not make at all, are errors wrapping
// ErrUnavailable. The call
// ends with ctx or after Options.DeliverTimeout, whichever is first.
func (m *Manager) Deliver(ctx context.Context, transport string, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	p := m.transports[transport]
	if p == nil {
		return nil, fmt.Errorf("%w: transport %q is not configured (named by a route, or the default when no route matches)", ErrNoTransport, transport)
	}
	r := p.current()
	if r == nil {
		return nil, fmt.Errorf("%w: transport %s: plugin %s %s", ErrUnavailable, transport, p.name, p.currentState())
	}
	ctx, cancel := context.WithTimeout(ctx, m.deliverTimeout)
	defer cancel()
	req.Instance = transport
	res, err := r.transport.Deliver(ctx, req)
	if err != nil {
		// Unavailable: the connection broke (the plugin died) or the
		// transport failed the attempt as a whole.
		if status.Code(err) == codes.Unavailable || r.proc.gp.Exited() {
			return nil, fmt.Errorf("%w: transport %s (plugin %s): %w", ErrUnavailable, transport, p.name, err)
		}
		return nil, fmt.Errorf("transport %s (plugin %s): %w", transport, p.name, err)
	}
	return res, nil
}

// Transport returns the transport configured as [transports.NAME]: Deliver
// of the Manager with the name bound.
func (m *Manager) Transport(name string) (sdk.Transport, bool) {
	if m.transports[name] == nil {
		return nil, false
	}
	return &transport{m: m, name: name}, true
}

type transport struct {
	m    *Manager
	name string
}

func (t *transport) Deliver(ctx context.Context, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	return t.m.Deliver(ctx, t.name, req)
}
