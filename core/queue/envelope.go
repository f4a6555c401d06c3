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
}
