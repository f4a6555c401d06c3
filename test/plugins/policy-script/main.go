// Command policy-script is a policy plugin for the project's tests: its
// verdicts follow rules in its instance tables, so that a test can make a
// check refuse, mark, sleep or crash at any stage. Its stages and body
// need, which a plugin declares before any configuration, are its
// arguments:
//
//	[plugins.script]
//	path = "..."
//	args = ["-stages", "rcpt,data", "-body", "full"]
//	[policies.t]
//	plugin = "script"
//	[[policies.t.config.rules]]
//	stage = "rcpt"          # required
//	match = "reject"        # substring of the stage's subject; "" matches all
//	action = "reject"       # continue (default), accept, reject, tempfail, discard, quarantine
//	code = 550              # optional, as enhanced and text
//	header = "X-Script: 1"  # prepended (CRLF added)
//	delete = "X-Old"        # at data: delete the first field of the name
//	sleep = "2s"            # before answering
//	exit = true             # the process exits instead of answering
//
// The subject is the client's IP at connect, the HELO name at helo, MAIL
// FROM at mail, the recipient at rcpt, and the message at data. The first
// rule whose stage and match fit decides; no rule is continue.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
)

type rule struct {
	Stage    string `toml:"stage"`
	Match    string `toml:"match"`
	Action   string `toml:"action"`
	Code     int    `toml:"code"`
	Enhanced string `toml:"enhanced"`
	Text     string `toml:"text"`
	Header   string `toml:"header"`
	Delete   string `toml:"delete"`
	Sleep    string `toml:"sleep"`
	Exit     bool   `toml:"exit"`

	sleep  time.Duration
	action sdk.Action
}

type config struct {
	Rules []rule `toml:"rules"`
}

var actions = map[string]sdk.Action{"": sdk.ActionContinue, "continue": sdk.ActionContinue, "accept": sdk.ActionAccept,
	"reject": sdk.ActionReject, "tempfail": sdk.ActionTempfail, "discard": sdk.ActionDiscard, "quarantine": sdk.ActionQuarantine}

type checker struct {
	mu    sync.Mutex
	rules map[string][]rule // By instance.
}

func (c *checker) Configure(ctx context.Context, conf *sdk.Configuration) error {
	if conf.Kind != sdk.KindPolicy {
		return nil
	}
	var cfg config
	if err := conf.Decode(&cfg); err != nil {
		return err
	}
	var errs sdk.ConfigErrors
	for i := range cfg.Rules {
		r := &cfg.Rules[i]
		key := fmt.Sprintf("rules[%d]", i)
		a, ok := actions[r.Action]
		if !ok {
			errs = append(errs, sdk.ConfigError{Key: key + ".action", Msg: "unknown action " + r.Action})
		}
		r.action = a
		if r.Sleep != "" {
			d, err := time.ParseDuration(r.Sleep)
			if err != nil {
				errs = append(errs, sdk.ConfigError{Key: key + ".sleep", Msg: err.Error()})
			}
			r.sleep = d
		}
	}
	if errs != nil {
		return errs
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rules[conf.Instance] = cfg.Rules
	return nil
}

func (c *checker) Check(ctx context.Context, req *sdk.CheckRequest) (sdk.Verdict, error) {
	var subject string
	switch req.Stage {
	case sdk.StageConnect:
		subject = req.Conn.RemoteAddr
	case sdk.StageHelo:
		subject = req.Helo
	case sdk.StageMail:
		subject = req.From
	case sdk.StageRcpt:
		subject = req.Recipients[len(req.Recipients)-1]
	case sdk.StageData:
		if req.Message != nil {
			b, err := io.ReadAll(req.Message)
			if err != nil {
				return sdk.Verdict{}, err
			}
			subject = string(b)
		}
	}
	c.mu.Lock()
	rules := c.rules[req.Instance]
	c.mu.Unlock()
	for _, r := range rules {
		if r.Stage != req.Stage.String() || !strings.Contains(subject, r.Match) {
			continue
		}
		if r.Exit {
			os.Exit(3)
		}
		select {
		case <-time.After(r.sleep):
		case <-ctx.Done():
			return sdk.Verdict{}, ctx.Err()
		}
		v := sdk.Verdict{Action: r.action, Code: r.Code, EnhancedCode: r.Enhanced, Text: r.Text}
		if r.Header != "" {
			v.PrependHeaders = []string{r.Header + "\r\n"}
		}
		if r.Delete != "" {
			v.DeleteHeaders = []sdk.HeaderRef{{Name: r.Delete, Index: 1}}
		}
		return v, nil
	}
	return sdk.Verdict{}, nil
}

func main() {
	stages := flag.String("stages", "rcpt", "stages to check, comma-separated")
	body := flag.String("body", "none", "none, headers or full")
	flag.Parse()
	info := &sdk.PolicyInfo{Body: map[string]sdk.BodyNeed{"none": sdk.BodyNone, "headers": sdk.BodyHeaders, "full": sdk.BodyFull}[*body]}
	for _, s := range strings.Split(*stages, ",") {
		for st := sdk.StageConnect; st <= sdk.StageData; st++ {
			if st.String() == s {
				info.Stages = append(info.Stages, st)
			}
		}
	}
	c := &checker{rules: map[string][]rule{}}
	sdk.Serve(&sdk.Plugin{Name: "policy-script", Version: "0.1.0", Policy: info, Checker: c})
}
