package policy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/sdk"
)

// fakeChecker answers with verdict, or fails, hangs or panics, and records
// the requests it saw.
type fakeChecker struct {
	verdict sdk.Verdict
	err     error
	hang    bool
	panics  bool

	mu   sync.Mutex
	seen []sdk.CheckRequest
	body []string
}

func (f *fakeChecker) Check(ctx context.Context, req *sdk.CheckRequest) (sdk.Verdict, error) {
	f.mu.Lock()
	f.seen = append(f.seen, *req)
	if req.Message != nil {
		b, _ := io.ReadAll(req.Message)
		f.body = append(f.body, string(b))
	}
	f.mu.Unlock()
	switch {
	case f.hang:
		<-make(chan struct{}) // Ignores ctx, as a stuck plugin would.
	case f.panics:
		panic("checker bug")
	}
	return f.verdict, f.err
}

func (f *fakeChecker) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.seen)
}

type fakeSource struct {
	infos    map[string]*sdk.PolicyInfo
	checkers map[string]*fakeChecker
	down     map[string]bool
}

func (s *fakeSource) PolicyInfo(name string) *sdk.PolicyInfo { return s.infos[name] }
func (s *fakeSource) Checker(name string) (sdk.Checker, error) {
	if s.down[name] {
		return nil, errors.New("plugin restarting")
	}
	return s.checkers[name], nil
}

// spec is a check of a test chain.
type spec struct {
	name   string
	stages []sdk.Stage
	body   sdk.BodyNeed
	accept bool // on_error = "accept".
	c      *fakeChecker
}

