package dsn

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"strings"
	"unicode/utf8"
)

// original is what a DSN takes from the original message.
type original struct {
	content   []byte // The third part: the whole message or its header section.
	full      bool   // content is the whole message.
	truncated bool   // The whole message was asked for, but it is larger than MaxReturn.
	plain     bool   // content is 7-bit: ASCII without NUL, CRLF lines of at most 998 octets.

	messageID string   // "<id>"; empty if none.
	refs      []string // Of References, else of a lone In-Reply-To.
	subject   string   // Decoded (RFC 2047), valid UTF-8, on one line.
}

const (
	maxSubject = 200 // Runes of the original subject kept in the DSN's.
	maxRefs    = 20  // Message-IDs kept in References.
	maxID      = 250 // Octets of a msg-id; a longer one is dropped.
)

// readOriginal reads up to MaxReturn bytes of the message and picks what to
// return: all of it if full is asked and it fits, else its header section.
func readOriginal(r io.Reader, full bool) (*original, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxReturn+1))
	if err != nil {
		return nil, fmt.Errorf("dsn: read original: %w", err)
	}
	hdr := headerSection(data)
	o := &original{content: hdr}
	switch {
	case full && len(data) <= MaxReturn:
		o.content, o.full = data, true
	case full:
		o.truncated = true
	}
	o.plain = isPlain(o.content)
	o.parse(hdr)
	return o, nil
}

// headerSection returns the lines of data before the first empty line (RFC
// 5322 §2.1), each with its line ending. Without an empty line, all of data
// is header if it was read whole, else its complete lines.
func headerSection(data []byte) []byte {
	for pos := 0; pos < len(data); {
		i := bytes.IndexByte(data[pos:], '\n')
		if i < 0 {
			break
		}
		line := data[pos : pos+i+1]
		if len(line) == 1 || len(line) == 2 && line[0] == '\r' {
			return data[:pos]
		}
		pos += i + 1
	}
	if len(data) <= MaxReturn {
		return data
	}
	return data[:bytes.LastIndexByte(data[:MaxReturn], '\n')+1]
}

// isPlain says whether b can go in a 7-bit part as it is (RFC 2045 §2.7).
func isPlain(b []byte) bool {
	n := 0 // Octets in the current line.
	for i, c := range b {
		switch {
		case c == '\n':
			if i == 0 || b[i-1] != '\r' {
				return false
			}
			n = 0
		case c == '\r':
			if i+1 == len(b) || b[i+1] != '\n' {
				return false
			}
		case c == 0 || c >= 0x80:
			return false
		default:
			if n++; n > 998 {
				return false
			}
		}
	}
	return true
}

// parse takes the threading fields and the subject from the header section,
// leniently: lines that are not fields are skipped, the first of a repeated
// field counts.
func (o *original) parse(hdr []byte) {
	fields := map[string]string{}
	var name string // Of the field being unfolded; empty after a line that is no field.
	for line := range strings.Lines(string(hdr)) {
		line = strings.TrimRight(line, "\r\n")
		if line != "" && (line[0] == ' ' || line[0] == '\t') {
			if name != "" {
				fields[name] += line // Unfolding (RFC 5322 §2.2.3).
			}
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		k = strings.ToLower(strings.TrimSpace(k))
		name = ""
		if !ok || k == "" {
			continue
		}
		if _, seen := fields[k]; !seen {
			fields[k] = v
			name = k
		}
	}
	if ids := msgIDs(fields["message-id"]); len(ids) > 0 {
		o.messageID = ids[0]
	}
	o.refs = msgIDs(fields["references"])
	if len(o.refs) == 0 {
		if ids := msgIDs(fields["in-reply-to"]); len(ids) == 1 {
			o.refs = ids
		}
	}
	o.subject = decodeSubject(fields["subject"])
}

// msgIDs returns the "<id>" tokens of a field (RFC 5322 §3.6.4); a value
// without brackets but with an "@" counts as one id. Ids with whitespace,
// non-ASCII or overlong are skipped: they would spoil the DSN's headers.
func msgIDs(v string) []string {
	var ids []string
	if !strings.Contains(v, "<") {
		if v = strings.TrimSpace(v); strings.Contains(v, "@") {
			v = "<" + v + ">"
		}
	}
	for {
		_, rest, ok := strings.Cut(v, "<")
		if !ok {
			return ids
		}
		id, after, ok := strings.Cut(rest, ">")
		if !ok {
			return ids
		}
		v = after
		if id != "" && len(id) <= maxID && !strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '<' }) {
			ids = append(ids, "<"+id+">")
		}
	}
}

// references returns the DSN's References: the original's and its
// Message-ID (RFC 5322 §3.6.4), at most maxRefs of them, keeping the first
// (the thread's root) and the last.
func (o *original) references() []string {
	refs := o.refs
	if o.messageID != "" {
		refs = append(refs[:len(refs):len(refs)], o.messageID)
	}
	if len(refs) > maxRefs {
		refs = append([]string{refs[0]}, refs[len(refs)-maxRefs+1:]...)
	}
	return refs
}

// decodeSubject decodes RFC 2047 words (an unknown charset leaves them as
// they are) and returns the subject as valid UTF-8 on one line, at most
// maxSubject runes.
func decodeSubject(s string) string {
	if d, err := new(mime.WordDecoder).DecodeHeader(s); err == nil {
		s = d
	}
	s = strings.Join(strings.Fields(clean(s)), " ")
	if utf8.RuneCountInString(s) > maxSubject {
		s = string([]rune(s)[:maxSubject]) + "..."
	}
	return s
}

// clean makes s valid UTF-8 without control characters, for a field value.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// writeField writes a header field, folded at spaces (RFC 5322 §2.2.3) into
// lines of at most 78 octets where the words allow, and never more than 998
// (§2.1.1): a longer word is split, between characters: value must be
// valid UTF-8.
func writeField(b *bytes.Buffer, name, value string) {
	const soft, hard = 78, 998
	n := len(name) + 1 // Octets on the current line.
	b.WriteString(name + ":")
	first := true // Nothing after the name yet.
	for _, w := range strings.Fields(value) {
		if !first && n+1+len(w) > soft {
			b.WriteString("\r\n")
			n = 0
		}
		first = false
		for n+1+len(w) > hard {
			cut := hard - n - 1
			for cut > 0 && !utf8.RuneStart(w[cut]) {
				cut--
			}
			b.WriteString(" " + w[:cut] + "\r\n")
			w, n = w[cut:], 0
		}
		b.WriteString(" " + w)
		n += 1 + len(w)
	}
	b.WriteString("\r\n")
}

// writeBase64 writes b in base64, in lines of 76 characters (RFC 2045 §6.8).
func writeBase64(w io.Writer, b []byte) error {
	enc := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(enc) > 76 {
		out.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	out.WriteString(enc + "\r\n")
	_, err := io.WriteString(w, out.String())
	return err
}
