package sdk

import (
	"context"
	"io"
)

// Transport delivers a message to the recipients of one destination.
//
// The core, not the transport, decides retries, DSNs and queue state: a
// transport reports what happened to each recipient and nothing else.
type Transport interface {
	// Deliver makes one delivery attempt. The returned result has one entry
	// per request recipient, in order. An error means the attempt failed as
	// a whole and temporarily (e.g. the plugin is down); every recipient is
	// then retried later.
	Deliver(ctx context.Context, req *DeliverRequest) (*DeliverResult, error)
}

// DeliverRequest is one delivery attempt of one message.
type DeliverRequest struct {
	Instance   string // Transport name in mta.toml, e.g. "smarthost".
	QueueID    string
	Attempt    int    // 1 for the first attempt.
	From       string // MAIL FROM; empty for the null reverse-path.
	Recipients []Recipient
	Options    DeliverOptions
	Size       int64     // Message size in bytes.
	Message    io.Reader // The message, headers and body, CRLF line endings.
}

// Recipient is an envelope recipient with its DSN parameters.
type Recipient struct {
	Address string
	Notify  []string // DSN NOTIFY (RFC 3461 §4.1): NEVER, SUCCESS, FAILURE, DELAY.
	ORcpt   string   // DSN ORCPT (RFC 3461 §4.2), e.g. "rfc822;a@example.org".
}

// DeliverOptions are the ESMTP parameters of the message.
type DeliverOptions struct {
	SMTPUTF8   bool   // RFC 6531
	Body       string // BODY= of RFC 6152/3030: "7BIT", "8BITMIME", "BINARYMIME"; empty if not given.
	RequireTLS bool   // RFC 8689; zero: not requested.
	EnvelopeID string // DSN ENVID (RFC 3461 §4.4); empty if not given.
	DSNReturn  string // DSN RET (RFC 3461 §4.3): "FULL", "HDRS" or empty.
}

// Status is the outcome of a delivery for one recipient.
type Status int

const (
	StatusTemporary Status = iota // Try again later. The zero value: nothing is lost by mistake.
	StatusDelivered
	StatusPermanent // Give up; the core sends a DSN.
)

func (s Status) String() string {
	switch s {
	case StatusDelivered:
		return "delivered"
	case StatusPermanent:
		return "permanent"
	default:
		return "temporary"
	}
}

// DeliverResult holds one RecipientResult per request recipient.
type DeliverResult struct {
	Recipients []RecipientResult
}

// RecipientResult is what happened to one recipient.
type RecipientResult struct {
	Address      string
	Status       Status
	Code         int    // SMTP reply code; 0 if the failure happened before a reply.
	EnhancedCode string // RFC 3463, e.g. "5.1.1"; empty if none.
	Text         string // Reply text, or the local reason.
	RemoteHost   string
	RemoteIP     string
	TLS          TLSUse
	// Stage is the SMTP stage whose reply decided the result: StageConnect
	// for the greeting, StageHelo for EHLO, STARTTLS and AUTH, then
	// StageMail, StageRcpt and StageData (DATA, BDAT and the end of data).
	// Zero when no reply did: a connection or DNS failure, local delivery.
	// The core puts a refused address on the sender's suppression list
	// only when the refusal came at StageRcpt (or was of the address, at
	// StageData), never for a refusal of the sender at StageMail.
	Stage Stage
}

// Verification says how the peer's TLS certificate was verified.
type Verification int

const (
	VerifyNone          Verification = iota // Plaintext.
	VerifyOpportunistic                     // TLS, certificate not verified (RFC 7435).
	VerifyPKIX                              // TLS, verified against PKIX roots.
	VerifyMTASTS                            // TLS, PKIX-verified as MTA-STS requires (RFC 8461).
	VerifyDANE                              // TLS, verified against TLSA records (RFC 7672).
)

func (v Verification) String() string {
	switch v {
	case VerifyOpportunistic:
		return "opportunistic"
	case VerifyPKIX:
		return "pkix"
	case VerifyMTASTS:
		return "mta-sts"
	case VerifyDANE:
		return "dane"
	default:
		return "none"
	}
}

// TLSUse is the TLS of a delivery.
type TLSUse struct {
	Verification Verification
	Version      string // e.g. "TLS1.3"; empty without TLS.
	Cipher       string
}

// ResultAll returns a result with the same outcome for every recipient of req,
// for failures that happen before any recipient is addressed.
func ResultAll(req *DeliverRequest, status Status, code int, enhanced, text string) *DeliverResult {
	res := &DeliverResult{Recipients: make([]RecipientResult, len(req.Recipients))}
	for i, r := range req.Recipients {
		res.Recipients[i] = RecipientResult{Address: r.Address, Status: status, Code: code, EnhancedCode: enhanced, Text: text}
	}
	return res
}