func newTestChain(t *testing.T, specs ...spec) (*Chain, *fakeSource) {
	t.Helper()
	cfg := &config.Config{Policies: map[string]*config.Policy{}}
	src := &fakeSource{infos: map[string]*sdk.PolicyInfo{}, checkers: map[string]*fakeChecker{}, down: map[string]bool{}}
	var names []string
	for _, s := range specs {
		onErr := config.OnErrorTempfail
		if s.accept {
			onErr = config.OnErrorAccept
		}
		cfg.Policies[s.name] = &config.Policy{Plugin: "p", Timeout: config.Duration(200 * time.Millisecond), OnError: onErr}
		src.infos[s.name] = &sdk.PolicyInfo{Stages: s.stages, Body: s.body}
		src.checkers[s.name] = s.c
		names = append(names, s.name)
	}
	c, err := NewChain(cfg, names, src, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return c, src
}

var rcpt = []sdk.Stage{sdk.StageRcpt}

func TestRunOrder(t *testing.T) {
	a := &fakeChecker{verdict: sdk.Verdict{PrependHeaders: []string{"X-A: 1\r\n"}}}
	b := &fakeChecker{verdict: sdk.Verdict{Action: sdk.ActionReject, Text: "no", PrependHeaders: []string{"X-B: 2\r\n"}}}
	c := &fakeChecker{verdict: sdk.Verdict{Action: sdk.ActionAccept}}
	mailOnly := &fakeChecker{}
	ch, _ := newTestChain(t, spec{name: "a", stages: rcpt, c: a}, spec{name: "m", stages: []sdk.Stage{sdk.StageMail}, c: mailOnly},
		spec{name: "b", stages: rcpt, c: b}, spec{name: "c", stages: rcpt, c: c})
	if !ch.Wants(sdk.StageRcpt) || !ch.Wants(sdk.StageMail) || ch.Wants(sdk.StageData) || ch.Wants(sdk.StageConnect) {
		t.Error("Wants is wrong")
	}
	res := ch.Run(context.Background(), sdk.CheckRequest{Stage: sdk.StageRcpt, From: "a@b.example", Recipients: []string{"c@d.example"}}, nil)
	if res.Action != sdk.ActionReject || res.Check != "b" || res.Code != 550 || res.Enhanced != "5.7.1" || res.Text != "no" {
		t.Errorf("result %+v", res)
	}
	if strings.Join(res.Headers, "") != "X-A: 1\r\nX-B: 2\r\n" {
		t.Errorf("headers %q", res.Headers)
	}
	if a.calls() != 1 || b.calls() != 1 || c.calls() != 0 || mailOnly.calls() != 0 {
		t.Errorf("calls a %d b %d c %d mail %d", a.calls(), b.calls(), c.calls(), mailOnly.calls())
	}
	if a.seen[0].Instance != "a" || b.seen[0].Instance != "b" || a.seen[0].From != "a@b.example" {
		t.Errorf("requests %+v %+v", a.seen[0], b.seen[0])
	}

	// Accept skips the rest of the stage.
	ch, _ = newTestChain(t, spec{name: "c", stages: rcpt, c: c}, spec{name: "b", stages: rcpt, c: b})
	if res := ch.Run(context.Background(), sdk.CheckRequest{Stage: sdk.StageRcpt}, nil); res.Action != sdk.ActionAccept || b.calls() != 1 {
		t.Errorf("accept: %+v, reject check called %d times", res, b.calls())
	}
	var nilChain *Chain
	if nilChain.Wants(sdk.StageData) || nilChain.Run(context.Background(), sdk.CheckRequest{Stage: sdk.StageData}, nil).Action != sdk.ActionContinue {
		t.Error("nil chain")
	}
}

func TestRunFailures(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    *fakeChecker
		down bool
	}{
		{"error", &fakeChecker{err: errors.New("boom")}, false},
		{"down", &fakeChecker{}, true},
		{"hangs", &fakeChecker{hang: true}, false},
		{"panics", &fakeChecker{panics: true}, false},
		{"reject with 4xx", &fakeChecker{verdict: sdk.Verdict{Action: sdk.ActionReject, Code: 451}}, false},
		{"tempfail with 421", &fakeChecker{verdict: sdk.Verdict{Action: sdk.ActionTempfail, Code: 421}}, false},
		{"enhanced of the wrong class", &fakeChecker{verdict: sdk.Verdict{Action: sdk.ActionReject, EnhancedCode: "4.7.1"}}, false},
		{"enhanced malformed", &fakeChecker{verdict: sdk.Verdict{Action: sdk.ActionTempfail, EnhancedCode: "4.7"}}, false},
		{"text with CRLF", &fakeChecker{verdict: sdk.Verdict{Action: sdk.ActionReject, Text: "a\r\n250 ok"}}, false},
		{"unknown action", &fakeChecker{verdict: sdk.Verdict{Action: 99}}, false},
		{"header without CRLF", &fakeChecker{verdict: sdk.Verdict{PrependHeaders: []string{"X-A: 1"}}}, false},
		{"header with bare LF", &fakeChecker{verdict: sdk.Verdict{PrependHeaders: []string{"X-A: 1\nX-B: 2\r\n"}}}, false},
		{"header smuggling a body", &fakeChecker{verdict: sdk.Verdict{PrependHeaders: []string{"X-A: 1\r\n\r\nbody\r\n"}}}, false},
		{"header without name", &fakeChecker{verdict: sdk.Verdict{PrependHeaders: []string{": 1\r\n"}}}, false},
		{"header continuation missing", &fakeChecker{verdict: sdk.Verdict{PrependHeaders: []string{"X-A: 1\r\nX-B: 2\r\n"}}}, false},
		{"deletion before data", &fakeChecker{verdict: sdk.Verdict{DeleteHeaders: []sdk.HeaderRef{{Name: "X-A", Index: 1}}}}, false},
	} {
		for _, accept := range []bool{false, true} {
			ch, src := newTestChain(t, spec{name: "x", stages: rcpt, accept: accept, c: tc.c}, spec{name: "y", stages: rcpt, c: &fakeChecker{}})
			src.down["x"] = tc.down
			start := time.Now()
			res := ch.Run(context.Background(), sdk.CheckRequest{Stage: sdk.StageRcpt}, nil)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("%s: took %v", tc.name, d)
			}
			want := Result{Action: sdk.ActionTempfail, Check: "x", Code: 451, Enhanced: "4.7.1", Text: "Policy check unavailable, try again later"}
			if accept {
				want = Result{}
			}
			if res.Action != want.Action || res.Code != want.Code || res.Enhanced != want.Enhanced || len(res.Headers) != 0 {
				t.Errorf("%s, accept %v: %+v, want %+v", tc.name, accept, res, want)
			}
			if calls := src.checkers["y"].calls(); accept != (calls == 1) {
				t.Errorf("%s, accept %v: next check called %d times", tc.name, accept, calls)
			}
		}
	}
}

