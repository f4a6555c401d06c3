// Package policy runs the policy checks of an SMTP listener: the
// [policies] instances it lists in mta.toml, each served by a plugin's
// sdk.Checker. At each stage of a transaction a Chain asks the checks that
// declared the stage, in order, one call each; the first verdict other
// than continue decides the stage. Headers the checks prepend are
// collected in check order, whatever their verdicts.
//
// A check that fails (its plugin down, no answer within its timeout, an
// error, or a malformed verdict) gets its on_error: a temporary refusal
// (451 4.7.1), or no opinion. A check never makes a permanent refusal of
// a failure, and never hangs a session past its timeout.
package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/sdk"
)

// Checkers gives the checker of a policy instance; *pluginhost.Manager
// implements it.
type Checkers interface {
	// PolicyInfo is what the instance's plugin asks for; nil if unknown.
	PolicyInfo(name string) *sdk.PolicyInfo
	// Checker is the instance's checker now, or an error while its plugin
	// is down.
	Checker(name string) (sdk.Checker, error)
}

// check is one configured check of a chain.
type check struct {
	name    string
	timeout time.Duration
	accept  bool // on_error = "accept".
	info    sdk.PolicyInfo
}

// Chain is the ordered policy checks of one listener. A nil *Chain has no
// checks.
type Chain struct {
	checks []check
	src    Checkers
	log    *slog.Logger
}

// NewChain returns the chain of the policy instances names, as cfg
// configures them, served by src; nil for no names. Every name must be in
// cfg.Policies and known to src.
func NewChain(cfg *config.Config, names []string, src Checkers, log *slog.Logger) (*Chain, error) {
	if len(names) == 0 {
		return nil, nil
	}
	c := &Chain{src: src, log: log}
	for _, name := range names {
		pc := cfg.Policies[name]
		info := src.PolicyInfo(name)
		if pc == nil || info == nil {
			return nil, fmt.Errorf("policy: no policy check %q is running", name)
		}
		c.checks = append(c.checks, check{name: name, timeout: time.Duration(pc.Timeout), accept: pc.OnError == config.OnErrorAccept, info: *info})
	}
	return c, nil
}

// Wants reports whether a check of the chain runs at stage.
func (c *Chain) Wants(stage sdk.Stage) bool {
	if c == nil {
		return false
	}
	for _, ck := range c.checks {
		if ck.wants(stage) {
			return true
		}
	}
	return false
}

func (ck *check) wants(stage sdk.Stage) bool {
	for _, s := range ck.info.Stages {
		if s == stage {
			return true
		}
	}
	return false
}

// Result is what the checks of one stage decided.
type Result struct {
	Action sdk.Action // ActionContinue when no check decided.
	Check  string     // The check that decided; "" for none.
	// Code, Enhanced and Text are the reply of a reject or tempfail, with
	// defaults applied; Text is also the reason of a quarantine.
	Code     int
	Enhanced string
	Text     string
	Headers  []string        // To prepend, in check order.
	Deletes  []sdk.HeaderRef // At StageData: fields of the message to remove.
}

// Message opens the message for a check at StageData: its header section
// for sdk.BodyHeaders, all of it for sdk.BodyFull. Each call reads anew.
type Message func(need sdk.BodyNeed) io.Reader

// Run asks the checks that declared req.Stage, in order, until one decides;
// msg gives the message at StageData (nil before). ctx bounds all of it;
// each check also gets its own timeout.
func (c *Chain) Run(ctx context.Context, req sdk.CheckRequest, msg Message) Result {
	var res Result
	if c == nil {
		return res
	}
	for _, ck := range c.checks {
		if !ck.wants(req.Stage) {
			continue
		}
		r := req // Its own: a checker past its timeout may still read it.
		r.Instance, r.Message = ck.name, nil
		if req.Stage == sdk.StageData && ck.info.Body != sdk.BodyNone && msg != nil {
			r.Message = msg(ck.info.Body)
		}
		start := time.Now()
		v, err := c.call(ctx, &ck, &r)
		// Built only to log: most calls log nothing.
		log := func() *slog.Logger {
			return c.log.With(slog.String("policy", ck.name), slog.String("stage", req.Stage.String()))
		}
		if err == nil {
			err = checkVerdict(&v, req.Stage)
		}
		if err != nil {
			if ck.accept {
				log().Warn("policy check failed; on_error accept", slog.Duration("duration", time.Since(start)), slog.Any("err", err))
				continue
			}
			log().Warn("policy check failed; on_error tempfail", slog.Duration("duration", time.Since(start)), slog.Any("err", err))
			res.Action, res.Check = sdk.ActionTempfail, ck.name
			res.Code, res.Enhanced, res.Text = 451, "4.7.1", "Policy check unavailable, try again later"
			return res
		}
		res.Headers = append(res.Headers, v.PrependHeaders...)
		res.Deletes = append(res.Deletes, v.DeleteHeaders...)
		if v.Action == sdk.ActionContinue {
			continue
		}
		res.Action, res.Check = v.Action, ck.name
		res.Code, res.Enhanced, res.Text = v.Code, v.EnhancedCode, v.Text
		log().Info("policy verdict", slog.String("action", v.Action.String()), slog.Int("code", v.Code), slog.String("text", v.Text))
		return res
	}
	return res
}

