package mtasts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Source tells where Cache.Get found a policy.
type Source int

// Sources of a policy.
const (
	SourceNone    Source = iota // No policy applies.
	SourceCache                 // The cached policy, still valid.
	SourceFetched               // Freshly fetched, and now cached.
)

// String returns "none", "cache" or "fetched", for logs.
func (s Source) String() string {
	switch s {
	case SourceCache:
		return "cache"
	case SourceFetched:
		return "fetched"
	}
	return "none"
}

// Cache keeps policies on disk, one JSON file per domain, with the id of
// the record that announced it, the fetch time and the expiry (fetch time
// plus max_age), as RFC 8461 §5.1 asks. Files are replaced atomically, so
// several processes or goroutines may share a Dir. The zero Log discards
// messages.
type Cache struct {
	Dir string       // Directory of <domain>.json files; created when needed.
	Log *slog.Logger // Fallbacks to the cache and write failures; nil: none.
}

// cacheEntry is the on-disk form of a cached policy.
type cacheEntry struct {
	Domain   string    `json:"domain"`
	RecordID string    `json:"record_id"` // Of the TXT record when fetched.
	Fetched  time.Time `json:"fetched"`
	Expires  time.Time `json:"expires"` // Fetched + max_age.
	Policy   string    `json:"policy"`  // The policy file, re-parsed on load.
}

// Get returns the policy that applies to domain at now (§5.1):
//
//   - The TXT record at _mta-sts.<domain> is looked up. If its id equals the
//     cached policy's and that policy has not expired, the cached one is used
//     without fetching.
//   - Otherwise (no cache, expired, or another id) the policy is fetched and
//     stored with the record's id.
//   - If the record is absent, invalid or its lookup fails, or the fetch
//     fails, an unexpired cached policy still applies: a policy is valid
//     until max_age even if the record disappears, so an attacker
//     suppressing DNS cannot remove it (§5.1, §10.2).
//   - With neither a usable live policy nor a valid cache the error wraps
//     ErrNoPolicy and the cause (ErrNoRecord, ErrTemporary or ErrPolicy):
//     deliver as though the domain had no MTA-STS (§5). Callers may choose to
//     defer on ErrTemporary instead.
//
// A policy in mode none is returned like any other; callers treat it as
// no policy (§8.3). domain must be an ASCII (A-label) domain name.
func (c *Cache) Get(ctx context.Context, domain string, lookupTXT LookupTXTFunc, fetch FetchFunc, now time.Time) (*Policy, Source, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if !validDomainFile(domain) {
		return nil, SourceNone, fmt.Errorf("%w: invalid domain %q", ErrNoPolicy, domain)
	}
	cached := c.load(domain)
	if cached != nil && !now.Before(cached.expires) {
		cached = nil
	}

	rec, err := LookupRecord(ctx, lookupTXT, domain)
	if err != nil {
		if cached != nil {
			c.log("mta-sts record unavailable, using cached policy", domain, err)
			return cached.policy, SourceCache, nil
		}
		return nil, SourceNone, fmt.Errorf("%w: %s: %w", ErrNoPolicy, domain, err)
	}
	if cached != nil && cached.recordID == rec.ID {
		return cached.policy, SourceCache, nil
	}

	p, err := fetch(ctx, domain)
	if err != nil {
		if cached != nil {
			c.log("mta-sts policy fetch failed, using cached policy", domain, err)
			return cached.policy, SourceCache, nil
		}
		return nil, SourceNone, fmt.Errorf("%w: %s: %w", ErrNoPolicy, domain, err)
	}
	if err := c.store(domain, rec.ID, now, p); err != nil {
		// The fetched policy applies regardless; the next Get fetches again.
		c.log("storing mta-sts policy", domain, err)
	}
	return p, SourceFetched, nil
}

// loaded is a cache entry read back from disk.
type loaded struct {
	recordID string
	expires  time.Time
	policy   *Policy
}

// load returns the cached entry of domain, or nil if there is none or it
// cannot be read (a damaged entry is as good as none; it gets replaced).
func (c *Cache) load(domain string) *loaded {
	buf, err := os.ReadFile(c.path(domain))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.log("reading mta-sts cache", domain, err)
		}
		return nil
	}
	var e cacheEntry
	if err := json.Unmarshal(buf, &e); err != nil {
		c.log("parsing mta-sts cache", domain, err)
		return nil
	}
	p, err := ParsePolicy([]byte(e.Policy))
	if err != nil {
		c.log("parsing cached mta-sts policy", domain, err)
		return nil
	}
	return &loaded{recordID: e.RecordID, expires: e.Expires, policy: p}
}

// store writes the entry of domain atomically: a temporary file in Dir,
// synced, then renamed over the old one.
func (c *Cache) store(domain, recordID string, now time.Time, p *Policy) error {
	e := cacheEntry{
		Domain:   domain,
		RecordID: recordID,
		Fetched:  now.UTC(),
		Expires:  now.Add(p.MaxAge).UTC(),
		Policy:   p.String(),
	}
	buf, err := json.MarshalIndent(e, "", "\t")
	if err != nil {
		return fmt.Errorf("encode cache entry: %w", err)
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("create cache dir: %w", err)
	}
	f, err := os.CreateTemp(c.Dir, ".tmp-"+domain+"-*")
	if err != nil {
		return fmt.Errorf("create cache file: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(append(buf, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, c.path(domain))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write cache file: %w", err)
	}
	return nil
}

func (c *Cache) path(domain string) string {
	return filepath.Join(c.Dir, domain+".json")
}

func (c *Cache) log(msg, domain string, err error) {
	if c.Log != nil {
		c.Log.Warn(msg, slog.String("domain", domain), slog.Any("err", err))
	}
}

// validDomainFile reports whether domain is a lower-case ASCII name safe to
// use as a file name: labels of letters, digits, "-" and "_".
func validDomainFile(domain string) bool {
	if domain == "" || len(domain) > 253 {
		return false
	}
	for _, l := range strings.Split(domain, ".") {
		if l == "" {
			return false
		}
		for _, c := range []byte(l) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
