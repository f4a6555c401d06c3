// Package authtlsclient is auth-tlsclient, a Switchyard mechanism plugin for
// login by TLS client certificate: SASL EXTERNAL (RFC 4422 Appendix A) over
// the connection's TLS, and pre-authentication before any command (an IMAP
// PREAUTH greeting, RFC 9051 §7.1.4; an SMTP submission session that needs
// no AUTH).
//
// Only the certificate's public key counts: the core asks for a client
// certificate on its login listeners and accepts any, unverified (no CA,
// no expiry), and the TLS handshake proves the client holds the private
// key. The operator registers keys with `mta tlspubkey add`; the plugin
// finds them with Host.TLSPublicKey by the SHA-256 of the certificate's
// SubjectPublicKeyInfo. A key per device can be removed alone, and the
// login cannot be passed on to another connection, as a password can.
//
// # Contract with the core
//
//   - EXTERNAL: the client's one response (or initial response) is its
//     authorization identity. Empty: the key's login address. Otherwise it
//     must be one of the key's account's addresses (TLSKey.Addresses,
//     compared without regard to case), and becomes the login. No client
//     certificate, an unknown key, or another identity is a failed
//     AuthOutcome; a failing Host lookup a temporary one.
//   - PreAuth succeeds for a known key, except on IMAP connections when
//     the key has NoIMAPPreauth: those log in with AUTHENTICATE EXTERNAL.
//   - The core announces EXTERNAL only where a certificate was presented
//     (SMTP) or its key is known (IMAP), and restricts every other
//     mechanism on such a connection to the key's account.
//
// The plugin table [plugins.auth-tlsclient.config] takes no keys.
package authtlsclient

import (
	"log/slog"

	"github.com/switchyard-mta/switchyard/sdk"
)

// Main serves the plugin to the core that started it; it does not return.
func Main() {
	m := &mechanism{log: sdk.NewLogger(slog.LevelInfo)}
	sdk.Serve(&sdk.Plugin{
		Name:       "auth-tlsclient",
		Version:    "0.1.0",
		Mechanisms: []string{mechanismName},
		Mechanism:  m,
		Configurer: m,
	})
}
