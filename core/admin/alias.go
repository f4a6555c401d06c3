package admin

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/switchyard-mta/switchyard/core/ctl"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// aliasList runs `alias list [DOMAIN]`: the aliases of the local domains,
// or of one, with their members and settings.
func (h *Handles) aliasList(args []string, out io.Writer) error {
	if len(args) > 1 {
		return &ctl.UsageError{Msg: "usage: alias list [DOMAIN]"}
	}
	domains := slices.Sorted(maps.Keys(h.Config.Domains))
	if len(args) == 1 {
		d, err := mailaddr.ParseDomain(args[0])
		if err != nil || h.Config.Domains[d.Unicode] == nil {
			return &ctl.UsageError{Msg: fmt.Sprintf("no local domain %q in %s", args[0], h.Config.File)}
		}
		domains = []string{d.Unicode}
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	n := 0
	for _, d := range domains {
		aliases := h.Config.Domains[d].Aliases
		for _, name := range slices.Sorted(maps.Keys(aliases)) {
			al := aliases[name]
			if n == 0 {
				fmt.Fprintln(tw, "ALIAS\tMEMBERS\tPOST\tMEMBERS SEE MEMBERS\tMEMBERS SEND AS")
			}
			n++
			post := "members"
			if al.PostPublic {
				post = "anyone"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", al.Address, strings.Join(al.Members, ","), post, yesNo(al.ListMembers), yesNo(al.AllowMsgFrom))
		}
	}
	if n == 0 {
		fmt.Fprintln(out, "no aliases")
		return nil
	}
	return tw.Flush()
}
