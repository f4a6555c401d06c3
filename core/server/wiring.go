package server

import (
	"context"
	"errors"
	"log/slog"
	"slices"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/guard"
	"github.com/switchyard-mta/switchyard/core/store"
	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
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

// TLSPublicKey finds a client key in the store (mta tlspubkey). A key
// whose account or login address the configuration no longer has logs
// nothing in: the operator removed them, not the key.
func (h *host) TLSPublicKey(ctx context.Context, spkiSHA256 []byte) (_ *sdk.TLSKey, err error) {
	defer guard.Recover(h.log, "plugin callback TLSPublicKey", &err)
	k, err := h.store.TLSPublicKey(ctx, store.TLSFingerprint(spkiSHA256))
	if errors.Is(err, store.ErrNotFound) {
		return nil, sdk.ErrNotFound
	} else if err != nil {
		return nil, err
	}
	acc := h.cfg.Accounts[k.Account]
	login, lerr := mailaddr.ParseAddress(k.LoginAddress)
	if acc == nil || lerr != nil || !h.cfg.OwnsAddress(k.Account, login) {
		h.log.Warn("TLS public key names an account or address not in the configuration; not logged in",
			slog.String("fingerprint", k.Fingerprint), slog.String("account", k.Account), slog.String("login", k.LoginAddress))
		return nil, sdk.ErrNotFound
	}
	return &sdk.TLSKey{
		Account:       k.Account,
		Login:         k.LoginAddress,
		Name:          k.Name,
		Addresses:     slices.Clone(acc.Addresses),
		NoIMAPPreauth: k.NoIMAPPreauth,
	}, nil
}
