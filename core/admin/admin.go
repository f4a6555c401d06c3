// Package admin runs the administrative commands of mta (account passwd,
// queue list, plugin list, tlspubkey, suppression) on a server's data: in the running server, which
// serves them on its control socket (core/ctl), or opened directly when no
// server runs.
package admin

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/ctl"
	"github.com/switchyard-mta/switchyard/core/pluginhost"
	"github.com/switchyard-mta/switchyard/core/queue"
	"github.com/switchyard-mta/switchyard/core/store"
)

// Handles are what administrative commands act on: those of the running
// server through the control socket, or opened directly when none runs.
type Handles struct {
	Config *config.Config
	Store  *store.Store
	Queue  *queue.Queue
	// Plugins derive mechanism secrets for `account passwd`, and are
	// listed by `plugin list`. Nil when no server runs, unless the command
	// started them (StartPlugins).
	Plugins *pluginhost.Manager

	ownPlugins bool // Started by StartPlugins.
	// router is the queue's, for queue filters by transport: made when
	// first needed, by one of the commands that may run at once.
	routerOnce sync.Once
	router     queue.Router
}

// Open opens the data of cfg for administrative commands while no server
// runs. Close releases it.
func Open(ctx context.Context, cfg *config.Config) (*Handles, error) {
	st, err := store.Open(ctx, cfg.DataDir)
	if err != nil {
		return nil, err
	}
	q, err := queue.Open(ctx, filepath.Join(cfg.DataDir, "queue"), queue.Options{})
	if err != nil {
		st.Close()
		return nil, err
	}
	return &Handles{Config: cfg, Store: st, Queue: q}, nil
}

// StartPlugins starts the configured plugins for a command run while no
// server runs, such as `account passwd`, which needs the mechanism plugins
// to derive secrets. Close stops them.
func (h *Handles) StartPlugins(ctx context.Context, log *slog.Logger) error {
	m, err := pluginhost.Start(ctx, pluginhost.Options{Config: h.Config, Log: log})
	if err != nil {
		return pluginhost.ConfigErrors(h.Config, err)
	}
	h.Plugins, h.ownPlugins = m, true
	return nil
}

// Close closes what Open and StartPlugins opened.
func (h *Handles) Close() {
	if h.ownPlugins {
		h.Plugins.Close()
	}
	h.Queue.Close()
	h.Store.Close()
}

// Handle runs one administrative command (a ctl.Handler).
func (h *Handles) Handle(ctx context.Context, req ctl.Request, out io.Writer) error {
	words := strings.Join(req.Args[:min(2, len(req.Args))], " ")
	args := req.Args[min(2, len(req.Args)):]
	switch words {
	case "account passwd":
		return h.passwd(ctx, args, req.Stdin)
	case "queue list":
		return h.queueList(ctx, args, out)
	case "plugin list":
		return h.pluginList(out)
	case "alias list":
		return h.aliasList(args, out)
	case "queue show":
		return h.queueShow(ctx, args, out)
	case "queue reschedule":
		return h.queueReschedule(ctx, args, out)
	case "queue hold":
		return h.queueChange(ctx, args, out, QueueChangeFlags, "held", func(*flag.FlagSet) (func(context.Context, string) (bool, error), error) {
			return h.Queue.Hold, nil
		})
	case "queue holdrule":
		return h.holdRule(ctx, args, out)
	case "queue retired":
		return h.queueRetired(ctx, args, out)
	case "queue fail":
		return h.queueChange(ctx, args, out, QueueChangeFlags, "failed", func(*flag.FlagSet) (func(context.Context, string) (bool, error), error) {
			return h.Queue.Fail, nil
		})
	case "queue drop":
		return h.queueChange(ctx, args, out, QueueChangeFlags, "dropped", func(*flag.FlagSet) (func(context.Context, string) (bool, error), error) {
			return func(ctx context.Context, id string) (bool, error) { return true, h.Queue.Drop(ctx, id) }, nil
		})
	case "queue release":
		return h.queueChange(ctx, args, out, QueueChangeFlags, "released", func(*flag.FlagSet) (func(context.Context, string) (bool, error), error) {
			return h.Queue.Release, nil
		})
	}
	if verb, ok := strings.CutPrefix(words, "tlspubkey "); ok {
		return h.tlsPubKey(ctx, verb, args, req.Stdin, out)
	}
	if verb, ok := strings.CutPrefix(words, "suppression "); ok {
		return h.suppression(ctx, verb, args, out)
	}
	return &ctl.UsageError{Msg: fmt.Sprintf("unknown command %q", words)}
}

