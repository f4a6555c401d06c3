package authscram

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/xdg-go/scram"
	"github.com/xdg-go/stringprep"
)

// saltLen is the length of new salts, also used for unknown users' fake ones.
const saltLen = 16

// Derive returns a "SCRAM-SHA-256" and a "SCRAM-SHA-1" secret for password,
// each with its own random salt and the configured iteration count.
func (m *mechanism) Derive(ctx context.Context, account, password string) (map[string][]byte, error) {
	if password == "" {
		return nil, errors.New("auth-scram: empty password")
	}
	// Normalize(password) is SASLprep (RFC 5802 §2.2). A password SASLprep
	// rejects (e.g. unassigned code points) is used as is, as clients that
	// skip preparation send it.
	if p, err := stringprep.SASLprep.Prepare(password); err == nil {
		password = p
	}
	iters := m.config().iterations
	secrets := map[string][]byte{}
	for _, f := range families {
		salt := make([]byte, saltLen)
		rand.Read(salt)
		c, err := f.hash.NewClientUnprepped("", password, "")
		if err != nil {
			return nil, fmt.Errorf("auth-scram: %s: %w", f.name, err)
		}
		sc, err := c.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: iters})
		if err != nil {
			return nil, fmt.Errorf("auth-scram: deriving %s keys: %w", f.name, err)
		}
		secrets[f.name] = encodeSecret(f.name, sc)
	}
	return secrets, nil
}

// encodeSecret returns the RFC 5803 authPassword form of sc:
// "SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>", values in base64.
func encodeSecret(scheme string, sc scram.StoredCredentials) []byte {
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Appendf(nil, "%s$%d:%s$%s:%s", scheme, sc.Iters, b64([]byte(sc.Salt)), b64(sc.StoredKey), b64(sc.ServerKey))
}

// decodeSecret parses a secret of family f written by encodeSecret.
func decodeSecret(f family, b []byte) (scram.StoredCredentials, error) {
	var sc scram.StoredCredentials
	parts := strings.Split(string(b), "$")
	if len(parts) != 3 || parts[0] != f.name {
		return sc, fmt.Errorf("stored secret is not in %s$<iterations>:<salt>$<stored key>:<server key> form", f.name)
	}
	iterStr, saltStr, ok1 := strings.Cut(parts[1], ":")
	storedStr, serverStr, ok2 := strings.Cut(parts[2], ":")
	if !ok1 || !ok2 {
		return sc, errors.New("stored secret lacks a ':' separator")
	}
	iters, err := strconv.Atoi(iterStr)
	if err != nil || iters <= 0 {
		return sc, fmt.Errorf("stored secret has a bad iteration count %q", iterStr)
	}
	dec := base64.StdEncoding.DecodeString
	salt, err1 := dec(saltStr)
	stored, err2 := dec(storedStr)
	server, err3 := dec(serverStr)
	if err := errors.Join(err1, err2, err3); err != nil {
		return sc, fmt.Errorf("stored secret: %w", err)
	}
	size := f.hash().Size()
	if len(salt) == 0 || len(stored) != size || len(server) != size {
		return sc, fmt.Errorf("stored secret has a bad salt or key length for %s", f.name)
	}
	sc.KeyFactors = scram.KeyFactors{Salt: string(salt), Iters: iters}
	sc.StoredKey, sc.ServerKey = stored, server
	return sc, nil
}