func TestRunDefaults(t *testing.T) {
	for _, tc := range []struct {
		v                sdk.Verdict
		code             int
		enhanced, reason string
	}{
		{sdk.Verdict{Action: sdk.ActionReject}, 550, "5.7.1", "Refused by policy"},
		{sdk.Verdict{Action: sdk.ActionTempfail}, 451, "4.7.1", "Try again later"},
		{sdk.Verdict{Action: sdk.ActionReject, Code: 554, EnhancedCode: "5.7.26", Text: "DMARC"}, 554, "5.7.26", "DMARC"},
		{sdk.Verdict{Action: sdk.ActionTempfail, Code: 450, EnhancedCode: "4.2.0", Text: "greylisted"}, 450, "4.2.0", "greylisted"},
		{sdk.Verdict{Action: sdk.ActionQuarantine, Text: "dmarc"}, 0, "", "dmarc"},
	} {
		ch, _ := newTestChain(t, spec{name: "x", stages: rcpt, c: &fakeChecker{verdict: tc.v}})
		res := ch.Run(context.Background(), sdk.CheckRequest{Stage: sdk.StageRcpt}, nil)
		if res.Action != tc.v.Action || res.Code != tc.code || res.Enhanced != tc.enhanced || res.Text != tc.reason {
			t.Errorf("%+v: got %+v", tc.v, res)
		}
	}
}

func TestRunData(t *testing.T) {
	msg := "From: a@b.example\r\nAuthentication-Results: mx.example; spf=pass\r\n\r\nbody\r\n"
	hdr := &fakeChecker{verdict: sdk.Verdict{DeleteHeaders: []sdk.HeaderRef{{Name: "authentication-results", Index: 1}}}}
	full := &fakeChecker{verdict: sdk.Verdict{Action: sdk.ActionQuarantine, Text: "spam"}}
	none := &fakeChecker{}
	ch, _ := newTestChain(t, spec{name: "h", stages: []sdk.Stage{sdk.StageData}, body: sdk.BodyHeaders, c: hdr},
		spec{name: "n", stages: []sdk.Stage{sdk.StageData}, c: none},
		spec{name: "f", stages: []sdk.Stage{sdk.StageData}, body: sdk.BodyFull, c: full})
	end, err := HeaderEnd(strings.NewReader(msg), int64(len(msg)))
	if err != nil || end != int64(strings.Index(msg, "\r\n\r\n")+4) {
		t.Fatalf("HeaderEnd %d %v", end, err)
	}
	open := func(need sdk.BodyNeed) io.Reader {
		if need == sdk.BodyHeaders {
			return strings.NewReader(msg[:end])
		}
		return strings.NewReader(msg)
	}
	res := ch.Run(context.Background(), sdk.CheckRequest{Stage: sdk.StageData, Size: int64(len(msg))}, open)
	if res.Action != sdk.ActionQuarantine || res.Text != "spam" || len(res.Deletes) != 1 {
		t.Fatalf("result %+v", res)
	}
	if hdr.body[0] != msg[:end] || full.body[0] != msg || len(none.body) != 0 || none.seen[0].Message != nil {
		t.Errorf("bodies: headers %q, full %q, none %q", hdr.body, full.body, none.body)
	}
	var out bytes.Buffer
	if err := Rewrite(&out, strings.NewReader(msg), res.Deletes); err != nil || out.String() != "From: a@b.example\r\n\r\nbody\r\n" {
		t.Errorf("Rewrite: %q %v", out.String(), err)
	}
}

