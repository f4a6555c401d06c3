package server

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/switchyard-mta/switchyard/core/queue"
	"github.com/switchyard-mta/switchyard/core/store"
	"github.com/switchyard-mta/switchyard/sdk"
)

// suppressCodes are the enhanced codes of a refusal at RCPT that say the
// address does not exist or takes no mail (RFC 3463): bad mailbox (5.1.1),
// bad system (5.1.2), null MX (5.1.10, RFC 7505), disabled mailbox
// (5.2.1), refused (5.7.1). Sending there again only hurts the sender's
// reputation, so the address goes on the sender's suppression list.
// addressCodes are those of them that are about the address whatever the
// stage: after DATA (as LMTP replies per recipient) a 5.7.1 is more often
// about the content, and is left alone.
var (
	suppressCodes = map[string]bool{"5.1.1": true, "5.1.2": true, "5.1.10": true, "5.2.1": true, "5.7.1": true}
	addressCodes  = map[string]bool{"5.1.1": true, "5.1.2": true, "5.2.1": true}
)

// suppressible reports whether the last result l of a failed recipient
// puts it on the suppression list: a remote server refused the address at
// RCPT (or the address, at DATA), or its domain publishes a null MX. A
// refusal of the sender at MAIL, as a smarthost gives for a sender it does
// not relay for, says nothing of the recipients; nor does local delivery
// (hostname).
func suppressible(l sdk.RecipientResult, hostname string) bool {
	switch {
	case l.Status != sdk.StatusPermanent:
		return false
	case l.EnhancedCode == "5.1.10" && l.Stage == 0:
		return true // The transport found the null MX in DNS.
	case l.Code/100 != 5 || l.RemoteHost == "" || l.RemoteHost == hostname:
		return false
	case l.Stage == sdk.StageRcpt:
		return suppressCodes[l.EnhancedCode]
	case l.Stage == sdk.StageData:
		return addressCodes[l.EnhancedCode]
	}
	return false
}

// suppressFailed puts the failed recipients of n that are suppressible on
// the sending account's suppression list. Mail not sent by an account is
// left alone.
func suppressFailed(ctx context.Context, st *store.Store, hostname string, log *slog.Logger, n queue.Notice) {
	if n.Delayed || n.Account == "" {
		return
	}
	for _, r := range n.Recipients {
		l := r.Last
		if !suppressible(l, hostname) {
			continue
		}
		reason := strings.TrimSpace(fmt.Sprintf("%d %s %s", l.Code, l.EnhancedCode, l.Text))
		if l.Code == 0 {
			reason = l.EnhancedCode + " " + l.Text
		}
		if l.RemoteHost != "" {
			reason += " (" + l.RemoteHost + ")"
		}
		added, err := st.AddSuppression(ctx, n.Account, r.Address, reason, true, time.Now())
		switch {
		case err != nil:
			log.Warn("suppressing a failed recipient", slog.String("account", n.Account), slog.String("rcpt", r.Address), slog.Any("err", err))
		case added:
			log.Info("recipient suppressed", slog.String("account", n.Account), slog.String("rcpt", r.Address), slog.String("reason", reason))
		}
	}
}
