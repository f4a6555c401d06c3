package plugintest_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/plugintest"
)

// badTransport returns what a buggy plugin might: nothing, too few
// results, or a status no side knows.
type badTransport struct{ res *sdk.DeliverResult }

func (b badTransport) Deliver(ctx context.Context, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	return b.res, nil
}

// badChecker returns an action no side knows.
type badChecker struct{}

func (badChecker) Check(ctx context.Context, req *sdk.CheckRequest) (sdk.Verdict, error) {
	return sdk.Verdict{Action: sdk.Action(99)}, nil
}

// A transport's malformed result is a clear error for the core, and the
// plugin process survives it: before, (nil, nil) was a nil dereference in
// the plugin.
func TestMalformedDeliverResult(t *testing.T) {
	req := &sdk.DeliverRequest{Instance: "t", Recipients: []sdk.Recipient{{Address: "a@example.org"}, {Address: "b@example.org"}}, Message: strings.NewReader("x\r\n")}
	for _, tc := range []struct {
		name string
		res  *sdk.DeliverResult
		want string
	}{
		{"nil result", nil, "neither a result nor an error"},
		{"too few results", &sdk.DeliverResult{Recipients: []sdk.RecipientResult{{Address: "a@example.org", Status: sdk.StatusDelivered}}}, "1 results for 2 recipients"},
		{"unknown status", &sdk.DeliverResult{Recipients: []sdk.RecipientResult{{Address: "a@example.org", Status: sdk.StatusDelivered}, {Address: "b@example.org", Status: sdk.Status(7)}}}, "has no wire value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := plugintest.Connect(t, &sdk.Plugin{Name: "bad", Transport: badTransport{tc.res}}, nil)
			req.Message = strings.NewReader("x\r\n")
			res, err := c.Transport().Deliver(ctx(t), req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %+v, %v; want an error containing %q", res, err, tc.want)
			}
			// The plugin still answers.
			if _, err := c.Describe(ctx(t)); err != nil {
				t.Fatalf("plugin gone after a malformed result: %v", err)
			}
		})
	}
}

// Enums cross the wire by explicit mapping: an unknown value is refused on
// either side, and the zero Kind is no kind (it meant "the plugin as a
// whole" by accident of iota).
func TestUnknownEnums(t *testing.T) {
	c := plugintest.Connect(t, &sdk.Plugin{Name: "p", Transport: badTransport{}, Checker: badChecker{}, Policy: &sdk.PolicyInfo{Stages: []sdk.Stage{sdk.StageRcpt}}}, nil)
	if err := c.Configure(ctx(t), &sdk.Configuration{Instance: "x"}); err == nil {
		t.Error("a Configuration without a Kind was accepted")
	}
	if err := c.Configure(ctx(t), &sdk.Configuration{Kind: sdk.KindPlugin}); err != nil {
		t.Errorf("KindPlugin: %v", err)
	}
	if _, err := c.Checker().Check(ctx(t), &sdk.CheckRequest{Stage: sdk.Stage(42)}); err == nil || !strings.Contains(err.Error(), "no wire value") {
		t.Errorf("unknown stage sent: %v", err)
	}
	if v, err := c.Checker().Check(ctx(t), &sdk.CheckRequest{Stage: sdk.StageRcpt}); err == nil {
		t.Errorf("unknown action arrived as %+v", v)
	}
}

type failingTransport struct{}

func (failingTransport) Deliver(ctx context.Context, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	return nil, errors.New("smarthost refused")
}

// A transport's own Deliver error does not come as Unavailable, which the
// core reads as the plugin process gone; its text comes through.
func TestDeliverErrorCode(t *testing.T) {
	c := plugintest.Connect(t, &sdk.Plugin{Name: "f", Transport: failingTransport{}}, nil)
	_, err := c.Transport().Deliver(ctx(t), &sdk.DeliverRequest{Recipients: []sdk.Recipient{{Address: "a@example.org"}}, Message: strings.NewReader("x\r\n")})
	if code := status.Code(err); code != codes.Unknown || !strings.Contains(err.Error(), "smarthost refused") {
		t.Errorf("deliver: %v (code %v), want Unknown with the plugin's text", err, code)
	}
}
