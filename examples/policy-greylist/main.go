// Command policy-greylist is an example Switchyard policy plugin, written as
// a third party would: it imports only the sdk. It greylists (RFC 6647) as
// postgrey does: the first attempt of a triplet — the client's network, the
// reverse-path and the recipient — is refused with a temporary error, and a
// retry after a delay passes, as a real MTA retries (RFC 5321 §4.5.4.1) and
// most spamware does not.
//
//	[plugins.policy-greylist]
//	path = "bin/examples/policy-greylist"
//	[policies.greylist]
//	plugin = "policy-greylist"
//	on_error = "accept"
//	[policies.greylist.config]
//	delay = "5m"
//
// # Contract with the core
//
//   - Stages: StageRcpt only, one check per recipient (the last of
//     CheckRequest.Recipients); no message body.
//   - Triplet: the client's address from ConnInfo.RemoteAddr, grouped into
//     its /24 (IPv4) or /64 (IPv6) network, IPv4 in IPv6 unmapped; MAIL FROM
//     and the recipient, lower-cased. The null reverse-path is a sender too.
//   - Verdicts: a triplet seen for the first time, or retried before delay
//     (default 5m), gets ActionTempfail 451 4.7.1 "Greylisted, please try
//     again later". A retry after delay and within retry_window (default
//     48h) of the first attempt gets ActionContinue, and so does every
//     attempt for lifetime (default 35 days) after the last one that passed.
//     A triplet that waited too long, or was not seen for lifetime, starts
//     over.
//   - Never greylisted: authenticated submission (CheckRequest.Submission or
//     Account) and clients in whitelist_networks.
//   - Errors, for which the instance's on_error applies: an instance not
//     configured, a RemoteAddr that is no IP address, an address over 512
//     bytes. Failing to write the state is logged, not an error: the
//     decisions go on from memory.
//   - State: one file per instance in Configuration.DataDir, an append-only
//     log compacted at start and as it grows (see store.go), at most
//     max_entries triplets (default 100000); a file that is not a state
//     file is moved aside to *.corrupt and the state starts empty.
//
// The plugin table [plugins.policy-greylist.config] takes no keys.
package main

import (
	"log/slog"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
)

func main() {
	sdk.Serve(newPlugin(newChecker(sdk.NewLogger(slog.LevelInfo), time.Now)))
}

// newPlugin is what the binary serves: c checks at the rcpt stage, and
// takes the plugin's table as well as its instances'.
func newPlugin(c *checker) *sdk.Plugin {
	return &sdk.Plugin{
		Name:       "policy-greylist",
		Version:    "1.0.0",
		Policy:     &sdk.PolicyInfo{Stages: []sdk.Stage{sdk.StageRcpt}, Body: sdk.BodyNone},
		Checker:    c,
		Configurer: c,
	}
}
