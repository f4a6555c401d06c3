// Package policymsgauth is policy-msgauth, a Switchyard policy plugin for
// the inbound MX that verifies where a message comes from and says so in an
// Authentication-Results header field (RFC 8601): SPF (RFC 7208) for the
// MAIL FROM and HELO identities, DKIM signatures (RFC 6376, RFC 8463), DMARC
// (RFC 7489) for the author domain of the From field, and iprev (RFC 8601
// §3) for the client's address. A DMARC failure can reject or quarantine the
// message as its domain asks.
//
// # Contract with the core
//
//   - Stages: StageData only, with the whole message (sdk.BodyFull): one
//     RPC per message, everything computed then, the envelope (client
//     address, HELO, MAIL FROM) taken from the CheckRequest. A submission
//     (CheckRequest.Submission) gets ActionContinue and no checks: list the
//     plugin on the inbound MX listener only.
//   - Message: read into memory once, up to CheckRequest.Size and 64 KiB
//     more (64 MiB if no size is given); a larger message, or a client
//     address that is not "ip:port", is an error of the check, so the
//     instance's on_error applies.
//   - DNS: every lookup goes to the configured resolver (sdk/dnsresolve),
//     all of one message within `timeout`, and within the RPC's deadline
//     with a tenth of it to spare. A lookup that fails temporarily makes
//     its method's result temperror, and a temperror never rejects.
//     Whether the answers were DNSSEC-authentic (the AD bit of a trusted
//     resolver) is logged per method with log_checks; it changes no
//     result.
//
// # Verdicts
//
// DMARC decides; the other methods only inform the header field.
//
//   - dmarc=fail under p=reject (sp= for a subdomain whose policy comes
//     from its Organizational Domain): by `dmarc_fail`, ActionReject with
//     550 5.7.1 "message rejected by the DMARC policy of <domain>" (the
//     default), or ActionQuarantine.
//   - dmarc=fail under p=quarantine: ActionQuarantine.
//   - A message that pct= leaves out of the sample gets the next policy
//     down: quarantine for reject, none for quarantine (RFC 7489 §6.6.4).
//   - Everything else, p=none, no policy, temperror and permerror
//     included: ActionContinue.
//
// Every verdict carries the header field in Verdict.PrependHeaders, and in
// Verdict.DeleteHeaders the Authentication-Results fields of the message
// whose authserv-id is this server's hostname, which only this server may
// write (RFC 8601 §5). Index counts the fields of that name from 1 at the
// top of the header as it arrived, as the core's header rewrite does: a
// field is a line that begins with neither space nor tab and has a colon,
// its name what comes before the colon without trailing spaces and tabs,
// compared in lower case.
//
// # Header field
//
// The authserv-id is the server's hostname (Configuration.Hostname), then
// one result a line, folded under 78 characters where the parts allow, in
// US-ASCII, lines ending in CRLF; peer-given values are quoted where they
// are not tokens or domain names:
//
//	Authentication-Results: mx.example.org;
//		spf=pass smtp.mailfrom=example.com;
//		spf=none smtp.helo=mail.example.com;
//		dkim=pass header.d=example.com header.s=sel header.a=ed25519-sha256
//		  header.b=Zm9vYmFy;
//		dmarc=pass (p=reject dis=none) header.from=example.com;
//		iprev=pass (mail.example.com) policy.iprev=192.0.2.1
//
// The methods:
//
//   - spf: one result for MAIL FROM (smtp.mailfrom, its domain; for the
//     null reverse-path postmaster@<HELO>, RFC 7208 §2.4) and one for HELO
//     (smtp.helo, RFC 7208 §2.3); a name that is not a multi-label domain
//     gets none (RFC 7208 §4.3).
//   - dkim: one result per DKIM-Signature field, from the top, at most
//     `max_signatures` of them, with header.d, header.s, header.a and the
//     first 8 characters of b= (header.b, RFC 6008); none if unsigned. A
//     header section that would cost verification time quadratic in its
//     size (a field of very many lines, very many signed fields over a
//     large header) gets permerror for every signature.
//   - dmarc: header.from is the author domain; the comment gives the policy
//     requested (p=, or sp=) and what the message gets (dis=). Without exactly one From
//     field holding exactly one address there is no author domain, and the
//     result is permerror with the reason (RFC 7489 §6.6.1).
//   - iprev: pass when a PTR name of the client (at most 10 are tried) has
//     its address (the comment names it); fail when none has; permerror
//     without PTR records (RFC 8601 §2.7.3); policy.iprev is the address.
//
// # Configuration
//
// The plugin table [plugins.NAME.config] takes no keys. Each instance
// [policies.NAME.config] takes:
//
//   - resolver: the recursive resolver, "host:port". Default: the first
//     nameserver of /etc/resolv.conf.
//   - trust_ad: whether answers with the AD bit count as DNSSEC-authentic.
//     Default: true only for a loopback resolver (as transport-direct).
//   - dmarc_fail: "reject" (default) or "quarantine", for a DMARC failure
//     under p=reject.
//   - timeout: how long the DNS work of one message may take, e.g. "5s"
//     (the default); at most one minute.
//   - max_signatures: how many DKIM signatures are verified, 1 to 50;
//     default 10.
//   - log_checks: log a line per message checked, with every result
//     (default false: the Authentication-Results field has them).
//   - dns_cache: how many DNS answers are kept for their TTL (negative
//     ones at most 5 minutes), so that a sender's records are asked once,
//     not per message; 0 for none; default 10000.
package policymsgauth

import (
	"log/slog"

	"github.com/switchyard-mta/switchyard/sdk"
)

// Main serves the plugin to the core that started it; it does not return.
func Main() {
	c := newChecker(sdk.NewLogger(slog.LevelInfo))
	sdk.Serve(newPlugin(c))
}

// newPlugin describes the plugin serving c.
func newPlugin(c *checker) *sdk.Plugin {
	return &sdk.Plugin{
		Name:       "policy-msgauth",
		Version:    "0.1.0",
		Policy:     &sdk.PolicyInfo{Stages: []sdk.Stage{sdk.StageData}, Body: sdk.BodyFull},
		Checker:    c,
		Configurer: c,
	}
}
