package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/switchyard-mta/switchyard/core/queue"
	"github.com/switchyard-mta/switchyard/core/store"
)

// suppressCodes are the enhanced codes of a permanent failure that say
// the address does not exist or takes no mail (RFC 3463): bad mailbox
// (5.1.1), bad system (5.1.2), null MX (5.1.10, RFC 7505), disabled
// mailbox (5.2.1), refused (5.7.1). Sending there again only hurts the
// sender's reputation, so the address goes on the sender's suppression
// list.
var suppressCodes = map[string]bool{"5.1.1": true, "5.1.2": true, "5.1.10": true, "5.2.1": true, "5.7.1": true}

// suppressFailed puts the failed recipients of n whose remote server said
// so (suppressCodes) on the sending account's suppression list. Failures
// of local delivery, and mail not sent by an account, are left alone.
func suppressFailed(ctx context.Context, st *store.Store, hostname string, log *slog.Logger, n queue.Notice) {
	if n.Delayed || n.Account == "" {
		return
	}
	for _, r := range n.Recipients {
		l := r.Last
		if l.Code/100 != 5 || !suppressCodes[l.EnhancedCode] || l.RemoteHost == "" || l.RemoteHost == hostname {
			continue
		}
		reason := fmt.Sprintf("%d %s %s (%s)", l.Code, l.EnhancedCode, l.Text, l.RemoteHost)
		added, err := st.AddSuppression(ctx, n.Account, r.Address, reason, true, time.Now())
		switch {
		case err != nil:
			log.Warn("suppressing a failed recipient", slog.String("account", n.Account), slog.String("rcpt", r.Address), slog.Any("err", err))
		case added:
			log.Info("recipient suppressed", slog.String("account", n.Account), slog.String("rcpt", r.Address), slog.String("reason", reason))
		}
	}
}