func (h *Handles) passwd(ctx context.Context, args []string, stdin []byte) error {
	if len(args) != 1 {
		return &ctl.UsageError{Msg: "usage: account passwd ACCOUNT (password on standard input)"}
	}
	account := args[0]
	if err := h.checkAccount(account); err != nil {
		return err
	}
	pw, _, _ := strings.Cut(string(stdin), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if len(pw) < 8 {
		return &ctl.UsageError{Msg: "password must be at least 8 characters"}
	}
	return SetPassword(ctx, h.Store, h.Plugins, account, pw)
}

// checkAccount makes an account not in the configuration an input error.
func (h *Handles) checkAccount(name string) error {
	if _, ok := h.Config.Accounts[name]; !ok {
		return &ctl.UsageError{Msg: fmt.Sprintf("no account %q in %s", name, h.Config.File)}
	}
	return nil
}

func (h *Handles) queueList(ctx context.Context, args []string, out io.Writer) error {
	f, fs, err := h.queueFilter(args, QueueListFlags)
	if err != nil {
		return err
	}
	msgs, queued, err := h.Queue.Select(ctx, f, h.transportOf)
	if err != nil {
		return err
	}
	if flagBool(fs, "json") {
		return writeQueueJSON(out, msgs)
	}
	if len(msgs) == 0 {
		if f.Empty() {
			fmt.Fprintln(out, "queue is empty")
		} else {
			fmt.Fprintf(out, "no queued message matches (%d queued)\n", queued)
		}
		return nil
	}
	return writeRecipientRows(out, "ID\tQUEUED\tFROM\tSIZE\tRECIPIENT\tSTATE\tATTEMPTS\tNEXT\tLAST RESULT", msgs,
		func(i int) []string {
			m := msgs[i]
			return []string{m.ID, m.Queued.Local().Format(time.DateTime), orNull(m.From), strconv.FormatInt(m.Size, 10)}
		},
		func(i int, r queue.Rcpt) []string {
			next := ""
			switch {
			case r.State == queue.Failing:
				next = "DSN " + r.NotifyAt.Local().Format(time.DateTime) // The DSN could not be queued yet.
			case !r.NextAttempt.IsZero():
				next = r.NextAttempt.Local().Format(time.DateTime)
			}
			state := r.State.String()
			if msgs[i].DeliveringTo(r) {
				state = "delivering"
			}
			return []string{r.Address, state, strconv.Itoa(r.Attempts), next, lastResult(r)}
		})
}

// writeRecipientRows writes the table with header of msgs: a row for each
// recipient, with the recipient's columns (rcptCols) after those of its
// message (msgCols, of msgs[i]), which only the message's first row shows.
func writeRecipientRows(out io.Writer, header string, msgs []queue.MsgInfo, msgCols func(i int) []string, rcptCols func(i int, r queue.Rcpt) []string) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for i, m := range msgs {
		cols := msgCols(i)
		for k, r := range m.Recipients {
			if k == 1 {
				clear(cols)
			}
			fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t"+strings.Join(rcptCols(i, r), "\t"))
		}
	}
	return tw.Flush()
}

// lastResult summarises a recipient's last attempt.
func lastResult(r queue.Rcpt) string {
	if r.LastAttempt.IsZero() {
		return ""
	}
	s := strings.TrimSpace(fmt.Sprintf("%s %s", r.Last.EnhancedCode, r.Last.Text))
	if r.Last.Code != 0 {
		s = fmt.Sprintf("%d %s", r.Last.Code, s)
	}
	if r.Last.RemoteHost != "" {
		s += " (" + r.Last.RemoteHost + ")"
	}
	return s
}

func orNull(from string) string {
	if from == "" {
		return "<>"
	}
	return from
}

func (h *Handles) pluginList(out io.Writer) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLUGIN\tVERSION\tSERVES\tSTATE\tPID\tRESTARTS\tPATH")
	if h.Plugins == nil {
		for name, p := range h.Config.Plugins {
			fmt.Fprintf(tw, "%s\t\t\tnot running\t\t\t%s\n", name, p.Path)
		}
		return tw.Flush()
	}
	for _, s := range h.Plugins.Status() {
		version, serves := "", ""
		if d := s.Description; d != nil {
			version = d.Version
			var kinds []string
			if d.Transport {
				kinds = append(kinds, "transport")
			}
			if len(d.Mechanisms) > 0 {
				kinds = append(kinds, "mechanisms "+strings.Join(d.Mechanisms, ","))
			}
			if d.Policy != nil {
				kinds = append(kinds, "policy")
			}
			serves = strings.Join(kinds, "; ")
		}
		state := string(s.State)
		if s.LastError != "" && s.State != pluginhost.StateRunning {
			state += " (" + s.LastError + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", s.Name, version, serves, state, s.PID, s.Restarts, s.Path)
	}
	return tw.Flush()
}

// SetPassword sets account's password with the secrets every mechanism
// plugin derives from it (none if plugins is nil), so that SCRAM and
// CRAM-MD5 work with it and the password itself is stored only hashed.
func SetPassword(ctx context.Context, st *store.Store, plugins *pluginhost.Manager, account, password string) error {
	var derived map[string][]byte
	if plugins != nil {
		var err error
		if derived, err = plugins.Derive(ctx, account, password); err != nil {
			return fmt.Errorf("password of %s not changed: %w", account, err)
		}
	}
	return st.SetPassword(ctx, account, password, derived)
}
