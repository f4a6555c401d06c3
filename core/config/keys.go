package config

import (
	"slices"
	"sort"
	"strconv"
	"strings"
)

// This file locates keys in the TOML source: BurntSushi/toml reports lines
// for syntax errors only. The scanner is not a parser: it follows table
// headers, array-of-tables headers, key/value lines, dotted and quoted keys,
// inline tables and arrays, and multi-line strings, which is enough for
// hand-written files that already parsed.

// keyElem is one part of a key path.
type keyElem struct {
	name  string
	index int // Array element; -1 if none.
}

// keyDef is where the file defines a key, a table or an array element.
type keyDef struct {
	path  []keyElem
	line  int
	value bool // An element of an inline array, not of an array of tables.
}

// keyIndex lists the definitions of a file in file order.
type keyIndex []keyDef

// Line returns the line of c's file that defines keyPath, or 0 if not found.
// A key path is dotted, with quoted parts where needed and array elements
// indexed from 0, e.g. `transports.smarthost.config.port`,
// `listeners[1].kind` or `domains."example.org".routes[0].transport`. An
// array element without index, as toml.Key writes it ("listeners.kind"),
// means the first. A key not in the file gives the line of its first
// descendant (a table defined through subtables or dotted keys), else of its
// nearest ancestor (a key the file omits), else 0.
func (c *Config) Line(keyPath string) int {
	p, ok := parseKeyPath(keyPath)
	if !ok {
		return 0
	}
	return c.keys.line(p)
}

func (x keyIndex) line(p []keyElem) int {
	for _, prefix := range []bool{false, true} {
		for _, d := range x {
			if d.matches(p, prefix) {
				return d.line
			}
		}
	}
	for n := len(p) - 1; n > 0; n-- {
		for _, d := range x {
			if d.matches(p[:n], false) {
				return d.line
			}
		}
	}
	return 0
}

// nth returns the n-th (from 0) definition of p.
func (x keyIndex) nth(p []keyElem, n int) (keyDef, bool) {
	for _, d := range x {
		if d.matches(p, false) {
			if n == 0 {
				return d, true
			}
			n--
		}
	}
	return keyDef{}, false
}

// matches reports whether d defines p, or with prefix a descendant of p. An
// element of p without index matches any element of an array of tables.
func (d keyDef) matches(p []keyElem, prefix bool) bool {
	if len(d.path) < len(p) || !prefix && len(d.path) != len(p) {
		return false
	}
	for i, e := range p {
		de := d.path[i]
		switch {
		case de.name != e.name:
			return false
		case e.index >= 0 && de.index != e.index:
			return false
		case e.index < 0 && de.index >= 0 && i == len(d.path)-1 && d.value:
			return false
		}
	}
	return true
}

