package pluginhost

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/switchyard-mta/switchyard/sdk"
)

// DeliverErrorKind says why a delivery attempt through a transport failed
// as a whole, without a result per recipient.
type DeliverErrorKind int

const (
	// DeliverNoTransport: no transport of the name is configured.
	DeliverNoTransport DeliverErrorKind = iota + 1
	// DeliverUnavailable: the transport's plugin is not running (starting,
	// restarting, failed, stopped), or its process went away during the
	// call.
	DeliverUnavailable
	// DeliverFailed: the plugin answered but failed the attempt as a whole:
	// its Deliver returned an error or a malformed result, or the call ran
	// out of time.
	DeliverFailed
)

// DeliverError is the error of Manager.Deliver. Error gives the technical
// detail, for the log; RecipientText the reason for a sender, for the
// queue's recipient results and so for a DSN. errors.Is matches
// ErrNoTransport for DeliverNoTransport and ErrUnavailable for
// DeliverUnavailable.
type DeliverError struct {
	Kind      DeliverErrorKind
	Transport string // The transport's name, [transports.NAME].
	Plugin    string // The plugin serving it; empty for DeliverNoTransport.
	Err       error  // The cause; nil for DeliverNoTransport.
}

func (e *DeliverError) Error() string {
	switch e.Kind {
	case DeliverNoTransport:
		return fmt.Sprintf("%v: transport %q is not configured (named by a route, or the default when no route matches)", ErrNoTransport, e.Transport)
	case DeliverUnavailable:
		return fmt.Sprintf("%v: transport %s: %v", ErrUnavailable, e.Transport, e.Err)
	default:
		return fmt.Sprintf("pluginhost: delivery failed: transport %s: %v", e.Transport, e.Err)
	}
}

// Unwrap returns the cause.
func (e *DeliverError) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel error of e's kind.
func (e *DeliverError) Is(target error) bool {
	switch e.Kind {
	case DeliverNoTransport:
		return target == ErrNoTransport
	case DeliverUnavailable:
		return target == ErrUnavailable
	}
	return false
}

// RecipientText returns the reason of the failure as a sender should read
// it: every recipient of the attempt fails temporarily with it.
func (e *DeliverError) RecipientText() string {
	switch e.Kind {
	case DeliverNoTransport:
		// The name tells the operator (mta queue list) what to configure.
		return fmt.Sprintf("no route for this destination is configured on the server (transport %q); delivery will be retried", e.Transport)
	case DeliverUnavailable:
		return "the outgoing mail service is temporarily unavailable; delivery will be retried"
	default:
		return "delivery failed temporarily at the sending server; it will be retried"
	}
}

// Deliver makes a delivery attempt through the transport configured as
// [transports.NAME], setting req.Instance. It implements the queue's
// Deliverer. Its errors are *DeliverError: an unknown transport is
// DeliverNoTransport (ErrNoTransport); a plugin that is down, or whose
// process went away during the call, DeliverUnavailable (ErrUnavailable);
// a plugin that failed the attempt as a whole (its Deliver returned an
// error or a malformed result) or a call past its deadline, DeliverFailed.
// The call ends with ctx or after Options.DeliverTimeout, whichever is
// first.
func (m *Manager) Deliver(ctx context.Context, transport string, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	p := m.transports[transport]
	if p == nil {
		return nil, &DeliverError{Kind: DeliverNoTransport, Transport: transport}
	}
	r := p.current()
	if r == nil {
		return nil, &DeliverError{Kind: DeliverUnavailable, Transport: transport, Plugin: p.name,
			Err: fmt.Errorf("plugin %s %s", p.name, p.currentState())}
	}
	ctx, cancel := context.WithTimeout(ctx, m.deliverTimeout)
	defer cancel()
	req.Instance = transport
	res, err := r.transport.Deliver(ctx, req)
	if err != nil {
		// Unavailable is the connection breaking: the plugin died. A
		// plugin's own error comes as another code (sdk: Unknown).
		kind := DeliverFailed
		if status.Code(err) == codes.Unavailable || r.proc.gp.Exited() {
			kind = DeliverUnavailable
		}
		return nil, &DeliverError{Kind: kind, Transport: transport, Plugin: p.name, Err: fmt.Errorf("plugin %s: %w", p.name, err)}
	}
	return res, nil
}
