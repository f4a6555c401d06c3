package server

import (
	"context"
	"errors"
	"log/slog"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/guard"
	"github.com/switchyard-mta/switchyard/core/store"
	"github.com/switchyard-mta/switchyard/sdk"
)

// host answers plugins' callbacks (sdk.Host) from the configuration and the
// credential store. A panic in a callback fails that call, not the server:
// plugins are processes of their own, the core's callbacks run in the core.
type host struct {
	cfg   *config.Config
	store *store.Store
	log   *slog.Logger
}

func (h *host) Secret(ctx context.Context, username, mechanism string) (_ *sdk.Credential, err error) {
	defer guard.Recover(h.log, "plugin callback Secret", &err)
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
func (h *host) TLSPublicKey(ctx context.Context, spki []byte) (_ *sdk.Credential, err error) {
	defer guard.Recover(h.log, "plugin callback TLSPublicKey", &err)
	return nil, sdk.ErrNotFound
}
