package queue

import "github.com/switchyard-mta/switchyard/sdk"

// Envelope is what a listener hands the queue with a message.
type Envelope struct {
	Account    string // Authenticated sender account; empty for relay_networks clients.
	From       string // MAIL FROM; empty for the null reverse-path.
	Recipients []sdk.Recipient
	Options    sdk.DeliverOptions
}