// call runs one check within its timeout; a panic of the checker (one in
// process, as in tests) is an error.
func (c *Chain) call(ctx context.Context, ck *check, req *sdk.CheckRequest) (v sdk.Verdict, err error) {
	checker, err := c.src.Checker(ck.name)
	if err != nil {
		return sdk.Verdict{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, ck.timeout)
	defer cancel()
	type answer struct {
		v   sdk.Verdict
		err error
	}
	done := make(chan answer, 1)
	go func() {
		var a answer
		defer func() {
			if r := recover(); r != nil {
				a.err = fmt.Errorf("checker panicked: %v", r)
			}
			done <- a
		}()
		a.v, a.err = checker.Check(ctx, req)
	}()
	// The call gives up at the deadline even if the checker does not.
	select {
	case a := <-done:
		if a.err == nil && ctx.Err() != nil {
			a.err = ctx.Err()
		}
		return a.v, a.err
	case <-ctx.Done():
		return sdk.Verdict{}, fmt.Errorf("no verdict within %v: %w", ck.timeout, ctx.Err())
	}
}

// Limits on what a verdict may carry.
const (
	maxText        = 400      // Reply text; RFC 5321 §4.5.3.1.5 bounds the line at 512.
	maxHeaderBytes = 64 << 10 // All prepended fields of one verdict.
	maxHeaderLine  = 998      // RFC 5322 §2.1.1.
	maxDeletes     = 100
)

// errVerdict marks a malformed verdict.
var errVerdict = errors.New("malformed verdict")

// checkVerdict refuses a malformed verdict and applies the reply
// defaults: 550 5.7.1 for reject, 451 4.7.1 for tempfail.
func checkVerdict(v *sdk.Verdict, stage sdk.Stage) error {
	switch v.Action {
	case sdk.ActionContinue, sdk.ActionAccept, sdk.ActionDiscard, sdk.ActionQuarantine:
	case sdk.ActionReject:
		if err := reply(v, 5, 550, "5.7.1", "Refused by policy"); err != nil {
			return err
		}
	case sdk.ActionTempfail:
		if err := reply(v, 4, 451, "4.7.1", "Try again later"); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: action %d", errVerdict, v.Action)
	}
	if !validText(v.Text) {
		return fmt.Errorf("%w: text %.40q: want at most %d bytes of UTF-8 without control characters", errVerdict, v.Text, maxText)
	}
	n := 0
	for _, h := range v.PrependHeaders {
		n += len(h)
		if err := checkField(h); err != nil {
			return fmt.Errorf("%w: header %.40q: %v", errVerdict, h, err)
		}
	}
	if n > maxHeaderBytes {
		return fmt.Errorf("%w: %d bytes of headers, over %d", errVerdict, n, maxHeaderBytes)
	}
	if len(v.DeleteHeaders) > 0 && stage != sdk.StageData {
		return fmt.Errorf("%w: header deletions at stage %s, not data", errVerdict, stage)
	}
	if len(v.DeleteHeaders) > maxDeletes {
		return fmt.Errorf("%w: %d header deletions, over %d", errVerdict, len(v.DeleteHeaders), maxDeletes)
	}
	for _, d := range v.DeleteHeaders {
		if !validFieldName(d.Name) || d.Index < 1 {
			return fmt.Errorf("%w: header deletion %q #%d", errVerdict, d.Name, d.Index)
		}
	}
	return nil
}

// reply checks and defaults the reply of a reject (class 5) or tempfail
// (class 4). 421 is not a verdict's: it would close the connection.
func reply(v *sdk.Verdict, class, code int, enhanced, text string) error {
	switch {
	case v.Code == 0:
		v.Code = code
	case v.Code/100 != class || v.Code > class*100+99 || v.Code == 421:
		return fmt.Errorf("%w: code %d for %s", errVerdict, v.Code, v.Action)
	}
	if v.EnhancedCode == "" {
		v.EnhancedCode = enhanced
	} else if !validEnhanced(v.EnhancedCode, class) {
		return fmt.Errorf("%w: enhanced code %q for %s", errVerdict, v.EnhancedCode, v.Action)
	}
	if v.Text == "" {
		v.Text = text
	}
	return nil
}

// validEnhanced reports whether s is class.subject.detail (RFC 3463 §2:
// subject up to 3 digits, detail up to 3).
func validEnhanced(s string, class int) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != strconv.Itoa(class) {
		return false
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || len(p) > 3 || (len(p) > 1 && p[0] == '0') {
			return false
		}
	}
	return true
}

func validText(s string) bool {
	return len(s) <= maxText && utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f })
}
