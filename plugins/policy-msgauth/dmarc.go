package policymsgauth

import (
	"context"
	"errors"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/switchyard-mta/switchyard/sdk/dnsresolve"
)

// DMARC policies (RFC 7489 §6.3, "p").
const (
	policyNone       = "none"
	policyQuarantine = "quarantine"
	policyReject     = "reject"
)

// dmarcRecord is a DMARC policy record (RFC 7489 §6.3).
type dmarcRecord struct {
	p     string // Requested policy.
	sp    string // For subdomains; "" when absent (p applies).
	adkim byte   // 'r' (relaxed, the default) or 's' (strict).
	aspf  byte
	pct   int // 0 to 100; default 100.
}

var errPolicy = errors.New("dmarc record without a valid p= or with an invalid sp=")

// parseDMARC parses a TXT record. isDMARC is false for a record that does
// not begin with v=DMARC1, which policy discovery discards (RFC 7489
// §6.6.3 step 2). Tag names are case-insensitive, the version is not
// (§6.3 "v"); unknown tags are ignored (§6.3), and so are the values of
// adkim, aspf and pct that are not valid, which keep their defaults. A
// missing or invalid p=, or an invalid sp=, is read as p=none if rua= has a
// valid URI, and is errPolicy otherwise (§6.6.3 step 6).
func parseDMARC(txt string) (rec *dmarcRecord, isDMARC bool, err error) {
	specs := strings.Split(txt, ";")
	name, val, _ := strings.Cut(specs[0], "=")
	if !strings.EqualFold(strings.Trim(name, " \t"), "v") || strings.Trim(val, " \t") != "DMARC1" {
		return nil, false, nil
	}
	tags := map[string]string{}
	for _, spec := range specs[1:] {
		name, val, ok := strings.Cut(spec, "=")
		name = strings.ToLower(strings.Trim(name, " \t"))
		if _, seen := tags[name]; ok && !seen {
			tags[name] = strings.Trim(val, " \t")
		}
	}
	rec = &dmarcRecord{adkim: 'r', aspf: 'r', pct: 100}
	p, pOK := policy(tags["p"])
	sp, spOK := policy(tags["sp"])
	if _, ok := tags["sp"]; !ok {
		sp, spOK = "", true
	}
	if pOK && spOK {
		rec.p, rec.sp = p, sp
	} else if validURIList(tags["rua"]) {
		rec.p = policyNone
	} else {
		return nil, true, errPolicy
	}
	if v := strings.ToLower(tags["adkim"]); v == "s" {
		rec.adkim = 's'
	}
	if v := strings.ToLower(tags["aspf"]); v == "s" {
		rec.aspf = 's'
	}
	if n, err := strconv.Atoi(tags["pct"]); err == nil && n >= 0 && n <= 100 && tags["pct"][0] != '+' {
		rec.pct = n
	}
	return rec, true, nil
}

// policy returns the policy named by v, and whether it is one.
func policy(v string) (string, bool) {
	switch v = strings.ToLower(v); v {
	case policyNone, policyQuarantine, policyReject:
		return v, true
	}
	return "", false
}

// validURIList reports whether the comma-separated list of DMARC URIs
// (RFC 7489 §6.4: a URI, optionally "!" and a size) has a valid one.
func validURIList(v string) bool {
	for _, u := range strings.Split(v, ",") {
		u, _, _ = strings.Cut(strings.Trim(u, " \t"), "!")
		if p, err := url.Parse(u); err == nil && p.Scheme != "" && p.Opaque+p.Host+p.Path != "" {
			return true
		}
	}
	return false
}

// orgDomain returns the Organizational Domain of d (RFC 7489 §3.2): one
// label more than its public suffix, or d itself if it has no more.
func orgDomain(d string) string {
	if o, err := publicsuffix.EffectiveTLDPlusOne(d); err == nil {
		return o
	}
	return d
}

// aligned reports whether the authenticated domain d is aligned with the
// author domain from: equal in strict mode; of the same Organizational
// Domain in relaxed mode (RFC 7489 §3.1).
func aligned(d, from string, mode byte) bool {
	if d == "" {
		return false
	}
	return d == from || mode == 'r' && orgDomain(d) == orgDomain(from)
}

