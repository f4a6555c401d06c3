package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchyard-mta/switchyard/core/ctl"
	"github.com/switchyard-mta/switchyard/core/queue"
	"github.com/switchyard-mta/switchyard/sdk"
)

// queueShow runs `queue show ID`: the envelope and every recipient with
// its attempts.
func (h *Handles) queueShow(ctx context.Context, args []string, out io.Writer) error {
	if len(args) != 1 {
		return &ctl.UsageError{Msg: "usage: queue show ID"}
	}
	m, err := h.Queue.Get(ctx, args[0])
	if errors.Is(err, queue.ErrNotFound) {
		return &ctl.UsageError{Msg: fmt.Sprintf("no queued message %q (mta queue retired show shows one that left the queue)", args[0])}
	} else if err != nil {
		return err
	}
	history, err := h.Queue.History(ctx, m.ID)
	if err != nil {
		return err
	}
	return writeMessage(out, m, nil, history)
}

// queueRetired runs `queue retired list [FILTER]` and `queue retired show ID`.
func (h *Handles) queueRetired(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return &ctl.UsageError{Msg: "usage: queue retired list|show"}
	}
	switch args[0] {
	case "list":
		f, fs, err := h.queueFilter(args[1:], QueueListFlags)
		if err != nil {
			return err
		}
		retired, total, err := h.Queue.RetiredList(ctx, f)
		if err != nil {
			return err
		}
		msgs := make([]queue.MsgInfo, len(retired))
		for i, r := range retired {
			msgs[i] = r.Info()
		}
		if flagBool(fs, "json") {
			return writeQueueJSON(out, msgs)
		}
		if len(msgs) == 0 {
			fmt.Fprintf(out, "no retired message matches (%d retired; [queue] keep_retired keeps them)\n", total)
			return nil
		}
		return writeRecipientRows(out, "ID\tQUEUED\tRETIRED\tFROM\tRECIPIENT\tSTATE\tATTEMPTS\tLAST RESULT", msgs,
			func(i int) []string {
				m := msgs[i]
				return []string{m.ID, m.Queued.Local().Format(time.DateTime), retired[i].Retired.Local().Format(time.DateTime), orNull(m.From)}
			},
			func(i int, r queue.Rcpt) []string {
				state := r.State.String()
				if retired[i].Dropped && r.State != queue.Delivered && r.State != queue.Failed {
					state = "dropped"
				}
				return []string{r.Address, state, strconv.Itoa(r.Attempts), lastResult(r)}
			})
	case "show":
		if len(args) != 2 {
			return &ctl.UsageError{Msg: "usage: queue retired show ID"}
		}
		r, err := h.Queue.RetiredMsg(ctx, args[1])
		if errors.Is(err, queue.ErrNotFound) {
			return &ctl.UsageError{Msg: fmt.Sprintf("no retired message %q", args[1])}
		} else if err != nil {
			return err
		}
		history, err := h.Queue.History(ctx, args[1])
		if err != nil {
			return err
		}
		return writeMessage(out, r.Info(), &r, history)
	}
	return &ctl.UsageError{Msg: fmt.Sprintf("unknown command %q", "queue retired "+args[0])}
}

