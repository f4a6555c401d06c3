package server

import (
	"context"
	"errors"
	"io"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/queue"
	"github.com/switchyard-mta/switchyard/core/store"
	"github.com/switchyard-mta/switchyard/sdk"
)

// local delivers to local accounts' Inboxes: for the SMTP listeners before
// they answer (smtpd.Local), and as the queue's local transport for retries
// and DSNs to local senders.
type local struct {
	cfg   *config.Config
	store *store.Store
}

// DeliverLocal implements smtpd.Local.
func (l *local) DeliverLocal(ctx context.Context, accounts []string, msg io.Reader) []error {
	errs := make([]error, len(accounts))
	in, err := l.store.NewIncoming(msg)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	defer in.Close()
	for i, name := range accounts {
		acc, err := l.store.Account(name)
		if err == nil {
			_, err = acc.Deliver(ctx, store.Inbox, in, store.DeliverOptions{})
		}
		errs[i] = err
	}
	return errs
}

// OverQuota implements smtpd.Local.
func (l *local) OverQuota(ctx context.Context, account string, size int64) bool {
	acc, err := l.store.Account(account)
	if err != nil {
		return false // Delivery will say what is wrong.
	}
	used, limit, err := acc.Quota(ctx)
	return err == nil && limit > 0 && (used >= limit || used+size > limit)
}

// Deliver is the local transport: per recipient, delivered, permanently
// failed for an unknown address, or temporarily failed.
func (l *local) Deliver(ctx context.Context, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	res := &sdk.DeliverResult{Recipients: make([]sdk.RecipientResult, len(req.Recipients))}
	var accounts []string
	rcptsOf := map[string][]int{}
	for i, r := range req.Recipients {
		res.Recipients[i] = sdk.RecipientResult{Address: r.Address, RemoteHost: l.cfg.Hostname}
		acc, ok := l.cfg.AccountByAddress(r.Address)
		if !ok {
			res.Recipients[i].Status = sdk.StatusPermanent
			res.Recipients[i].Code, res.Recipients[i].EnhancedCode, res.Recipients[i].Text = 550, "5.1.1", "no such user here"
			continue
		}
		if _, seen := rcptsOf[acc]; !seen {
			accounts = append(accounts, acc)
		}
		rcptsOf[acc] = append(rcptsOf[acc], i)
	}
	if len(accounts) == 0 {
		return res, nil
	}
	for i, err := range l.DeliverLocal(ctx, accounts, req.Message) {
		rr := sdk.RecipientResult{Status: sdk.StatusDelivered, Code: 250, EnhancedCode: "2.0.0", Text: "delivered to " + accounts[i]}
		switch {
		case errors.Is(err, store.ErrQuota):
			rr = sdk.RecipientResult{Status: sdk.StatusTemporary, Code: 452, EnhancedCode: "4.2.2", Text: "mailbox full"}
		case err != nil:
			rr = sdk.RecipientResult{Status: sdk.StatusTemporary, Code: 451, EnhancedCode: "4.3.0", Text: err.Error()}
		}
		for _, k := range rcptsOf[accounts[i]] {
			rr.Address, rr.RemoteHost = req.Recipients[k].Address, l.cfg.Hostname
			res.Recipients[k] = rr
		}
	}
	return res, nil
}

// router sends recipients at local domains to the local transport and the
// rest by the configured routes.
type router struct {
	cfg    *config.Config
	routes queue.Router
}

func (r router) Route(account, from, toDomain string, attempts int) string {
	if r.cfg.IsLocalDomain(toDomain) {
		return config.LocalTransport
	}
	return r.routes.Route(account, from, toDomain, attempts)
}

// deliverer delivers through the local transport or a transport plugin.
type deliverer struct {
	local   *local
	plugins queue.Deliverer
}

func (d deliverer) Deliver(ctx context.Context, transport string, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	if transport == config.LocalTransport {
		return d.local.Deliver(ctx, req)
	}
	return d.plugins.Deliver(ctx, transport, req)
}
