package sdk

import (
	"context"
	"io"
)

// A policy check decides what is allowed in, and how a message is marked.
// A listener of mta.toml names its checks in order (policies = ["a", "b"]),
// each an instance [policies.NAME] of a plugin that serves a Checker. At
// each stage of an SMTP transaction, the core asks the checks that declared
// the stage (PolicyInfo.Stages), in order, one RPC each: a check that
// declares no stage costs nothing. The first verdict other than
// ActionContinue decides the stage, and later checks are not asked at it.
//
// A check that fails (an error, a crash of its plugin, no answer within the
// instance's timeout, default 10 s) gets its instance's on_error: "tempfail"
// (451 4.7.1, the default) or "accept" (as ActionContinue).

// Stage is the SMTP stage a policy check runs at.
type Stage int

const (
	// StageConnect: the client connected; CheckRequest.Conn is known. It
	// runs once per connection, when the client first greets (the TLS
	// handshake of implicit TLS is done then); a reject or tempfail
	// answers that EHLO or HELO, and the connection closes.
	StageConnect Stage = iota + 1
	// StageHelo: the client sent EHLO or HELO (CheckRequest.Helo). A
	// reject or tempfail answers it; the client may greet again.
	StageHelo
	// StageMail: MAIL FROM (CheckRequest.From, "" for the null
	// reverse-path). A reject or tempfail refuses the transaction.
	StageMail
	// StageRcpt: each RCPT TO; the last of CheckRequest.Recipients is the
	// one checked. A reject or tempfail refuses that recipient only.
	StageRcpt
	// StageData: the message has arrived (CheckRequest.Message), before the
	// reply to its end. A reject or tempfail refuses the message for every
	// recipient.
	StageData
)

func (s Stage) String() string {
	switch s {
	case StageConnect:
		return "connect"
	case StageHelo:
		return "helo"
	case StageMail:
		return "mail"
	case StageRcpt:
		return "rcpt"
	case StageData:
		return "data"
	}
	return "unknown"
}

// BodyNeed says how much of the message a checker reads at the data stage.
type BodyNeed int

const (
	BodyNone    BodyNeed = iota // No message: the envelope only.
	BodyHeaders                 // The header section, up to and including the empty line.
	BodyFull                    // The whole message.
)

// PolicyInfo is what a policy plugin asks for, in its Plugin description.
type PolicyInfo struct {
	Stages []Stage
	Body   BodyNeed // For StageData.
}

// Checker decides on an SMTP transaction at the stages it declared. Check
// is called concurrently for many sessions. An error is a failure of the
// check, not a verdict: the instance's on_error applies.
type Checker interface {
	Check(ctx context.Context, req *CheckRequest) (Verdict, error)
}

// CheckRequest is the transaction so far.
type CheckRequest struct {
	Instance   string // The [policies.NAME] asked.
	Stage      Stage
	Conn       ConnInfo // Protocol "smtp"; Listener is the listener's name.
	Submission bool     // Authenticated submission rather than inbound MX.
	Account    string   // Authenticated account, if any.
	Helo       string   // From StageHelo on.
	From       string   // From StageMail on; "" is the null reverse-path.
	Recipients []string // So far; at StageRcpt the last one is checked.
	Size       int64    // At StageData: the message's size in bytes.
	// Message, at StageData only, is the message as the client sent it:
	// lines end in CRLF, dots are unstuffed, and no header of this server
	// is added yet (the Received field comes after the checks). It holds
	// the header section or the whole message, as PolicyInfo.Body asks.
	// Read it in Check or not at all; it is streamed once, in large parts.
	Message io.Reader
}

// Action is what a verdict does.
type Action int

const (
	// ActionContinue has no opinion: the next check runs.
	ActionContinue Action = iota
	// ActionAccept accepts: later checks at this stage are skipped (those
	// of later stages still run).
	ActionAccept
	// ActionReject refuses with a permanent reply: Code (5xx; default
	// 550), EnhancedCode (default 5.7.1) and Text.
	ActionReject
	// ActionTempfail refuses with a temporary reply: Code (4xx; default
	// 451), EnhancedCode (default 4.7.1) and Text. The client may retry.
	ActionTempfail
	// ActionDiscard accepts (250) and drops the message, which is logged.
	// At any stage it marks the transaction: its message is dropped when
	// it comes, for every recipient.
	ActionDiscard
	// ActionQuarantine accepts and delivers local recipients' copies to
	// their Junk mailbox; remote recipients' copies get the header field
	// X-Switchyard-Quarantine: with Text as its value. At any stage it
	// marks the whole transaction.
	ActionQuarantine
)

func (a Action) String() string {
	switch a {
	case ActionContinue:
		return "continue"
	case ActionAccept:
		return "accept"
	case ActionReject:
		return "reject"
	case ActionTempfail:
		return "tempfail"
	case ActionDiscard:
		return "discard"
	case ActionQuarantine:
		return "quarantine"
	}
	return "unknown"
}

// Verdict is the decision of a check.
type Verdict struct {
	Action       Action
	Code         int    // Reply code for reject and tempfail; 0: 550 or 451.
	EnhancedCode string // e.g. "5.7.1"; its class must match Code's.
	Text         string // The reply text; for quarantine, the reason.
	// PrependHeaders are complete header fields, each ending in CRLF, such
	// as Authentication-Results or DKIM-Signature. The headers of every
	// check at every stage, whatever its action, are collected in check
	// order and added above the server's Received field, the first on top.
	PrependHeaders []string
	// DeleteHeaders are header fields of the message as it arrived to
	// remove, at StageData only: as RFC 8601 §5 has a verifier remove
	// Authentication-Results fields that claim to be its own.
	DeleteHeaders []HeaderRef
}

// HeaderRef names a header field of a message: the Index-th field (from 1,
// counted from the top) whose name is Name. The core counts the lines of
// the header section that start a field (not with a space or tab) and
// have a colon; a field's name is what precedes the colon, less trailing
// spaces and tabs, compared after strings.ToLower.
type HeaderRef struct {
	Name  string
	Index int
}