// parseKeyPath parses a key path as Line takes it.
func parseKeyPath(s string) ([]keyElem, bool) {
	var p []keyElem
	for {
		var name string
		switch {
		case s == "":
			return nil, false
		case s[0] == '"':
			end := 1
			for end < len(s) && s[end] != '"' {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(s) {
				return nil, false
			}
			var err error
			if name, err = strconv.Unquote(s[:end+1]); err != nil {
				return nil, false
			}
			s = s[end+1:]
		case s[0] == '\'':
			end := strings.IndexByte(s[1:], '\'')
			if end < 0 {
				return nil, false
			}
			name, s = s[1:1+end], s[end+2:]
		default:
			end := strings.IndexAny(s, ".[")
			if end < 0 {
				end = len(s)
			}
			if end == 0 {
				return nil, false
			}
			name, s = s[:end], s[end:]
		}
		e := keyElem{name: name, index: -1}
		if strings.HasPrefix(s, "[") {
			end := strings.IndexByte(s, ']')
			if end < 0 {
				return nil, false
			}
			n, err := strconv.Atoi(s[1:end])
			if err != nil || n < 0 {
				return nil, false
			}
			e.index, s = n, s[end+1:]
		}
		p = append(p, e)
		if s == "" {
			return p, true
		}
		if s[0] != '.' {
			return nil, false
		}
		s = s[1:]
	}
}

// keyString writes p as Line takes it, quoting parts as toml.Key does.
func keyString(p []keyElem) string {
	var b strings.Builder
	for i, e := range p {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(quoteKey(e.name))
		if e.index >= 0 {
			b.WriteString("[" + strconv.Itoa(e.index) + "]")
		}
	}
	return b.String()
}

// quoteKey quotes a key part unless it is a bare key (TOML v1.0.0, Keys).
func quoteKey(s string) string {
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return r >= 0x80 || !isBare(byte(r)) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// keyScanner indexes the keys of TOML source.
type keyScanner struct {
	src    string
	pos    int
	nl     []int          // Offsets of newlines, for line numbers.
	arrays map[string]int // Elements so far of each array of tables, by keyString.
	defs   keyIndex
}

// indexKeys returns where src defines its keys.
func indexKeys(src string) keyIndex {
	s := &keyScanner{src: src, arrays: map[string]int{}}
	for i := range len(src) {
		if src[i] == '\n' {
			s.nl = append(s.nl, i)
		}
	}
	if strings.HasPrefix(src, "\ufeff") {
		s.pos = len("\ufeff")
	}
	var table []keyElem
	for {
		s.skip(true)
		if s.pos >= len(s.src) {
			return s.defs
		}
		start := s.pos
		switch {
		case strings.HasPrefix(s.src[s.pos:], "[["):
			s.pos += 2
			if names, ok := s.key(); ok && s.eat("]]") {
				table = s.header(names, true)
				s.add(table, start, false)
			}
		case s.src[s.pos] == '[':
			s.pos++
			if names, ok := s.key(); ok && s.eat("]") {
				table = s.header(names, false)
				s.add(table, start, false)
			}
		default:
			if names, ok := s.key(); ok && s.eat("=") {
				p := join(table, names)
				s.add(p, start, false)
				s.value(p)
			}
		}
		s.skipLine()
	}
}

// header returns the path of a table header, with the current element of
// each array of tables it passes through.
func (s *keyScanner) header(names []string, array bool) []keyElem {
	var p []keyElem
	for i, name := range names {
		p = append(p, keyElem{name: name, index: -1})
		k := keyString(p)
		n, isArray := s.arrays[k]
		switch {
		case array && i == len(names)-1:
			s.arrays[k] = n + 1
			p[i].index = n
		case isArray:
			p[i].index = n - 1
		}
	}
	return p
}

func join(p []keyElem, names []string) []keyElem {
	q := slices.Clone(p)
	for _, name := range names {
		q = append(q, keyElem{name: name, index: -1})
	}
	return q
}

// add records a definition of p starting at offset pos; a nil p is not
// recorded (inside nested arrays).
func (s *keyScanner) add(p []keyElem, pos int, value bool) {
	if len(p) == 0 {
		return
	}
	line := sort.SearchInts(s.nl, pos) + 1
	s.defs = append(s.defs, keyDef{path: slices.Clone(p), line: line, value: value})
}

// skip skips blanks and comments, and with newlines also line ends.
func (s *keyScanner) skip(newlines bool) {
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case ' ', '\t', '\r':
			s.pos++
		case '\n':
			if !newlines {
				return
			}
			s.pos++
		case '#':
			if i := strings.IndexByte(s.src[s.pos:], '\n'); i >= 0 {
				s.pos += i
			} else {
				s.pos = len(s.src)
			}
		default:
			return
		}
	}
}

func (s *keyScanner) skipLine() {
	if i := strings.IndexByte(s.src[s.pos:], '\n'); i >= 0 {
		s.pos += i + 1
	} else {
		s.pos = len(s.src)
	}
}

// eat skips blanks and then tok if present.
func (s *keyScanner) eat(tok string) bool {
	s.skip(false)
	if strings.HasPrefix(s.src[s.pos:], tok) {
		s.pos += len(tok)
		return true
	}
	return false
}

// key scans a dotted key.
func (s *keyScanner) key() ([]string, bool) {
	var names []string
	for {
		s.skip(false)
		name, ok := s.keyPart()
		if !ok {
			return nil, false
		}
		names = append(names, name)
		if !s.eat(".") {
			return names, true
		}
	}
}

