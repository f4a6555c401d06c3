package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchyard-mta/switchyard/core/ctl"
	"github.com/switchyard-mta/switchyard/core/store"
)

// suppression runs `suppression add|list|rm`.
func (h *Handles) suppression(ctx context.Context, verb string, args []string, out io.Writer) error {
	switch verb {
	case "add":
		if len(args) < 2 {
			return &ctl.UsageError{Msg: "usage: suppression add ACCOUNT ADDRESS [REASON]"}
		}
		if err := h.checkAccount(args[0]); err != nil {
			return err
		}
		reason := strings.Join(args[2:], " ")
		if !validText(reason) {
			return &ctl.UsageError{Msg: "the reason has control characters or is over 400 bytes"}
		}
		added, err := h.Store.AddSuppression(ctx, args[0], args[1], reason, false, time.Now())
		if errors.Is(err, store.ErrBadAddress) {
			return &ctl.UsageError{Msg: err.Error()}
		} else if err != nil {
			return err
		}
		if added {
			fmt.Fprintf(out, "%s: %s suppressed\n", args[0], args[1])
		} else {
			fmt.Fprintf(out, "%s: %s was suppressed already\n", args[0], args[1])
		}
		return nil
	case "list":
		if len(args) > 1 {
			return &ctl.UsageError{Msg: "usage: suppression list [ACCOUNT]"}
		}
		var name string
		if len(args) == 1 {
			if err := h.checkAccount(args[0]); err != nil {
				return err
			}
			name = args[0]
		}
		l, err := h.Store.Suppressions(ctx, name)
		if err != nil {
			return err
		}
		if len(l) == 0 {
			fmt.Fprintln(out, "no suppressed addresses")
			return nil
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ACCOUNT\tADDRESS\tADDED\tBY\tREASON")
		for _, s := range l {
			by := "operator"
			if s.Auto {
				by = "failure"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Account, s.Address, s.Created.Local().Format(time.DateTime), by, s.Reason)
		}
		return tw.Flush()
	case "rm":
		if len(args) != 2 {
			return &ctl.UsageError{Msg: "usage: suppression rm ACCOUNT ADDRESS"}
		}
		if err := h.checkAccount(args[0]); err != nil {
			return err
		}
		err := h.Store.RemoveSuppression(ctx, args[0], args[1])
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrBadAddress) {
			return &ctl.UsageError{Msg: err.Error()}
		} else if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: %s no longer suppressed\n", args[0], args[1])
		return nil
	}
	return &ctl.UsageError{Msg: fmt.Sprintf("unknown command %q", "suppression "+verb)}
}

// validText reports whether s fits a list's column: at most 400 bytes,
// no control characters.
func validText(s string) bool {
	return len(s) <= 400 && !strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f })
}
