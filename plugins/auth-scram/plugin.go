// Package authscram is auth-scram, a Switchyard mechanism plugin for SCRAM
// (RFC 5802): SCRAM-SHA-256-PLUS, SCRAM-SHA-256 (RFC 7677), SCRAM-SHA-1-PLUS
// and SCRAM-SHA-1, on github.com/xdg-go/scram. The -PLUS variants bind the
// exchange to the TLS connection with tls-exporter (RFC 9266), tls-unique or
// tls-server-end-point (RFC 5929), whichever the client names in its GS2
// header.
//
// # Contract with the core
//
//   - Advertising: the core advertises the -PLUS variants exactly when the
//     connection runs TLS, and passes that connection's sdk.TLSInfo with its
//     binding data (Exporter on TLS 1.3, Unique on TLS 1.2, ServerEndPoint
//     always). The plugin cannot see the advertisement, so it assumes this:
//     over TLS, a client flag "y" means the client missed the -PLUS names and
//     is refused as a downgrade (RFC 5802 §6).
//   - Secrets: Derive returns two secrets, "SCRAM-SHA-256" and "SCRAM-SHA-1";
//     each -PLUS variant uses the secret of its base mechanism. An exchange of
//     SCRAM-SHA-256 or SCRAM-SHA-256-PLUS asks Host.Secret(username,
//     "SCRAM-SHA-256"), likewise for SHA-1. The username is the client's
//     "n=" value with "=2C" and "=3D" decoded, taken as UTF-8 without
//     further preparation (RFC 5802 §5.1 allows either).
//   - Encoding: a secret is the RFC 5803 authPassword form
//     "SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>".
//     The leading scheme names the format; the password is never stored.
//   - Outcomes: every failure a client can cause is a failed AuthOutcome;
//     a failing Host lookup or an unreadable stored secret is a temporary
//     one. On success, FinalData is the server-final-message "v=...", which
//     the core sends as the last challenge or with 235 (RFC 4954 §4).
//
// Unknown users get a salt derived from the lower-cased username with a
// per-process random key and the configured iteration count, and the
// exchange runs to the end before it fails, so they look like known ones.
//
// Configuration, [plugins.auth-scram.config]:
//
//	iterations = 4096 # PBKDF2 iterations for new secrets; at least 4096 (RFC 7677 §4).
package authscram

import (
	"log/slog"

	"github.com/switchyard-mta/switchyard/sdk"
)

// Main serves the plugin to the core that started it; it does not return.
func Main() {
	m := newMechanism(sdk.NewLogger(slog.LevelInfo))
	sdk.Serve(&sdk.Plugin{
		Name:       "auth-scram",
		Version:    "0.1.0",
		Mechanisms: mechanismNames,
		Mechanism:  m,
		Configurer: m,
	})
}
