package sdk

import (
	"context"
	"io"
)

// Stage is the SMTP stage a policy check runs at.
type Stage int

const (
	StageConnect Stage = iota + 1
	StageHelo
	StageMail
	StageRcpt
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
	BodyNone BodyNeed = iota
	BodyHeaders
	BodyFull
)

// PolicyInfo is what a policy plugin asks for.
type PolicyInfo struct {
	Stages []Stage
	Body   BodyNeed
}

// Checker decides on an SMTP transaction at the stages it declared.
type Checker interface {
	Check(ctx context.Context, req *CheckRequest) (Verdict, error)
}

// CheckRequest is the transaction so far.
type CheckRequest struct {
	Instance   string
	Stage      Stage
	Conn       ConnInfo
	Submission bool   // Authenticated submission rather than inbound MX.
	Account    string // Authenticated account, if any.
	Helo       string
	From       string
	Recipients []string // So far; at StageRcpt the last one is checked.
	Size       int64
	Message    io.Reader // At StageData: headers or the whole message, as asked; else nil.
}

// Action is what a verdict does.
type Action int

const (
	ActionContinue   Action = iota // No opinion; the next check runs.
	ActionAccept                   // Accept; later checks at this stage are skipped.
	ActionReject                   // 5xx
	ActionTempfail                 // 4xx
	ActionDiscard                  // Accept and drop.
	ActionQuarantine               // Accept and deliver to Junk.
)

// Verdict is the decision of a check.
type Verdict struct {
	Action         Action
	Code           int    // Reply code for reject and tempfail; 0: 550 or 451.
	EnhancedCode   string // e.g. "5.7.1".
	Text           string
	PrependHeaders []string // Complete header fields, CRLF-terminated.
}
