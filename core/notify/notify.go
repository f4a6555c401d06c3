// Package notify is the queue's DSN policy: it turns the queue's notices of
// failed and delayed recipients into delivery status notifications (RFC
// 3464, composed by core/dsn) and queues them from the null reverse-path
// to the sender (RFC 3461 §6.2, RFC 5321 §4.5.5). A local sender gets the
// DSN in the Inbox through the local transport, a remote one by its route.
//
// A DSN is never lost to a failure here: if the original cannot be read,
// the DSN goes without it; if the DSN cannot be queued (a full disk),
// Notify returns the error and the queue keeps the notice due, to call
// Notify again later (see queue.Options.Notify).
package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/switchyard-mta/switchyard/core/dsn"
	"github.com/switchyard-mta/switchyard/core/queue"
	"github.com/switchyard-mta/switchyard/sdk"
)

// Notifier queues DSNs for the queue's notices; its Notify is
// queue.Options.Notify.
type Notifier struct {
	Hostname string              // Our hostname: the Reporting-MTA.
	From     string              // The DSN's From address, the postmaster's; empty: postmaster@Hostname.
	Queue    func() *queue.Queue // Where DSNs are queued: the queue that calls Notify, set once it is open.
	Log      *slog.Logger        // Nil: discard.
}

// Notify composes the DSN of n and queues it. It returns nil once the DSN
// is queued, or if there is nothing to send (the null reverse-path, NOTIFY
// excluding every recipient, or a DSN that cannot be composed even without
// the original, which is logged as an error); an error if queueing failed,
// for the queue to call Notify again later.
func (nt *Notifier) Notify(ctx context.Context, n queue.Notice) error {
	log := nt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With(slog.String("queueid", n.QueueID), slog.Bool("delayed", n.Delayed))
	if n.From == "" {
		return nil // Never a DSN about a DSN (RFC 3461 §6.1, RFC 5321 §4.5.5).
	}
	q := nt.Queue()
	kind := dsn.Failure
	if n.Delayed {
		kind = dsn.Delay
	}
	rcpts := make([]dsn.Recipient, len(n.Recipients))
	for i, r := range n.Recipients {
		rcpts[i] = dsn.Recipient{Recipient: r.Recipient, Result: r.Last, LastAttempt: r.LastAttempt}
		if n.Delayed {
			rcpts[i].WillRetryUntil = q.RetryUntil(r) // RFC 3464 §2.3.8
		}
	}
	no := dsn.Notification{
		Kind:         kind,
		ReportingMTA: nt.Hostname,
		From:         nt.From,
		To:           n.From,
		EnvelopeID:   n.Options.EnvelopeID,
		Arrival:      n.Queued,
		Recipients:   rcpts,
		Return:       n.Options.DSNReturn,
	}
	if n.Message != nil { // Not a nil *io.SectionReader in an io.Reader.
		no.Original = n.Message
	}
	msg, err := dsn.Compose(no)
	if err != nil && no.Original != nil && !errors.Is(err, dsn.ErrNothingToReport) && !errors.Is(err, dsn.ErrNullSender) {
		// The original could not be read: the DSN still identifies it.
		log.Warn("composing DSN with the original, composing it without", slog.Any("err", err))
		no.Original = nil
		msg, err = dsn.Compose(no)
	}
	switch {
	case errors.Is(err, dsn.ErrNothingToReport) || errors.Is(err, dsn.ErrNullSender):
		return nil
	case err != nil:
		// Composing again would fail again: the DSN is given up.
		log.Error("composing DSN, giving up", slog.String("to", n.From), slog.Any("err", err))
		return nil
	}
	sp := q.NewSpool()
	if _, err := sp.Write(msg); err != nil {
		sp.Discard()
		return fmt.Errorf("spooling DSN: %w", err)
	}
	env := queue.Envelope{Recipients: []sdk.Recipient{{Address: n.From}}, Options: sdk.DeliverOptions{SMTPUTF8: !isASCII(n.From)}, NoticeKey: n.Key}
	id, err := q.Add(ctx, env, sp)
	if err != nil {
		return fmt.Errorf("queueing DSN: %w", err)
	}
	log.Info("DSN queued", slog.String("to", n.From), slog.String("dsnid", id), slog.Int("recipients", len(rcpts)))
	return nil
}

func isASCII(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r >= 0x80 }) < 0
}
