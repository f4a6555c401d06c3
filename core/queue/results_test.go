package queue

import (
	"errors"
	"fmt"
	"testing"

	"github.com/switchyard-mta/switchyard/sdk"
)

type textErr struct{ error }

func (textErr) RecipientText() string { return "the outgoing mail service is temporarily unavailable" }

// An error with a RecipientText gives the recipients that text, also
// wrapped; another error its own text.
func TestResultsForErrorText(t *testing.T) {
	req := &sdk.DeliverRequest{Recipients: []sdk.Recipient{{Address: "a@example.org"}, {Address: "b@example.org"}}}
	err := fmt.Errorf("route: %w", textErr{errors.New("rpc error: code = Unavailable desc = gone")})
	for _, r := range resultsFor(req, nil, err) {
		if r.Status != sdk.StatusTemporary || r.Text != "the outgoing mail service is temporarily unavailable" {
			t.Errorf("result %+v", r)
		}
	}
	if r := resultsFor(req, nil, errors.New("open message file: x"))[1]; r.Address != "b@example.org" || r.Text != "open message file: x" {
		t.Errorf("plain error: %+v", r)
	}
}