// writeMessage writes message m, queued or retired (r), and every
// recipient with its attempts in history.
func writeMessage(out io.Writer, m queue.MsgInfo, r *queue.Retired, history []queue.Attempt) error {
	tw := tabwriter.NewWriter(out, 0, 4, 1, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\n", m.ID)
	fmt.Fprintf(tw, "queued:\t%s (%s ago)\n", m.Queued.Local().Format(time.DateTime), time.Since(m.Queued).Round(time.Second))
	if r != nil {
		how := "left the queue"
		if r.Dropped {
			how = "dropped by the operator"
		}
		fmt.Fprintf(tw, "retired:\t%s, %s; kept until %s\n", r.Retired.Local().Format(time.DateTime), how, r.Expires.Local().Format(time.DateTime))
	}
	fmt.Fprintf(tw, "account:\t%s\n", m.Account)
	fmt.Fprintf(tw, "from:\t%s\n", orNull(m.From))
	fmt.Fprintf(tw, "message-id:\t%s\n", m.MessageID)
	fmt.Fprintf(tw, "subject:\t%s\n", decodeSubject(m.Subject))
	fmt.Fprintf(tw, "size:\t%d\n", m.Size)
	var opts []string
	for _, o := range []struct {
		on   bool
		text string
	}{{m.Options.SMTPUTF8, "SMTPUTF8"}, {m.Options.RequireTLS, "REQUIRETLS"}, {m.Options.Body != "", "BODY=" + m.Options.Body},
		{m.Options.EnvelopeID != "", "ENVID=" + m.Options.EnvelopeID}, {m.Options.DSNReturn != "", "RET=" + m.Options.DSNReturn}} {
		if o.on {
			opts = append(opts, o.text)
		}
	}
	fmt.Fprintf(tw, "parameters:\t%s\n", strings.Join(opts, " "))
	for _, rc := range m.Recipients {
		fmt.Fprintf(tw, "\nrecipient:\t%s\n", rc.Address)
		state := rc.State.String()
		if m.DeliveringTo(rc) {
			state = "delivering"
		}
		fmt.Fprintf(tw, "  state:\t%s, %d attempts\n", state, rc.Attempts)
		if rc.State == queue.Pending && !rc.NextAttempt.IsZero() {
			fmt.Fprintf(tw, "  next attempt:\t%s\n", rc.NextAttempt.Local().Format(time.DateTime))
		}
		if len(rc.Notify) > 0 || rc.ORcpt != "" {
			fmt.Fprintf(tw, "  dsn:\tNOTIFY=%s ORCPT=%s\n", strings.Join(rc.Notify, ","), rc.ORcpt)
		}
		for _, a := range history {
			for _, res := range a.Results {
				if res.Address == rc.Address {
					writeAttempt(tw, m, rc, a, res)
				}
			}
		}
	}
	return tw.Flush()
}

// writeAttempt writes one attempt of recipient rc of m, with its result.
func writeAttempt(tw io.Writer, m queue.MsgInfo, rc queue.Rcpt, a queue.Attempt, res sdk.RecipientResult) {
	fmt.Fprintf(tw, "  attempt:\t%s via %s", a.Start.Local().Format("2006-01-02 15:04:05.000"), a.Transport)
	switch {
	case !a.Ended && m.DeliveringTo(rc):
		fmt.Fprintf(tw, ", in progress\n")
		return
	case !a.Ended:
		fmt.Fprintf(tw, ", interrupted: the server stopped during it, so it did not count\n")
		return
	}
	fmt.Fprintf(tw, ", %s\n", a.Duration.Round(time.Millisecond))
	s := strings.TrimSpace(res.EnhancedCode + " " + res.Text)
	if res.Code != 0 {
		s = fmt.Sprintf("%d %s", res.Code, s)
	}
	fmt.Fprintf(tw, "    result:\t%s %s\n", res.Status, s)
	if res.RemoteHost != "" || res.RemoteIP != "" {
		fmt.Fprintf(tw, "    remote:\t%s %s\n", res.RemoteHost, res.RemoteIP)
	}
	if t := res.TLS; t.Version != "" {
		fmt.Fprintf(tw, "    tls:\t%s %s, %s\n", t.Version, t.Cipher, t.Verification)
	} else if res.RemoteHost != "" || res.RemoteIP != "" {
		fmt.Fprintf(tw, "    tls:\tnone\n")
	}
}

// decodeSubject decodes RFC 2047 encoded words, for the operator; the
// subject as sent if they do not decode.
func decodeSubject(s string) string {
	d, err := new(mime.WordDecoder).DecodeHeader(s)
	if err != nil {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, d)
}
