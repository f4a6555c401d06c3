package server

import (
	"context"
	"errors"
	"strings"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/route"
	"github.com/switchyard-mta/switchyard/core/store"
	"github.com/switchyard-mta/switchyard/sdk"
)

// router picks transports from the configured routes (core/route).
type router struct{ cfg *config.Config }

// Route tries the sender account's routes, then those of the sender's
// domain (the domain of MAIL FROM when local, else the account's), then the
// global ones.
func (r router) Route(account, from, toDomain string, attempts int) string {
	var accountRoutes, domainRoutes []config.Route
	fromDomain := ""
	if i := strings.LastIndexByte(from, '@'); i >= 0 {
		fromDomain = strings.ToLower(from[i+1:])
	}
	if a := r.cfg.Accounts[account]; a != nil {
		accountRoutes = a.Routes
	}
	if d := r.cfg.Domains[fromDomain]; d != nil {
		domainRoutes = d.Routes
	} else if a := r.cfg.Accounts[account]; a != nil {
		if d := r.cfg.Domains[a.Domain]; d != nil {
			domainRoutes = d.Routes
		}
	}
	return route.Select(accountRoutes, domainRoutes, r.cfg.Routes, fromDomain, toDomain, attempts)
}

// host answers plugins' callbacks (sdk.Host) from the configuration and the
// credential store.
type host struct {
	cfg   *config.Config
	store *store.Store
}

func (h *host) Secret(ctx context.Context, username, mechanism string) (*sdk.Credential, error) {
	account, ok := h.cfg.AccountByLogin(username)
	if !ok {
		return nil, sdk.ErrNotFound
	}
	secret, err := h.store.Secret(ctx, account, mechanism)
	if errors.Is(err, store.ErrNotFound) {
		return nil, sdk.ErrNotFound
	} else if err != nil {
		return nil, err
	}
	return &sdk.Credential{Account: account, Login: username, Secret: secret}, nil
}

// TLSPublicKey finds nothing yet: client certificate login comes with the
// auth-tlsclient plugin.
func (h *host) TLSPublicKey(ctx context.Context, spki []byte) (*sdk.Credential, error) {
	return nil, sdk.ErrNotFound
}
