package smtpd

import (
	"io"
	"log/slog"
	"strconv"
	"strings"

	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/core/localdelivery"
	"github.com/switchyard-mta/switchyard/core/policy"
	"github.com/switchyard-mta/switchyard/core/sasl"
	"github.com/switchyard-mta/switchyard/sdk"
)

// connPolicy is what the connect-stage checks of a connection decided,
// once for all its sessions (STARTTLS starts a new one).
type connPolicy struct {
	checked bool
	headers []string
	mark    mark
}

// mark is a verdict that holds for a whole transaction (or session):
// discard or quarantine, with the reason.
type mark struct {
	action sdk.Action // ActionContinue: none.
	reason string
	check  string
}

// stronger returns the mark that wins: discard over quarantine over none.
func (m mark) stronger(o mark) mark {
	rank := func(a sdk.Action) int {
		switch a {
		case sdk.ActionDiscard:
			return 2
		case sdk.ActionQuarantine:
			return 1
		}
		return 0
	}
	if rank(o.action) > rank(m.action) {
		return o
	}
	return m
}

// checkRequest is the session and transaction so far, for a check at stage.
func (s *session) checkRequest(stage sdk.Stage) sdk.CheckRequest {
	req := sdk.CheckRequest{
		Stage:      stage,
		Conn:       sasl.ConnInfo("smtp", s.srv.cfg.Listener.Name, s.sc.Conn(), s.srv.cfg.TLS),
		Submission: s.srv.submission(),
		Account:    s.account,
		From:       s.from,
		Size:       s.size,
	}
	if stage != sdk.StageConnect {
		req.Helo = s.sc.Hostname()
	}
	for _, r := range s.recipients {
		req.Recipients = append(req.Recipients, r.Address)
	}
	return req
}

// runPolicy runs the listener's checks at stage and returns the reply of a
// reject or tempfail. Otherwise it keeps what they add to the message:
// headers, and a discard or quarantine mark; those of connect and helo for
// the connection or session, later ones for the transaction.
func (s *session) runPolicy(req sdk.CheckRequest, msg policy.Message) (*smtp.SMTPError, policy.Result) {
	res := s.srv.cfg.Policies.Run(s.srv.ctx, req, msg)
	switch res.Action {
	case sdk.ActionReject, sdk.ActionTempfail:
		// Nothing of a refused stage goes into the message.
		return policyReply(res), res
	}
	m := mark{action: res.Action, reason: res.Text, check: res.Check}
	switch req.Stage {
	case sdk.StageConnect:
		s.connPolicy.headers = append(s.connPolicy.headers, res.Headers...)
		s.connPolicy.mark = s.connPolicy.mark.stronger(m)
	case sdk.StageHelo:
		s.heloHeaders = append(s.heloHeaders, res.Headers...)
		s.heloMark = s.heloMark.stronger(m)
	default:
		s.txHeaders = append(s.txHeaders, res.Headers...)
		s.txMark = s.txMark.stronger(m)
	}
	return nil, res
}

// policyReply is the SMTP reply of a reject or tempfail.
func policyReply(res policy.Result) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: res.Code, Message: res.Text}
	for i, p := range strings.SplitN(res.Enhanced, ".", 3) {
		e.EnhancedCode[i], _ = strconv.Atoi(p) // Checked by core/policy.
	}
	return e
}

// policyConnect runs the connect-stage checks once per connection, at the
// session's start; a refusal ends the connection after its reply.
func (s *session) policyConnect(cp *connPolicy) *smtp.SMTPError {
	s.connPolicy = cp
	if cp.checked || !s.srv.cfg.Policies.Wants(sdk.StageConnect) {
		return nil
	}
	cp.checked = true
	reply, _ := s.runPolicy(s.checkRequest(sdk.StageConnect), nil)
	if reply != nil {
		s.log.Info("connection refused by policy", slog.Int("code", reply.Code))
		s.conn.HangupAfterReply()
	}
	return reply
}

// policyMessage returns the header fields to prepend to the message, in
// check order, and the mark of the transaction.
func (s *session) policyMessage() ([]string, mark) {
	var hdrs []string
	if s.connPolicy != nil {
		hdrs = append(hdrs, s.connPolicy.headers...)
	}
	hdrs = append(append(hdrs, s.heloHeaders...), s.txHeaders...)
	m := s.heloMark.stronger(s.txMark)
	if s.connPolicy != nil {
		m = m.stronger(s.connPolicy.mark)
	}
	return hdrs, m
}

// writePrefix writes what goes above the message: the checks' header
// fields, the quarantine mark, then the Received field.
func (s *session) writePrefix(w io.Writer, hdrs []string, m mark, received string) error {
	var b strings.Builder
	for _, h := range hdrs {
		b.WriteString(h)
	}
	if m.action == sdk.ActionQuarantine {
		b.WriteString(localdelivery.QuarantineField + ": " + headerValue(m.reason, m.check) + "\r\n")
	}
	b.WriteString(received)
	_, err := io.WriteString(w, b.String())
	return err
}

// headerValue is the quarantine reason as a field value: the check's text
// (printable, checked by core/policy), or the check's name.
func headerValue(reason, check string) string {
	if reason == "" {
		reason = "quarantined by policy " + check
	}
	return reason
}
