package server

import (
	"testing"

	"github.com/switchyard-mta/switchyard/sdk"
)

func TestSuppressible(t *testing.T) {
	const host = "mail.example.org"
	refused := func(stage sdk.Stage, code int, enh, remote string) sdk.RecipientResult {
		return sdk.RecipientResult{Status: sdk.StatusPermanent, Stage: stage, Code: code, EnhancedCode: enh, Text: "no", RemoteHost: remote}
	}
	for _, c := range []struct {
		name string
		l    sdk.RecipientResult
		want bool
	}{
		{"unknown user at RCPT", refused(sdk.StageRcpt, 550, "5.1.1", "mx.remote.example"), true},
		{"refused at RCPT", refused(sdk.StageRcpt, 550, "5.7.1", "mx.remote.example"), true},
		{"disabled at RCPT", refused(sdk.StageRcpt, 550, "5.2.1", "mx.remote.example"), true},
		{"unknown user after DATA (LMTP)", refused(sdk.StageData, 550, "5.1.1", "mx.remote.example"), true},
		{"content refused after DATA", refused(sdk.StageData, 550, "5.7.1", "mx.remote.example"), false},
		{"sender refused at MAIL", refused(sdk.StageMail, 553, "5.7.1", "smarthost.example"), false},
		{"sender unknown at MAIL", refused(sdk.StageMail, 550, "5.1.1", "smarthost.example"), false},
		{"refused at EHLO", refused(sdk.StageHelo, 550, "5.7.1", "mx.remote.example"), false},
		{"no stage from a plugin", refused(0, 550, "5.1.1", "mx.remote.example"), false},
		{"mailbox full at RCPT", refused(sdk.StageRcpt, 552, "5.2.2", "mx.remote.example"), false},
		{"temporary at RCPT", sdk.RecipientResult{Status: sdk.StatusTemporary, Stage: sdk.StageRcpt, Code: 450, EnhancedCode: "4.1.1", RemoteHost: "mx.remote.example"}, false},
		{"local delivery", refused(sdk.StageRcpt, 550, "5.1.1", host), false},
		{"no remote host", refused(sdk.StageRcpt, 550, "5.1.1", ""), false},
		{"null MX from DNS", refused(0, 0, "5.1.10", ""), true},
		{"bad domain from DNS", refused(0, 0, "5.1.2", ""), false},
	} {
		if got := suppressible(c.l, host); got != c.want {
			t.Errorf("%s: suppressible %v, want %v", c.name, got, c.want)
		}
	}
}
