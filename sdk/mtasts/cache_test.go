package mtasts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// fakeWorld is the DNS and HTTPS state Cache.Get sees in a test.
type fakeWorld struct {
	txt      map[string][]string // By name: TXT records.
	txtErr   error               // Returned by every lookup when set.
	policies map[string]*Policy  // By domain: what fetch returns.
	fetchErr error               // Returned by every fetch when set.
	fetches  int
}

func (w *fakeWorld) lookupTXT(ctx context.Context, name string) ([]string, error) {
	if w.txtErr != nil {
		return nil, w.txtErr
	}
	return w.txt[name], nil
}

func (w *fakeWorld) fetch(ctx context.Context, domain string) (*Policy, error) {
	w.fetches++
	if w.fetchErr != nil {
		return nil, w.fetchErr
	}
	p, ok := w.policies[domain]
	if !ok {
		return nil, fmt.Errorf("%w: no server for %s", ErrPolicy, domain)
	}
	return p, nil
}

func TestCacheGet(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	day := 24 * time.Hour
	enforce := &Policy{Version: "STSv1", Mode: ModeEnforce, MX: []string{"mx.example.com"}, MaxAge: 7 * day}
	testing2 := &Policy{Version: "STSv1", Mode: ModeTesting, MX: []string{"*.example.com"}, MaxAge: 7 * day}
	none := &Policy{Version: "STSv1", Mode: ModeNone, MaxAge: day}
	const name = "_mta-sts.example.com."
	errServfail := errors.New("servfail")

	// Steps run in order against one cache directory; each sets the world.
	steps := []struct {
		name        string
		now         time.Time
		txt         []string
		txtErr      error
		policy      *Policy // What the server serves; nil: fetching fails.
		wantSource  Source
		wantMode    Mode    // Of the returned policy, if any.
		wantErr     []error // All must match, with ErrNoPolicy.
		wantFetches int     // Total so far.
	}{
		{name: "no record, no cache", now: t0, policy: enforce, wantErr: []error{ErrNoRecord}},
		{name: "temporary dns failure, no cache", now: t0, txtErr: errServfail, policy: enforce, wantErr: []error{ErrTemporary}},
		{name: "record, fetch fails, no cache", now: t0, txt: []string{"v=STSv1; id=1;"}, wantErr: []error{ErrPolicy}, wantFetches: 1},
		{name: "first fetch", now: t0, txt: []string{"v=STSv1; id=1;"}, policy: enforce, wantSource: SourceFetched, wantMode: ModeEnforce, wantFetches: 2},
		{name: "id unchanged: no refetch", now: t0.Add(day), txt: []string{"v=STSv1; id=1;"}, policy: testing2, wantSource: SourceCache, wantMode: ModeEnforce, wantFetches: 2},
		{name: "record gone, cache valid", now: t0.Add(2 * day), policy: testing2, wantSource: SourceCache, wantMode: ModeEnforce, wantFetches: 2},
		{name: "record invalid, cache valid", now: t0.Add(2 * day), txt: []string{"v=STSv1; id=;"}, policy: testing2, wantSource: SourceCache, wantMode: ModeEnforce, wantFetches: 2},
		{name: "temporary dns failure, cache valid", now: t0.Add(2 * day), txtErr: errServfail, policy: testing2, wantSource: SourceCache, wantMode: ModeEnforce, wantFetches: 2},
		{name: "id changed, fetch fails, cache valid", now: t0.Add(3 * day), txt: []string{"v=STSv1; id=2;"}, wantSource: SourceCache, wantMode: ModeEnforce, wantFetches: 3},
		{name: "id changed: refetch", now: t0.Add(4 * day), txt: []string{"v=STSv1; id=2;"}, policy: testing2, wantSource: SourceFetched, wantMode: ModeTesting, wantFetches: 4},
		{name: "new id cached", now: t0.Add(5 * day), txt: []string{"v=STSv1; id=2;"}, policy: enforce, wantSource: SourceCache, wantMode: ModeTesting, wantFetches: 4},
		// The testing policy was fetched at t0+4d with a max_age of 7d.
		{name: "record gone, cache expired", now: t0.Add(11 * day), policy: enforce, wantErr: []error{ErrNoRecord}, wantFetches: 4},
		{name: "same id, cache expired: refetch", now: t0.Add(11 * day), txt: []string{"v=STSv1; id=2;"}, policy: none, wantSource: SourceFetched, wantMode: ModeNone, wantFetches: 5},
		{name: "mode none cached like others", now: t0.Add(11*day + time.Hour), txt: []string{"v=STSv1; id=2;"}, policy: enforce, wantSource: SourceCache, wantMode: ModeNone, wantFetches: 5},
		{name: "expired cache, fetch fails", now: t0.Add(13 * day), txt: []string{"v=STSv1; id=3;"}, wantErr: []error{ErrPolicy}, wantFetches: 6},
	}

	dir := t.TempDir()
	w := &fakeWorld{}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			w.txt = map[string][]string{name: st.txt}
			w.txtErr = st.txtErr
			w.policies = map[string]*Policy{}
			if st.policy != nil {
				w.policies["example.com"] = st.policy
			}
			// A new Cache on the same Dir each step: the disk is the state.
			c := &Cache{Dir: dir}
			p, src, err := c.Get(context.Background(), "Example.com.", w.lookupTXT, w.fetch, st.now)
			if w.fetches != st.wantFetches {
				t.Errorf("fetches = %d, want %d", w.fetches, st.wantFetches)
			}
			if src != st.wantSource {
				t.Errorf("source = %v, want %v", src, st.wantSource)
			}
			if st.wantErr != nil {
				if p != nil || !errors.Is(err, ErrNoPolicy) {
					t.Fatalf("Get = %+v, %v; want ErrNoPolicy", p, err)
				}
				for _, e := range st.wantErr {
					if !errors.Is(err, e) {
						t.Errorf("error %v does not wrap %v", err, e)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if p.Mode != st.wantMode {
				t.Fatalf("Get = %+v, want mode %s", p, st.wantMode)
			}
		})
	}

	// The file records the id, fetch time and expiry of the last fetch.
	buf, err := os.ReadFile(filepath.Join(dir, "example.com.json"))
	if err != nil {
		t.Fatal(err)
	}
	var e cacheEntry
	if err := json.Unmarshal(buf, &e); err != nil {
		t.Fatal(err)
	}
	fetched := t0.Add(11 * day)
	if e.Domain != "example.com" || e.RecordID != "2" || !e.Fetched.Equal(fetched) || !e.Expires.Equal(fetched.Add(day)) {
		t.Errorf("cache entry = %+v", e)
	}
	// Only the entry remains: temporary files were renamed.
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("cache dir has %d entries, want 1", len(ents))
	}
}

