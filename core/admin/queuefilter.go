package admin

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/switchyard-mta/switchyard/core/ctl"
	"github.com/switchyard-mta/switchyard/core/localdelivery"
	"github.com/switchyard-mta/switchyard/core/queue"
	"github.com/switchyard-mta/switchyard/core/route"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// QueueListFlags defines the flags of queue list: the filter, and -json.
func QueueListFlags(fs *flag.FlagSet) {
	queueFilterFlags(fs)
	fs.Bool("json", false, "print JSON, for scripts")
}

// QueueRescheduleFlags defines the flags of queue reschedule: the filter
// (or -all), and -in.
func QueueRescheduleFlags(fs *flag.FlagSet) {
	queueFilterFlags(fs)
	fs.Bool("all", false, "every message, when no filter is given")
	fs.Duration("in", 0, "due after this `duration` rather than now")
}

// queueFilterFlags defines the flags of queue.Filter.
func queueFilterFlags(fs *flag.FlagSet) {
	fs.String("id", "", "messages with these queue `ids`, comma-separated")
	fs.String("account", "", "messages sent by this `account`")
	fs.String("from", "", "messages from this `address`, or @domain")
	fs.String("to", "", "messages with a recipient at this `address`, or @domain")
	fs.String("transport", "", "messages with a pending recipient routed through this `transport`")
	fs.Duration("older", 0, "messages queued longer ago than this `duration`")
	fs.Duration("newer", 0, "messages queued within this `duration`")
	fs.String("state", "", "messages with a recipient in this `state`: "+strings.Join(queue.States, ", "))
	fs.Duration("next-before", 0, "messages with a pending recipient due within this `duration`")
}