// dmarcLookup is the outcome of policy discovery (RFC 7489 §6.6.3).
type dmarcLookup struct {
	status    string       // "" (a record was found), none, temperror or permerror.
	rec       *dmarcRecord // Nil unless status is "".
	domain    string       // Where the record is: the author or its Organizational Domain.
	reason    string
	authentic bool // The answer with the record was DNSSEC-authentic.
}

// lookupDMARC discovers the policy for the author domain from (RFC 7489
// §6.6.3): the record at _dmarc.<from>, or if there is none, the one at
// _dmarc.<Organizational Domain>. More than one record, or an unusable one,
// ends discovery.
func lookupDMARC(ctx context.Context, r *dnsresolve.Resolver, from string) dmarcLookup {
	l := lookupDMARCAt(ctx, r, from)
	if l.status == policyNone && l.reason == "" {
		if org := orgDomain(from); org != from {
			return lookupDMARCAt(ctx, r, org)
		}
	}
	return l
}

func lookupDMARCAt(ctx context.Context, r *dnsresolve.Resolver, domain string) dmarcLookup {
	l := dmarcLookup{domain: domain}
	txts, res, err := r.LookupTXT(ctx, "_dmarc."+domain)
	switch {
	case errors.Is(err, dnsresolve.ErrNotFound), errors.Is(err, dnsresolve.ErrInvalidName):
	case err != nil:
		l.status, l.reason = "temperror", "policy lookup: temporary DNS failure"
		return l
	}
	l.authentic = res.Authentic
	var found int
	for _, txt := range txts {
		rec, isDMARC, err := parseDMARC(txt)
		if !isDMARC {
			continue
		}
		found++
		if err != nil {
			l.status, l.reason = "permerror", "invalid policy record at _dmarc."+domain
		} else {
			l.rec = rec
		}
	}
	switch {
	case found == 0:
		l.status = policyNone
	case found > 1:
		// RFC 7489 §6.6.3 step 5: no DMARC processing.
		l.status, l.reason, l.rec = "permerror", "more than one policy record at _dmarc."+domain, nil
	}
	return l
}

// dmarcOutcome is the DMARC result of a message (RFC 7489 §11.2) and the
// policy applied to it.
type dmarcOutcome struct {
	status      string // none, pass, fail, temperror, permerror.
	from        string // Author domain; "" if unknown.
	policy      string // The policy requested for from: p or sp; "" without a record.
	disposition string // What the message gets: none, quarantine or reject.
	sampled     bool   // pct chose this message for the policy.
	reason      string
	authentic   bool // The policy record was DNSSEC-authentic.
}

// evaluateDMARC applies the policy found by l for the author domain from
// to the SPF result of the MAIL FROM identity and the DKIM results
// (RFC 7489 §4.2, §6.6.2): pass if either passed for an aligned domain.
// Without a pass, a temperror of an aligned identity, which might have
// passed, is a temperror. percent draws a number in [0,100) for pct.
func evaluateDMARC(from string, l dmarcLookup, mfrom spfResult, dkims []dkimResult, percent func() int) dmarcOutcome {
	o := dmarcOutcome{status: l.status, from: from, disposition: policyNone, reason: l.reason, authentic: l.authentic}
	if l.rec == nil {
		return o
	}
	rec := l.rec
	o.policy = rec.p
	if l.domain != from && rec.sp != "" {
		o.policy = rec.sp // RFC 7489 §6.3 "sp".
	}
	tempfail := false
	if aligned(mfrom.domain, from, rec.aspf) {
		switch mfrom.value {
		case "pass":
			o.status = "pass"
			return o
		case "temperror":
			tempfail = true
		}
	}
	for _, d := range dkims {
		if aligned(d.domain, from, rec.adkim) {
			switch d.value {
			case "pass":
				o.status = "pass"
				return o
			case "temperror":
				tempfail = true
			}
		}
	}
	if tempfail {
		o.status, o.reason = "temperror", "an aligned identifier could not be verified"
		return o
	}
	o.status = "fail"
	// Sampling (RFC 7489 §6.6.4): a message pct does not choose gets the
	// next policy down, quarantine for reject and none for quarantine.
	o.sampled = rec.pct >= 100 || rec.pct > 0 && percent() < rec.pct
	switch {
	case o.policy == policyReject && o.sampled:
		o.disposition = policyReject
	case o.policy == policyReject, o.policy == policyQuarantine && o.sampled:
		o.disposition = policyQuarantine
	}
	return o
}
