package store

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// authCache remembers recently verified logins, as Dovecot's auth_cache does,
// so a client that logs in for every message costs one bcrypt check per
// cacheTTL rather than one per session. It holds a keyed HMAC of the
// password, never the password, with a key that lives only in this process.
// An entry counts only while the stored hash is the one it was verified
// against: setting a password invalidates it.
type authCache struct {
	key [32]byte

	mu       sync.Mutex
	entries  map[string]authEntry // By account.
	inflight map[flightKey]*flight
}

// A flight is a password check in progress; concurrent checks of the same
// credentials wait for it rather than each running bcrypt, as when a client
// opens many sessions at once.
type flightKey struct {
	account string
	mac     [sha256.Size]byte
	hash    string
}

type flight struct {
	done chan struct{}
	ok   bool
}

type authEntry struct {
	mac     [sha256.Size]byte
	hash    string // The bcrypt hash the password was verified against.
	expires time.Time
}

const (
	cacheTTL     = 5 * time.Minute
	cacheEntries = 10000 // Beyond this the cache starts afresh.
)

func newAuthCache() *authCache {
	c := &authCache{entries: map[string]authEntry{}, inflight: map[flightKey]*flight{}}
	rand.Read(c.key[:])
	return c
}

func (c *authCache) mac(account, password string) (sum [sha256.Size]byte) {
	h := hmac.New(sha256.New, c.key[:])
	h.Write([]byte(account))
	h.Write([]byte{0})
	h.Write([]byte(password))
	copy(sum[:], h.Sum(nil))
	return sum
}

// verified reports whether account logged in with password against hash
// within cacheTTL.
func (c *authCache) verified(account, password, hash string) bool {
	c.mu.Lock()
	e, ok := c.entries[account]
	c.mu.Unlock()
	if !ok || e.hash != hash || time.Now().After(e.expires) {
		return false
	}
	m := c.mac(account, password)
	return hmac.Equal(m[:], e.mac[:])
}

// add remembers a successful verification.
func (c *authCache) add(account, password, hash string) {
	e := authEntry{mac: c.mac(account, password), hash: hash, expires: time.Now().Add(cacheTTL)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= cacheEntries {
		clear(c.entries)
	}
	c.entries[account] = e
}

// check reports whether password is account's, whose stored hash is hash:
// from the cache, from a check of the same credentials in progress, or by
// compare, whose success it remembers.
func (c *authCache) check(account, password, hash string, compare func() bool) bool {
	if c.verified(account, password, hash) {
		return true
	}
	k := flightKey{account, c.mac(account, password), hash}
	c.mu.Lock()
	if f, ok := c.inflight[k]; ok {
		c.mu.Unlock()
		<-f.done
		return f.ok
	}
	f := &flight{done: make(chan struct{})}
	c.inflight[k] = f
	c.mu.Unlock()

	f.ok = compare()
	if f.ok {
		c.add(account, password, hash)
	}
	c.mu.Lock()
	delete(c.inflight, k)
	c.mu.Unlock()
	close(f.done)
	return f.ok
}
