package sdk

import (
	"context"
	"errors"
)

// ErrNotFound is returned by Host lookups that find nothing.
var ErrNotFound = errors.New("sdk: not found")

// Host is what a plugin may ask the core. Plugins keep no copy of accounts.
type Host interface {
	// Secret returns the secret stored for a user and mechanism, as derived
	// by the plugin's Derive. username is what the client gave: an account
	// name or one of its addresses.
	Secret(ctx context.Context, username, mechanism string) (*Credential, error)
	// TLSPublicKey finds a TLS client public key known to the core (mta
	// tlspubkey) by the SHA-256 of its SubjectPublicKeyInfo, or fails with
	// ErrNotFound.
	TLSPublicKey(ctx context.Context, spkiSHA256 []byte) (*TLSKey, error)
}

// Credential is the answer of a Host lookup.
type Credential struct {
	Account string
	Login   string
	Secret  []byte
}

// TLSKey is a TLS client public key known to the core: whom it logs in, and
// how.
type TLSKey struct {
	Account string
	Login   string // The address it logs in as.
	Name    string // The operator's name for the key, for log lines.
	// Addresses are the account's: the authorization identities an
	// EXTERNAL exchange with this key may name.
	Addresses []string
	// NoIMAPPreauth: IMAP connections with this key start unauthenticated
	// and log in with AUTHENTICATE EXTERNAL, not with a PREAUTH greeting.
	NoIMAPPreauth bool
}
