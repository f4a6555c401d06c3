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
	// TLSPublicKey finds the account a TLS client public key logs in,
	// by SHA-256 of its SubjectPublicKeyInfo.
	TLSPublicKey(ctx context.Context, spkiSHA256 []byte) (*Credential, error)
}

// Credential is the answer of a Host lookup.
type Credential struct {
	Account string
	Login   string
	Secret  []byte
}
