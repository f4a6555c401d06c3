package queue

import (
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
)

// Envelope is what a listener hands the queue with a message.
type Envelope struct {
	Account    string // Authenticated sender account; empty for relay_networks clients.
	From       string // MAIL FROM; empty for the null reverse-path.
	Recipients []sdk.Recipient
	Options    sdk.DeliverOptions
	// ReleaseAt, if after the time of Add, is when the first delivery
	// attempt is due: a future release (RFC 4865 HOLDFOR, HOLDUNTIL).
	ReleaseAt time.Time
	// NoticeKey, for a notice (a DSN), is Notice.Key: while the message it
	// is about is queued, Add of a notice with the same key adds nothing
	// and returns the ID the first got. A notice made again, after a crash
	// cut short the recording that it was made, is then not sent twice.
	NoticeKey string
}