func TestCacheDamagedAndInvalid(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	dir := t.TempDir()
	pol := &Policy{Version: "STSv1", Mode: ModeEnforce, MX: []string{"mx.example.com"}, MaxAge: time.Hour}
	w := &fakeWorld{txt: map[string][]string{"_mta-sts.example.com.": {"v=STSv1; id=1;"}}, policies: map[string]*Policy{"example.com": pol}}
	c := &Cache{Dir: dir}

	// A damaged file is as good as none: the policy is fetched and the file replaced.
	path := filepath.Join(dir, "example.com.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, src, err := c.Get(context.Background(), "example.com", w.lookupTXT, w.fetch, t0); err != nil || src != SourceFetched {
		t.Fatalf("Get over damaged file = %v, %v", src, err)
	}
	if _, src, err := c.Get(context.Background(), "example.com", w.lookupTXT, w.fetch, t0); err != nil || src != SourceCache || w.fetches != 1 {
		t.Fatalf("Get after replacement = %v, %v, %d fetches", src, err, w.fetches)
	}

	// Domains that are not plain names never become paths.
	for _, d := range []string{"", "../example.com", "a/b", "a..b", "exa mple.com", ".."} {
		if _, _, err := c.Get(context.Background(), d, w.lookupTXT, w.fetch, t0); !errors.Is(err, ErrNoPolicy) {
			t.Errorf("Get(%q) = %v, want ErrNoPolicy", d, err)
		}
	}
	if w.fetches != 1 {
		t.Errorf("fetches = %d, want 1", w.fetches)
	}

	// A cache that cannot be written still yields the fetched policy.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	bad := &Cache{Dir: filepath.Join(file, "sub")}
	if p, src, err := bad.Get(context.Background(), "example.com", w.lookupTXT, w.fetch, t0); err != nil || src != SourceFetched || !p.Enforce() {
		t.Fatalf("Get with unwritable dir = %+v, %v, %v", p, src, err)
	}
}

// TestCacheFetchHTTPS runs Cache.Get with Fetcher against a real HTTPS server.
func TestCacheFetchHTTPS(t *testing.T) {
	ca := newTestCA(t)
	var requests atomic.Int32
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, rfcPolicy)
	})
	port, client := startPolicyServer(t, handler, ca.issue(t, "mta-sts.example.com"), ca.pool)
	lookup := func(ctx context.Context, name string) ([]string, error) {
		return []string{"v=STSv1; id=20160831085700Z;"}, nil
	}
	c := &Cache{Dir: t.TempDir()}
	now := time.Now()
	for i, want := range []Source{SourceFetched, SourceCache} {
		p, src, err := c.Get(context.Background(), "example.com", lookup, Fetcher(client, port), now)
		if err != nil || src != want || !p.MatchMX("backupmx.example.com") {
			t.Fatalf("Get #%d = %+v, %v, %v; want source %v", i, p, src, err, want)
		}
	}
	if requests.Load() != 1 {
		t.Errorf("%d requests, want 1", requests.Load())
	}
}
