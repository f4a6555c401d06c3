package policymsgauth

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/mail"
	"strings"
)

// field is a header field of the message as it arrived.
type field struct {
	// name is the text before the first colon with surrounding white space
	// removed (the whole line if there is no colon), as go-msgauth's dkim
	// reads it, so that both count DKIM-Signature fields alike.
	name string
	// value is what follows the colon, unfolded (RFC 5322 §2.2.3): the line
	// breaks of continuation lines removed, their white space kept.
	value string
	// key is the name as the core counts fields to delete (HeaderRef):
	// lowercase (strings.ToLower), before the colon, trailing spaces and
	// tabs removed, leading ones kept; "" for a line without a colon, which
	// the core does not count.
	key string
}

// header is the header section of a message (RFC 5322 §2.1).
type header struct {
	fields []field
	// complete reports whether the empty line that ends the section was
	// there; without it the whole message is header.
	complete bool
	// foldCost bounds the work of joining continuation lines one at a time,
	// as go-msgauth's dkim does: the sum over fields of lines × octets.
	foldCost int64
	size     int // Octets of the section.
}

// parseHeader splits the header section of msg into fields, up to the empty
// line that ends it (RFC 5322 §2.1). A line that begins with white space
// continues the field before it. Lines end in LF, with or without CR.
func parseHeader(msg []byte) header {
	var h header
	var fieldStart, valueStart, lines int
	finish := func(at int) {
		if len(h.fields) > 0 {
			h.fields[len(h.fields)-1].value = unfold(msg[valueStart:at])
			h.foldCost += int64(lines) * int64(at-fieldStart)
		}
	}
	pos := 0
	for pos < len(msg) {
		lineEnd, next := len(msg), len(msg)
		if i := bytes.IndexByte(msg[pos:], '\n'); i >= 0 {
			lineEnd, next = pos+i, pos+i+1
		}
		line := bytes.TrimSuffix(msg[pos:lineEnd], []byte("\r"))
		switch {
		case len(line) == 0:
			finish(pos)
			h.complete, h.size = true, next
			return h
		case (line[0] == ' ' || line[0] == '\t') && len(h.fields) > 0:
			lines++
		default:
			finish(pos)
			name, _, colon := bytes.Cut(line, []byte(":"))
			f := field{name: string(bytes.TrimSpace(name))}
			if colon {
				f.key = strings.ToLower(string(bytes.TrimRight(name, " \t")))
			}
			h.fields = append(h.fields, f)
			fieldStart, valueStart, lines = pos, pos+len(name), 1
			if colon {
				valueStart++
			}
		}
		pos = next
	}
	finish(len(msg))
	h.size = len(msg)
	return h
}

// unfold removes the line breaks of b (RFC 5322 §2.2.3): every LF, and the
// CR before one.
func unfold(b []byte) string {
	b = bytes.ReplaceAll(b, []byte("\r\n"), nil)
	return string(bytes.ReplaceAll(b, []byte("\n"), nil))
}

// Why the author domain is unknown (RFC 7489 §6.6.1).
var (
	errNoFrom        = errors.New("no From field")
	errMultipleFrom  = errors.New("more than one From field")
	errFromAddresses = errors.New("not exactly one address in the From field")
	errFromSyntax    = errors.New("unparseable From field")
	errFromDomain    = errors.New("no usable domain in the From address")
)

// addressParser parses From fields. Encoded words (RFC 2047) in display
// names in any charset are passed through undecoded: only the address
// matters here, and an unknown charset must not make it unreadable.
var addressParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(charset string, input io.Reader) (io.Reader, error) { return input, nil },
}}

// authorDomain returns the domain of the RFC5322.From address, in lowercase
// A-labels: the Author Domain of DMARC (RFC 7489 §3.1.1). The message must
// have exactly one From field with exactly one address (RFC 5322 §3.6.2);
// anything else is an error, and DMARC has no domain to evaluate.
func authorDomain(fields []field) (string, error) {
	var from *field
	for i := range fields {
		if strings.EqualFold(fields[i].name, "From") {
			if from != nil {
				return "", errMultipleFrom
			}
			from = &fields[i]
		}
	}
	if from == nil {
		return "", errNoFrom
	}
	addrs, err := addressParser.ParseList(from.value)
	if err != nil {
		return "", errFromSyntax
	}
	if len(addrs) != 1 {
		return "", errFromAddresses
	}
	at := strings.LastIndexByte(addrs[0].Address, '@')
	if at < 0 {
		return "", errFromDomain
	}
	d, ok := asciiDomain(addrs[0].Address[at+1:])
	if !ok {
		return "", errFromDomain
	}
	return d, nil
}

// authservID returns the authserv-id of an Authentication-Results field
// value (RFC 8601 §2.2): a token or a quoted-string (RFC 2045 §5.1) after
// optional white space and comments. ok is false if there is none.
func authservID(v string) (id string, ok bool) {
	v = skipCFWS(v)
	if strings.HasPrefix(v, `"`) {
		var b strings.Builder
		for i := 1; i < len(v); i++ {
			switch c := v[i]; c {
			case '\\':
				if i+1 < len(v) {
					i++
					b.WriteByte(v[i])
				}
			case '"':
				return b.String(), b.Len() > 0
			default:
				b.WriteByte(c)
			}
		}
		return "", false // Unterminated.
	}
	end := strings.IndexFunc(v, func(r rune) bool { return r <= ' ' || r == ';' || r == '(' || r == 0x7f })
	if end < 0 {
		end = len(v)
	}
	return v[:end], end > 0
}

// skipCFWS skips folding white space and comments, which nest and may hold
// quoted pairs (RFC 5322 §3.2.2). An unterminated comment takes the rest.
func skipCFWS(v string) string {
	depth := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && depth > 0:
			i++
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0, c == ' ', c == '\t', c == '\r', c == '\n':
		default:
			return v[i:]
		}
	}
	return ""
}

// ownResults returns the Authentication-Results fields among fields whose
// authserv-id is hostname (without case, a trailing dot ignored, U-labels
// compared as A-labels): those a verifier must remove before adding its
// own (RFC 8601 §5), as 1-based indexes among the fields of that name,
// counted by field.key as the core counts them.
func ownResults(fields []field, hostname string) []int {
	var own []int
	n := 0
	for _, f := range fields {
		if f.key != authResultsKey {
			continue
		}
		n++
		id, ok := authservID(f.value)
		if !ok {
			continue
		}
		if strings.EqualFold(strings.TrimSuffix(id, "."), hostname) {
			own = append(own, n)
		} else if a, ok := asciiDomain(id); ok && a == hostname {
			own = append(own, n)
		}
	}
	return own
}
