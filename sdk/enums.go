package sdk

import (
	"fmt"

	pb "github.com/switchyard-mta/switchyard/sdk/pluginpb"
)

// The enums of this package cross the wire through these tables, never as
// a cast: a Go constant and a protobuf value that happen to share a number
// are not the same thing, and a value one side does not know is an error,
// not a silent default. enums_test.go fails when a list here and in the
// .proto diverge.
var (
	kindWire = wireMap[Kind, pb.Kind]{
		KindTransport: pb.Kind_KIND_TRANSPORT,
		KindMechanism: pb.Kind_KIND_MECHANISM,
		KindPolicy:    pb.Kind_KIND_POLICY,
		KindPlugin:    pb.Kind_KIND_PLUGIN,
	}
	stageWire = wireMap[Stage, pb.Stage]{
		StageConnect: pb.Stage_STAGE_CONNECT,
		StageHelo:    pb.Stage_STAGE_HELO,
		StageMail:    pb.Stage_STAGE_MAIL,
		StageRcpt:    pb.Stage_STAGE_RCPT,
		StageData:    pb.Stage_STAGE_DATA,
	}
	bodyWire = wireMap[BodyNeed, pb.BodyNeed]{
		BodyNone:    pb.BodyNeed_BODY_NONE,
		BodyHeaders: pb.BodyNeed_BODY_HEADERS,
		BodyFull:    pb.BodyNeed_BODY_FULL,
	}
	actionWire = wireMap[Action, pb.Action]{
		ActionContinue:   pb.Action_ACTION_CONTINUE,
		ActionAccept:     pb.Action_ACTION_ACCEPT,
		ActionReject:     pb.Action_ACTION_REJECT,
		ActionTempfail:   pb.Action_ACTION_TEMPFAIL,
		ActionDiscard:    pb.Action_ACTION_DISCARD,
		ActionQuarantine: pb.Action_ACTION_QUARANTINE,
	}
	verificationWire = wireMap[Verification, pb.TLSUse_Verification]{
		VerifyNone:          pb.TLSUse_VERIFICATION_NONE,
		VerifyOpportunistic: pb.TLSUse_VERIFICATION_OPPORTUNISTIC,
		VerifyPKIX:          pb.TLSUse_VERIFICATION_PKIX,
		VerifyMTASTS:        pb.TLSUse_VERIFICATION_MTA_STS,
		VerifyDANE:          pb.TLSUse_VERIFICATION_DANE,
	}
	statusWire = wireMap[Status, pb.Status]{
		StatusTemporary: pb.Status_STATUS_TEMPORARY,
		StatusDelivered: pb.Status_STATUS_DELIVERED,
		StatusPermanent: pb.Status_STATUS_PERMANENT,
	}
)

// wireEnum is a generated protobuf enum.
type wireEnum interface {
	~int32
	String() string
}

// wireMap maps each value of a Go enum to its protobuf value, one to one.
type wireMap[G comparable, P wireEnum] map[G]P

// toWire returns g's protobuf value; an unknown g is an error.
func (m wireMap[G, P]) toWire(g G) (P, error) {
	p, ok := m[g]
	if !ok {
		return 0, fmt.Errorf("%T %v has no wire value", g, g)
	}
	return p, nil
}

// fromWire returns p's Go value; a value this side does not know,
// _UNSPECIFIED among them, is an error.
func (m wireMap[G, P]) fromWire(p P) (G, error) {
	for g, q := range m {
		if q == p {
			return g, nil
		}
	}
	var zero G
	return zero, fmt.Errorf("unknown %T value %d", p, int32(p))
}
