// Package authcrammd5 is auth-crammd5, a Switchyard mechanism plugin for
// CRAM-MD5 (RFC 2195): the server sends a challenge
// "<random.timestamp@hostname>", the client answers with its username and
// the HMAC-MD5 (RFC 2104) of the challenge keyed with its password.
//
// # Why a plugin
//
// The core builds in only PLAIN and LOGIN, over TLS, with a password hash.
// CRAM-MD5 cannot work from such a hash: the server must hold a
// password-equivalent secret, here the HMAC-MD5 inner and outer pad states
// (whoever has them can log in, though not learn the password). It rests on
// MD5 and lacks mutual authentication and channel binding; its successor
// DIGEST-MD5 was retired for the same family of reasons (RFC 6331), and SCRAM
// replaces both. Some clients still only speak it, so it ships as a plugin:
// operators who need it enable it, and only then do accounts get CRAM-MD5
// secrets when their password is set.
//
// # Contract with the core
//
//   - Secrets: Derive returns one secret, "CRAM-MD5"; an exchange asks
//     Host.Secret(username, "CRAM-MD5") with the username as the client sent it.
//   - Encoding: "CRAM-MD5$" followed by 64 lower-case hex digits: the MD5
//     state (four little-endian 32-bit words) after the key⊕opad block, then
//     after the key⊕ipad block, read and restored through crypto/md5's
//     MarshalBinary. The password is not stored. The layout is Dovecot's
//     {CRAM-MD5} scheme, so such a value imports with the prefix replaced.
//   - The challenge names Configuration.Hostname from the plugin's Configure.
//   - Outcomes: every failure a client can cause is a failed AuthOutcome;
//     a failing Host lookup or an unreadable stored secret is a temporary one.
//
// Unknown users are checked against a per-process fake secret, with the same
// work as known ones, before they fail. The plugin table
// [plugins.auth-crammd5.config] takes no keys.
package authcrammd5

import (
	"log/slog"

	"github.com/switchyard-mta/switchyard/sdk"
)

// Main serves the plugin to the core that started it; it does not return.
func Main() {
	m := newMechanism(sdk.NewLogger(slog.LevelInfo))
	sdk.Serve(&sdk.Plugin{
		Name:       "auth-crammd5",
		Version:    "0.1.0",
		Mechanisms: []string{mechanismName},
		Mechanism:  m,
		Configurer: m,
	})
}
