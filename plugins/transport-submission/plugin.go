// Package transportsubmission is transport-submission, a Switchyard
// transport plugin that relays queued messages to a smarthost: plain SMTP
// (RFC 5321), submission with STARTTLS (RFC 6409, RFC 3207) or submissions
// over implicit TLS (RFC 8314), authenticating with SMTP AUTH (RFC 4954):
// SCRAM-SHA-256 and SCRAM-SHA-1, bound to TLS in their -PLUS variants,
// CRAM-MD5, PLAIN or LOGIN. The SMTP and SASL client is sdk/smtpclient.
// Connections are pooled and reused per configured instance.
package transportsubmission

import (
	"log/slog"

	"github.com/switchyard-mta/switchyard/sdk"
)

// Main serves the plugin to the core that started it; it does not return.
func Main() {
	t := newTransport(sdk.NewLogger(slog.LevelInfo))
	sdk.Serve(&sdk.Plugin{Name: "transport-submission", Version: "0.1.0", Transport: t})
}
