package localdelivery

import (
	"context"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/queue"
	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// Router returns the queue's Router: recipients at local domains go to the
// local transport, whatever the routes say; the rest by routes.
func Router(cfg *config.Config, routes queue.Router) queue.Router {
	return router{cfg: cfg, routes: routes}
}

type router struct {
	cfg    *config.Config
	routes queue.Router
}

func (r router) Route(account string, from, to mailaddr.Domain, attempts int) string {
	if r.cfg.IsLocalDomain(to) {
		return config.LocalTransport
	}
	return r.routes.Route(account, from, to, attempts)
}

// Deliverer returns the queue's Deliverer: the local transport through l,
// the others through plugins.
func (l *Local) Deliverer(plugins queue.Deliverer) queue.Deliverer {
	return deliverer{local: l, plugins: plugins}
}

type deliverer struct {
	local   *Local
	plugins queue.Deliverer
}

func (d deliverer) Deliver(ctx context.Context, transport string, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	if transport == config.LocalTransport {
		return d.local.Deliver(ctx, req)
	}
	return d.plugins.Deliver(ctx, transport, req)
}