// queueFilter parses args with the flags define defines, and returns the
// filter and the flag set, for the command's own flags.
func (h *Handles) queueFilter(args []string, define func(*flag.FlagSet)) (queue.Filter, *flag.FlagSet, error) {
	fs := flag.NewFlagSet("queue", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	define(fs)
	if err := fs.Parse(args); err != nil {
		return queue.Filter{}, nil, &ctl.UsageError{Msg: err.Error()}
	}
	if fs.NArg() > 0 {
		return queue.Filter{}, nil, &ctl.UsageError{Msg: fmt.Sprintf("unexpected arguments %q", fs.Args())}
	}
	get := func(name string) flag.Getter { return fs.Lookup(name).Value.(flag.Getter) }
	f := queue.Filter{
		Account:    get("account").Get().(string),
		From:       get("from").Get().(string),
		To:         get("to").Get().(string),
		Transport:  get("transport").Get().(string),
		Older:      get("older").Get().(time.Duration),
		Newer:      get("newer").Get().(time.Duration),
		State:      get("state").Get().(string),
		NextBefore: get("next-before").Get().(time.Duration),
	}
	if ids := get("id").Get().(string); ids != "" {
		f.IDs = strings.Split(ids, ",")
	}
	if f.Account != "" {
		if err := h.checkAccount(f.Account); err != nil {
			return queue.Filter{}, nil, err
		}
	}
	if f.Transport != "" && f.Transport != "local" && h.Config.Transport[f.Transport] == nil {
		return queue.Filter{}, nil, &ctl.UsageError{Msg: fmt.Sprintf("no transport %q in %s", f.Transport, h.Config.File)}
	}
	if err := f.Check(); err != nil {
		return queue.Filter{}, nil, &ctl.UsageError{Msg: err.Error()}
	}
	return f, fs, nil
}

// flagBool and flagDuration read a command's own flag.
func flagBool(fs *flag.FlagSet, name string) bool {
	return fs.Lookup(name).Value.(flag.Getter).Get().(bool)
}

func flagDuration(fs *flag.FlagSet, name string) time.Duration {
	return fs.Lookup(name).Value.(flag.Getter).Get().(time.Duration)
}

// QueueChangeFlags defines the flags of queue hold and release: the
// filter, or -all.
func QueueChangeFlags(fs *flag.FlagSet) {
	queueFilterFlags(fs)
	fs.Bool("all", false, "every message, when no filter is given")
}

// queueChange runs a changing queue command: the filter (or -all) selects
// messages, each is changed by change, durably, and the count of those
// changed is printed with what. flags defines the command's flags.
func (h *Handles) queueChange(ctx context.Context, args []string, out io.Writer, flags func(*flag.FlagSet), what string,
	change func(fs *flag.FlagSet) (func(ctx context.Context, id string) (bool, error), error)) error {
	f, fs, err := h.queueFilter(args, flags)
	if err != nil {
		return err
	}
	if f.Empty() && !flagBool(fs, "all") {
		return &ctl.UsageError{Msg: "no filter: give one, or -all for every message"}
	}
	do, err := change(fs)
	if err != nil {
		return err
	}
	msgs, _, err := h.Queue.Select(ctx, f, h.transportOf)
	if err != nil {
		return err
	}
	// Each change waits until it is durable; made in parallel, they share
	// the queue's commits, so a command over many messages is not one
	// fsync per message.
	var (
		mu    sync.Mutex
		n     int
		first error
		wg    sync.WaitGroup
		next  = make(chan string)
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(changeParallel, len(msgs)) {
		wg.Go(func() {
			for id := range next {
				changed, err := do(ctx, id)
				mu.Lock()
				switch {
				case errors.Is(err, queue.ErrNotFound): // Delivered or failed meanwhile.
				case err != nil:
					if first == nil {
						first = err
						cancel()
					}
				case changed:
					n++
				}
				mu.Unlock()
			}
		})
	}
	for _, m := range msgs {
		if ctx.Err() != nil {
			break
		}
		next <- m.ID
	}
	close(next)
	wg.Wait()
	if first != nil {
		return fmt.Errorf("after %d messages %s: %w", n, what, first)
	}
	fmt.Fprintf(out, "%d messages %s\n", n, what)
	return nil
}

// changeParallel is how many messages a changing queue command changes at
// once.
const changeParallel = 64

// queueReschedule runs `queue reschedule FILTER [-in DURATION]`: the
// selected messages' pending recipients are due then.
func (h *Handles) queueReschedule(ctx context.Context, args []string, out io.Writer) error {
	var at time.Time
	return h.queueChange(ctx, args, out, QueueRescheduleFlags, "rescheduled", func(fs *flag.FlagSet) (func(context.Context, string) (bool, error), error) {
		in := flagDuration(fs, "in")
		if in < 0 {
			return nil, &ctl.UsageError{Msg: "-in must not be negative"}
		}
		at = time.Now().Add(in)
		return func(ctx context.Context, id string) (bool, error) { return h.Queue.Reschedule(ctx, id, at) }, nil
	})
}

// transportOf is the transport a pending recipient goes through now, as
// the queue's router decides it.
func (h *Handles) transportOf(m queue.MsgInfo, r queue.Rcpt) string {
	h.routerOnce.Do(func() { h.router = localdelivery.Router(h.Config, route.FromConfig(h.Config)) })
	from, _ := mailaddr.ParseAddress(m.From)
	to, _ := mailaddr.ParseAddress(r.Address)
	return h.router.Route(m.Account, from.Domain, to.Domain, r.Attempts)
}

// jsonRcpt and jsonMsg are the JSON of queue list.
type jsonRcpt struct {
	Address     string     `json:"address"`
	State       string     `json:"state"`
	Attempts    int        `json:"attempts"`
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
	LastAttempt *time.Time `json:"last_attempt,omitempty"`
	Code        int        `json:"code,omitempty"`
	Enhanced    string     `json:"enhanced_code,omitempty"`
	Text        string     `json:"text,omitempty"`
	RemoteHost  string     `json:"remote_host,omitempty"`
}

type jsonMsg struct {
	ID         string     `json:"id"`
	Queued     time.Time  `json:"queued"`
	Account    string     `json:"account,omitempty"`
	From       string     `json:"from"`
	Size       int64      `json:"size"`
	Recipients []jsonRcpt `json:"recipients"`
}

func writeQueueJSON(out io.Writer, msgs []queue.MsgInfo) error {
	l := make([]jsonMsg, 0, len(msgs))
	for _, m := range msgs {
		jm := jsonMsg{ID: m.ID, Queued: m.Queued, Account: m.Account, From: m.From, Size: m.Size, Recipients: []jsonRcpt{}}
		for _, r := range m.Recipients {
			jr := jsonRcpt{Address: r.Address, State: r.State.String(), Attempts: r.Attempts, Code: r.Last.Code, Enhanced: r.Last.EnhancedCode, Text: r.Last.Text, RemoteHost: r.Last.RemoteHost}
			if !r.NextAttempt.IsZero() && r.State == queue.Pending {
				t := r.NextAttempt
				jr.NextAttempt = &t
			}
			if !r.LastAttempt.IsZero() {
				t := r.LastAttempt
				jr.LastAttempt = &t
			}
			jm.Recipients = append(jm.Recipients, jr)
		}
		l = append(l, jm)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(l)
}

// HoldRuleAddFlags defines the flags of queue holdrule add.
func HoldRuleAddFlags(fs *flag.FlagSet) {
	fs.String("account", "", "messages sent by this `account`")
	fs.String("from-domain", "", "messages from this `domain`")
	fs.String("to-domain", "", "recipients at this `domain`")
}

// holdRule runs `queue holdrule add|list|rm`.
func (h *Handles) holdRule(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return &ctl.UsageError{Msg: "usage: queue holdrule add|list|rm"}
	}
	switch args[0] {
	case "add":
		fs := flag.NewFlagSet("queue holdrule add", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		HoldRuleAddFlags(fs)
		if err := fs.Parse(args[1:]); err != nil {
			return &ctl.UsageError{Msg: err.Error()}
		}
		if fs.NArg() > 0 {
			return &ctl.UsageError{Msg: fmt.Sprintf("unexpected arguments %q", fs.Args())}
		}
		get := func(name string) string { return fs.Lookup(name).Value.String() }
		if a := get("account"); a != "" {
			if err := h.checkAccount(a); err != nil {
				return err
			}
		}
		r, err := h.Queue.AddHoldRule(ctx, get("account"), get("from-domain"), get("to-domain"))
		if err != nil {
			return &ctl.UsageError{Msg: err.Error()}
		}
		fmt.Fprintf(out, "hold rule %d added: %s\n", r.ID, describeRule(r))
		return nil
	case "list":
		if len(args) > 1 {
			return &ctl.UsageError{Msg: "usage: queue holdrule list"}
		}
		rules, err := h.Queue.HoldRules(ctx)
		if err != nil {
			return err
		}
		if len(rules) == 0 {
			fmt.Fprintln(out, "no hold rules")
			return nil
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tACCOUNT\tFROM DOMAIN\tTO DOMAIN\tCREATED")
		for _, r := range rules {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", r.ID, orAny(r.Account), orAny(r.FromDomain), orAny(r.ToDomain), r.Created.Local().Format(time.DateTime))
		}
		return tw.Flush()
	case "rm":
		if len(args) != 2 {
			return &ctl.UsageError{Msg: "usage: queue holdrule rm ID"}
		}
		id, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil {
			return &ctl.UsageError{Msg: fmt.Sprintf("invalid rule id %q", args[1])}
		}
		if err := h.Queue.RemoveHoldRule(ctx, id); errors.Is(err, queue.ErrNotFound) {
			return &ctl.UsageError{Msg: err.Error()}
		} else if err != nil {
			return err
		}
		fmt.Fprintf(out, "hold rule %d removed; what it held stays held (mta queue release)\n", id)
		return nil
	}
	return &ctl.UsageError{Msg: fmt.Sprintf("unknown command %q", "queue holdrule "+args[0])}
}

// describeRule says what a rule holds.
func describeRule(r queue.HoldRule) string {
	if r.Account == "" && r.FromDomain == "" && r.ToDomain == "" {
		return "every new message"
	}
	var parts []string
	if r.Account != "" {
		parts = append(parts, "sent by "+r.Account)
	}
	if r.FromDomain != "" {
		parts = append(parts, "from @"+r.FromDomain)
	}
	if r.ToDomain != "" {
		parts = append(parts, "to @"+r.ToDomain)
	}
	return "new mail " + strings.Join(parts, ", ")
}

func orAny(s string) string {
	if s == "" {
		return "*"
	}
	return s
}
