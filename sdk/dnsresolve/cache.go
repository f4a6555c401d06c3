package dnsresolve

import (
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Bounds of cached answers.
const (
	// maxCacheTTL caps how long an answer is kept, whatever its TTL.
	maxCacheTTL = time.Hour
	// maxNegativeTTL caps the time a name error or an empty answer is kept
	// (RFC 2308 §5 takes it from the SOA; most zones give minutes).
	maxNegativeTTL = 5 * time.Minute
)

// Cache keeps answers for their TTL (RFC 1035 §3.2.1), negative ones as
// RFC 2308 §5 says, so that a busy check does not ask the resolver the
// same question for every message. It holds at most a fixed number of
// answers. A Cache is safe for concurrent use; its zero value is unusable:
// use NewCache.
type Cache struct {
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
}

type cacheKey struct {
	name  string // Lower case, absolute.
	qtype uint16
}

type cacheEntry struct {
	msg     *dns.Msg
	expires time.Time
}

// Sizes of a cache, for plugins' dns_cache option: the default holds a
// busy server's senders or destinations for their TTLs in a few MB.
const (
	DefaultCacheSize = 10_000
	MaxCacheSize     = 1_000_000
)

// NewCache returns a cache of at most max answers.
func NewCache(max int) *Cache {
	return &Cache{max: max, now: time.Now, entries: map[cacheKey]cacheEntry{}}
}

// get returns the cached answer to the question, if fresh. It is shared:
// the resolver only reads answers.
func (c *Cache) get(fqdn string, qtype uint16) *dns.Msg {
	k := cacheKey{strings.ToLower(fqdn), qtype}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return nil
	}
	if !c.now().Before(e.expires) {
		delete(c.entries, k)
		return nil
	}
	return e.msg
}

// put keeps msg, an answer with rcode success or name error, for as long
// as its records allow: the least TTL of its answer, or for a negative
// answer the SOA's (RFC 2308 §5); an answer that allows no time, or a
// negative one without SOA, is not kept.
func (c *Cache) put(fqdn string, qtype uint16, msg *dns.Msg) {
	ttl, ok := cacheTTL(msg)
	if !ok || ttl <= 0 {
		return
	}
	k := cacheKey{strings.ToLower(fqdn), qtype}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		c.evict(now)
	}
	c.entries[k] = cacheEntry{msg: msg, expires: now.Add(ttl)}
}

// evict drops expired answers, and if the cache is still full, about an
// eighth of it, arbitrary ones (Go's map order).
func (c *Cache) evict(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	drop := len(c.entries) - c.max + max(1, c.max/8)
	for k := range c.entries {
		if drop <= 0 {
			break
		}
		delete(c.entries, k)
		drop--
	}
}

// cacheTTL returns how long msg may be kept.
func cacheTTL(msg *dns.Msg) (time.Duration, bool) {
	if len(msg.Answer) > 0 && msg.Rcode == dns.RcodeSuccess {
		least := msg.Answer[0].Header().Ttl
		for _, rr := range msg.Answer[1:] {
			least = min(least, rr.Header().Ttl)
		}
		return min(time.Duration(least)*time.Second, maxCacheTTL), true
	}
	for _, rr := range msg.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			ttl := min(soa.Hdr.Ttl, soa.Minttl)
			return min(time.Duration(ttl)*time.Second, maxNegativeTTL), true
		}
	}
	return 0, false
}
