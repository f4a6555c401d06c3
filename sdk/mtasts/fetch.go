package mtasts

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// MaxPolicySize is the largest policy body Fetch accepts; RFC 8461 §3.3 lets
// senders bound it and suggests 64 KB.
const MaxPolicySize = 64 * 1024

// FetchFunc fetches the policy of domain; see Fetcher.
type FetchFunc func(ctx context.Context, domain string) (*Policy, error)

// PolicyURL returns https://mta-sts.<domain>/.well-known/mta-sts.txt (§3.2),
// with an explicit port unless port is 0 or 443.
func PolicyURL(domain string, port int) string {
	host := "mta-sts." + strings.ToLower(strings.TrimSuffix(domain, "."))
	if port != 0 && port != 443 {
		host += ":" + strconv.Itoa(port)
	}
	return "https://" + host + "/.well-known/mta-sts.txt"
}

// Fetch GETs and parses the policy of domain (§3.3). The server must present
// a certificate valid for mta-sts.<domain> that verifies against the
// client's roots (its Transport's TLSClientConfig.RootCAs, or the system
// pool); redirects are not followed; the answer must be a 200 with Content-Type
// text/plain (§3.2) and at most MaxPolicySize bytes. A nil client means a
// default http.Client; the client is not modified. port 0 means 443. Use ctx
// for the timeout. Errors wrap ErrPolicy.
func Fetch(ctx context.Context, client *http.Client, domain string, port int) (*Policy, error) {
	var c http.Client
	if client != nil {
		c = *client
	}
	// "HTTP 3xx redirects MUST NOT be followed" (§3.3).
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	url := PolicyURL(domain, port)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrPolicy, url, err)
	}
	// "HTTP caching MUST NOT be used" (§3.3).
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: get %s: %w", ErrPolicy, url, err)
	}
	defer resp.Body.Close()
	// PKIX validation is required (§3.3); refuse a transport configured to skip it.
	if resp.TLS == nil || len(resp.TLS.VerifiedChains) == 0 {
		return nil, fmt.Errorf("%w: %s: certificate not verified", ErrPolicy, url)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: %s: http status %s", ErrPolicy, url, resp.Status)
	}
	ct := resp.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "text/plain" {
		return nil, fmt.Errorf("%w: %s: content type %q, want text/plain", ErrPolicy, url, ct)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrPolicy, url, err)
	}
	if len(body) > MaxPolicySize {
		return nil, fmt.Errorf("%w: %s: body exceeds %d bytes", ErrPolicy, url, MaxPolicySize)
	}
	p, err := ParsePolicy(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return p, nil
}

// Fetcher returns a FetchFunc calling Fetch with client and port, for
// Cache.Get.
func Fetcher(client *http.Client, port int) FetchFunc {
	return func(ctx context.Context, domain string) (*Policy, error) {
		return Fetch(ctx, client, domain, port)
	}
}