func (s *keyScanner) keyPart() (string, bool) {
	rest := s.src[s.pos:]
	switch {
	case rest == "":
		return "", false
	case rest[0] == '"':
		n := basicString(rest)
		if n < 2 || rest[n-1] != '"' {
			return "", false
		}
		s.pos += n
		name, err := strconv.Unquote(rest[:n])
		if err != nil {
			name = rest[1 : n-1]
		}
		return name, true
	case rest[0] == '\'':
		end := strings.IndexAny(rest[1:], "'\n")
		if end < 0 || rest[1+end] != '\'' {
			return "", false
		}
		s.pos += end + 2
		return rest[1 : 1+end], true
	}
	n := 0
	for n < len(rest) && isBare(rest[n]) {
		n++
	}
	s.pos += n
	return rest[:n], n > 0
}

// basicString returns the length of the single-line basic string that
// starts s, up to the line end if it is not closed.
func basicString(s string) int {
	i := 1
	for i < len(s) && s[i] != '"' && s[i] != '\n' {
		if s[i] == '\\' {
			i++
		}
		i++
	}
	if i < len(s) && s[i] == '"' {
		i++
	}
	return min(i, len(s))
}

// multiString returns the length of the multi-line string that starts s,
// opened and closed by delim: three double or three single quotes.
func multiString(s, delim string) int {
	i := len(delim)
	for i < len(s) {
		if delim[0] == '"' && s[i] == '\\' {
			i += 2
			continue
		}
		if strings.HasPrefix(s[i:], delim) {
			i += len(delim)
			// Up to two quotes may precede the closing delimiter.
			for n := 0; n < 2 && i < len(s) && s[i] == delim[0]; n++ {
				i++
			}
			return i
		}
		i++
	}
	return len(s)
}

// value scans the value of p, recording the elements of arrays and the
// keys of inline tables.
func (s *keyScanner) value(p []keyElem) {
	s.skip(false)
	rest := s.src[s.pos:]
	switch {
	case rest == "":
	case strings.HasPrefix(rest, `"""`):
		s.pos += multiString(rest, `"""`)
	case strings.HasPrefix(rest, "'''"):
		s.pos += multiString(rest, "'''")
	case rest[0] == '"':
		s.pos += basicString(rest)
	case rest[0] == '\'':
		if end := strings.IndexAny(rest[1:], "'\n"); end >= 0 {
			s.pos += end + 2
		} else {
			s.pos = len(s.src)
		}
	case rest[0] == '[':
		s.array(p)
	case rest[0] == '{':
		s.table(p)
	default:
		if end := strings.IndexAny(rest, ",]}#\n"); end >= 0 {
			s.pos += end
		} else {
			s.pos = len(s.src)
		}
	}
}

func (s *keyScanner) array(p []keyElem) {
	s.pos++ // [
	for i := 0; ; i++ {
		s.skip(true)
		for s.eat(",") {
			s.skip(true)
		}
		if s.pos >= len(s.src) {
			return
		}
		if s.src[s.pos] == ']' {
			s.pos++
			return
		}
		start := s.pos
		var e []keyElem // Elements of nested arrays are not recorded.
		if len(p) > 0 && p[len(p)-1].index < 0 {
			e = slices.Clone(p)
			e[len(e)-1].index = i
			s.add(e, start, true)
		}
		s.value(e)
		if s.pos == start {
			s.pos++ // Not a value; go on.
		}
	}
}

func (s *keyScanner) table(p []keyElem) {
	s.pos++ // {
	for {
		s.skip(true)
		for s.eat(",") {
			s.skip(true)
		}
		if s.pos >= len(s.src) {
			return
		}
		if s.src[s.pos] == '}' {
			s.pos++
			return
		}
		start := s.pos
		names, ok := s.key()
		if !ok || !s.eat("=") {
			return
		}
		var q []keyElem
		if p != nil {
			q = join(p, names)
			s.add(q, start, false)
		}
		s.value(q)
	}
}
