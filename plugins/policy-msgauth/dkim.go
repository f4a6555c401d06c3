package policymsgauth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"unicode"

	"github.com/emersion/go-msgauth/dkim"
)

const dkimSignatureName = "DKIM-Signature"

// dkimResult is the verification of one DKIM-Signature field (RFC 6376
// §6), with what the Authentication-Results field reports of it
// (RFC 8601 §2.7.1, RFC 6008).
type dkimResult struct {
	value     string // pass, fail, temperror, permerror.
	domain    string // d=, in lowercase A-labels if valid.
	selector  string // s=.
	algorithm string // a=, lowercase.
	sigPrefix string // The first 8 characters of b= (RFC 6008 §4).
	reason    string
}

// sigTags returns the tags of a DKIM-Signature value (a tag-list,
// RFC 6376 §3.2): the first of each name, its value without surrounding
// white space. Malformed tag-specs are skipped: go-msgauth judges the
// signature; these only name it.
func sigTags(v string) map[string]string {
	tags := map[string]string{}
	for _, spec := range strings.Split(v, ";") {
		name, val, ok := strings.Cut(spec, "=")
		name = strings.TrimSpace(name)
		if _, seen := tags[name]; ok && !seen {
			tags[name] = strings.TrimSpace(val)
		}
	}
	return tags
}

// stripSpace removes the white space that folding puts in tag values.
func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}

// Bounds on the work go-msgauth does on a header section, which grows with
// the product of two sizes the peer chooses.
const (
	// maxFoldCost bounds header.foldCost: go-msgauth joins a field's lines
	// one at a time. A large folded field costs some 10^5.
	maxFoldCost = 1 << 26
	// maxPickCost bounds, over signatures, signed fields (h=) × header
	// octets: go-msgauth scans the header for each signed field. Ten
	// signatures of 20 fields over a 64 KiB header cost some 10^7.
	maxPickCost = 1 << 28
)

// readers are the bufio.Readers that verifications read messages through.
var readers = sync.Pool{New: func() any { return bufio.NewReader(nil) }}

// verifyDKIM verifies the first max DKIM-Signature fields of msg, whose
// header section is h, in order, with keys looked up through l. more
// reports signatures beyond max, which are ignored. A header that would
// cost too much to verify gets permerror for every signature.
func verifyDKIM(ctx context.Context, l *lookups, msg []byte, h header, max int) (results []dkimResult, more bool) {
	var signed int64
	for _, f := range h.fields {
		if !strings.EqualFold(f.name, dkimSignatureName) {
			continue
		}
		if len(results) == max {
			more = true
			break
		}
		t := sigTags(f.value)
		r := dkimResult{
			selector:  stripSpace(t["s"]),
			algorithm: strings.ToLower(stripSpace(t["a"])),
			sigPrefix: stripSpace(t["b"]),
		}
		r.domain = stripSpace(t["d"])
		if d, ok := asciiDomain(r.domain); ok {
			r.domain = d
		}
		if len(r.sigPrefix) > 8 {
			r.sigPrefix = r.sigPrefix[:8]
		}
		results = append(results, r)
		signed += int64(strings.Count(t["h"], ":") + 1)
	}
	if len(results) == 0 {
		return nil, false
	}
	if h.foldCost > maxFoldCost || signed*int64(h.size) > maxPickCost {
		for i := range results {
			results[i].value, results[i].reason = "permerror", "header too large to verify"
		}
		return results, more
	}
	var body io.Reader = bytes.NewReader(msg)
	if !h.complete {
		// A message of header fields only: the body is empty, and go-msgauth
		// wants the empty line.
		end := "\r\n"
		if !bytes.HasSuffix(msg, []byte("\n")) {
			end = "\r\n\r\n"
		}
		body = io.MultiReader(body, strings.NewReader(end))
	}
	// go-msgauth wraps what it is given in a bufio.Reader unless it is one
	// already: a pooled one saves that 4 KB per verification.
	br := readers.Get().(*bufio.Reader)
	br.Reset(body)
	verifs, err := dkim.VerifyWithOptions(br, &dkim.VerifyOptions{LookupTXT: l.txtFunc(ctx), MaxVerifications: max})
	br.Reset(nil)
	readers.Put(br)
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) || len(verifs) != len(results) {
		// Not a failure of a signature but of the message as a whole.
		for i := range results {
			results[i].value, results[i].reason = "permerror", "message not readable"
		}
		return results, more
	}
	for i, v := range verifs {
		r := &results[i]
		switch {
		case v.Err == nil:
			r.value = "pass"
		case dkim.IsTempFail(v.Err):
			r.value = "temperror"
		case dkim.IsPermFail(v.Err):
			r.value = "permerror"
		default: // A signature or body hash that does not verify.
			r.value = "fail"
		}
		switch {
		case r.value == "temperror":
			// The error would name the resolver; the reader needs less.
			r.reason = "key unavailable: temporary DNS failure"
		case v.Err != nil:
			// Without the DNS error's detail: header.s and header.d say
			// where the key was looked for.
			r.reason, _, _ = strings.Cut(strings.TrimPrefix(v.Err.Error(), "dkim: "), ": lookup ")
		}
		if d, ok := asciiDomain(v.Domain); ok {
			r.domain = d
		}
	}
	return results, more
}
