// Package policydkimsign is policy-dkimsign, a Switchyard policy plugin that
// signs submitted mail with DKIM (RFC 6376): at the data stage of an
// authenticated submission it reads the message once and returns one
// DKIM-Signature header field per key of the signing domain, for the core to
// prepend.
//
// # Configuration
//
// One instance per signing setup, put on submission listeners:
//
//	[policies.dkim]
//	plugin = "policy-dkimsign"
//	[[policies.dkim.config.keys]]
//	domain = "example.org"
//	selector = "2026e"
//	key_file = "dkim/example.org.2026e.key"  # Relative to mta.toml.
//	[[policies.dkim.config.keys]]
//	domain = "example.org"
//	selector = "2026r"
//	key_file = "dkim/example.org.2026r.key"
//	expiration = "720h"                      # Optional: x= (RFC 6376 §3.5).
//	headers = ["From", "To", "Subject", "Date"] # Optional: h=.
//
// A key is an ed25519 (RFC 8463) or RSA (1024 to 4096 bits) private key in
// a PEM file, as `mta dkim gen` writes it with the TXT record to publish.
// Several keys of one domain each sign: an ed25519 and an RSA signature side
// by side, as RFC 8463 §5 advises while verifiers learn ed25519.
//
// # Contract with the core
//
//   - Stages: StageData only, with BodyFull. Other stages get
//     ActionContinue.
//   - Only authenticated submission is signed (CheckRequest.Submission): on
//     an inbound MX listener the plugin would put the domain's signature on
//     whatever anyone sends, so it does not sign there.
//   - The signing domain (d=) is the domain of the one address of the
//     message's one From field (RFC 5322 §3.6.2), or the nearest parent
//     domain with keys: mail from a.b.example.org is signed with the keys
//     of example.org, which DMARC's relaxed alignment accepts (RFC 7489
//     §3.1.1). The plugin does not check that the account may use that
//     address.
//   - Signatures: rsa-sha256 or ed25519-sha256, relaxed/relaxed
//     canonicalization (RFC 6376 §3.4), t= the signing time, x= t plus the
//     key's expiration if set. h= lists each configured header field as
//     often as the message has it, and From once more (RFC 6376 §5.4.2), so
//     a From added in transit breaks the signature. The default list is
//     RFC 6376 §5.4.1's with the MIME and List-* fields (RFC 2369, RFC 2919,
//     RFC 8058 §4).
//   - Verdict: always ActionContinue, with the DKIM-Signature fields (each
//     ending in CRLF) in PrependHeaders, one per key, in configuration
//     order. No From field, several, several addresses in it, an address
//     that does not parse, or a domain without keys: ActionContinue without
//     headers, logged at debug level.
//   - Errors: a message that cannot be read, or larger than CheckRequest.Size
//     plus 64 KiB (or 1 GiB), or with a header section over 1 MiB, is an
//     error: the instance's on_error applies.
//   - Keys are read at Configure; a missing or unusable key file is a
//     ConfigError of keys[i].key_file. The plugin table
//     [plugins.policy-dkimsign.config] takes no keys.
package policydkimsign

import (
	"log/slog"

	"github.com/switchyard-mta/switchyard/sdk"
)

// Main serves the plugin to the core that started it; it does not return.
func Main() {
	s := newSigner(sdk.NewLogger(slog.LevelInfo))
	sdk.Serve(&sdk.Plugin{
		Name:    "policy-dkimsign",
		Version: "0.1.0",
		Policy:  policyInfo,
		Checker: s,
	})
}