func TestRewrite(t *testing.T) {
	msg := "Received: x\r\nA-R: one\r\n\tcontinued\r\nSubject: s\r\na-r: two\r\nA-R : three\r\n\r\nA-R: in the body\r\n"
	for _, tc := range []struct {
		del  []sdk.HeaderRef
		want string
	}{
		{nil, msg},
		{[]sdk.HeaderRef{{Name: "A-R", Index: 1}}, "Received: x\r\nSubject: s\r\na-r: two\r\nA-R : three\r\n\r\nA-R: in the body\r\n"},
		{[]sdk.HeaderRef{{Name: "a-r", Index: 2}, {Name: "A-R", Index: 3}}, "Received: x\r\nA-R: one\r\n\tcontinued\r\nSubject: s\r\n\r\nA-R: in the body\r\n"},
		{[]sdk.HeaderRef{{Name: "A-R", Index: 4}}, msg},
	} {
		var out bytes.Buffer
		if err := Rewrite(&out, strings.NewReader(msg), tc.del); err != nil || out.String() != tc.want {
			t.Errorf("%v: %q %v, want %q", tc.del, out.String(), err, tc.want)
		}
	}
	// No body, no empty line.
	var out bytes.Buffer
	if err := Rewrite(&out, strings.NewReader("A: 1\r\nB: 2\r\n"), []sdk.HeaderRef{{Name: "b", Index: 1}}); err != nil || out.String() != "A: 1\r\n" {
		t.Errorf("headers only: %q %v", out.String(), err)
	}
}

// FuzzRewrite: Rewrite never fails on a message, leaves the body after
// the header section alone, and without deletions copies exactly.
func FuzzRewrite(f *testing.F) {
	f.Add("A: 1\r\nB: 2\r\n\r\nbody\r\n", "a", 1)
	f.Add("A: 1\r\n\t2\r\nA: 3\r\n\r\n", "A", 2)
	f.Add("no colon\r\n\r\n", "no colon", 1)
	f.Add("\r\nbody", "", 1)
	f.Fuzz(func(t *testing.T, msg, name string, index int) {
		var same bytes.Buffer
		if err := Rewrite(&same, strings.NewReader(msg), nil); err != nil || same.String() != msg {
			t.Fatalf("no deletions: %q %v", same.String(), err)
		}
		var out bytes.Buffer
		if err := Rewrite(&out, strings.NewReader(msg), []sdk.HeaderRef{{Name: name, Index: index}}); err != nil {
			t.Fatal(err)
		}
		if out.Len() > len(msg) {
			t.Fatalf("output longer than input: %q from %q", out.String(), msg)
		}
		if i := strings.Index(msg, "\r\n\r\n"); i >= 0 && len(msg) < 32<<10 {
			body := msg[i+4:]
			if !strings.HasSuffix(out.String(), "\r\n"+body) && !(i == 0 && strings.HasSuffix(out.String(), body)) {
				t.Fatalf("body changed: %q from %q", out.String(), msg)
			}
		}
	})
}

// TestHeaderEnd: the end of the header section wherever it falls, also
// across the chunks HeaderEnd reads in.
func TestHeaderEnd(t *testing.T) {
	want := func(msg string) int64 {
		if strings.HasPrefix(msg, "\r\n") {
			return 2
		}
		if i := strings.Index(msg, "\r\n\r\n"); i >= 0 {
			return int64(i + 4)
		}
		return int64(len(msg))
	}
	msgs := []string{"", "\r\n", "\r\nbody", "A: 1\r\n", "A: 1\r\n\r\n", "A: 1\r\n\r\nB\r\n\r\n", "A: 1\r\nB: 2"}
	for _, at := range []int{32<<10 - 8, 32<<10 - 5, 32<<10 - 4, 32<<10 - 3, 32<<10 - 2, 32 << 10, 64<<10 - 7} {
		long := "X: " + strings.Repeat("x", at-3) // The header's first CRLF CRLF starts at at.
		msgs = append(msgs, long+"\r\n\r\nbody\r\n", long+"\r\n")
	}
	for _, m := range msgs {
		got, err := HeaderEnd(strings.NewReader(m), int64(len(m)))
		if err != nil || got != want(m) {
			t.Errorf("HeaderEnd of %d bytes (%.20q...): %d %v, want %d", len(m), m, got, err, want(m))
		}
	}
}
