package main

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"
)

// The state file of an instance is a log of records, one a line, after a
// header line:
//
//	switchyard-greylist 1
//	<first> <last> <state> <network> <from> <rcpt>
//
// first and last are Unix seconds: when the triplet was first seen, and when
// it last passed (its first attempt while still greylisted). state is "g"
// (greylisted: seen, not yet retried after the delay) or "w" (whitelisted:
// retried in time, passes until last+lifetime). network is the client's
// network in CIDR notation; from and rcpt are Go-quoted strings
// (strconv.Quote), so any byte survives and no record spans lines. A later
// record of a triplet replaces an earlier one.
//
// Every change appends one record with one write(2), so a crash of the
// process loses nothing the kernel has; a crash of the machine may lose or
// tear the last records, which only means those triplets are greylisted
// again. A torn or unreadable line is skipped on load. At start, and
// whenever the log holds twice as many records as live entries, it is
// compacted: the live entries are written to a temporary file, which is
// synced and renamed over the log.
const (
	fileHeader = "switchyard-greylist 1"
	// maxLine bounds a line read from a state file: two quoted addresses of
	// at most maxAddrLen bytes, at worst 4 bytes each quoted, and the rest.
	maxLine = 2*(4*maxAddrLen+2) + 128
	// compactSlack is how many records beyond twice the live entries the
	// log may hold before it is compacted.
	compactSlack = 64
	// refreshEvery is how stale the last-pass time of a whitelisted triplet
	// may get before a pass refreshes it: passes of a busy triplet do not
	// each append a record.
	refreshEvery = time.Minute
)

// maxAddrLen bounds the addresses of a triplet, in bytes. RFC 5321
// §4.5.3.1.3 limits a path to 256 octets with its angle brackets.
const maxAddrLen = 512

// triplet is what greylisting remembers (RFC 6647): the client's network,
// the reverse-path and the forward-path, both lower-cased.
type triplet struct {
	network netip.Prefix
	from    string
	rcpt    string
}

// entry is the state of a triplet.
type entry struct {
	first  int64 // Unix seconds of the first attempt (of this round).
	last   int64 // Unix seconds of the last pass; first while greylisted.
	passed bool  // Whitelisted: retried after the delay, within the window.
}

// timing is what decides a triplet's fate, in seconds.
type timing struct {
	delay, window, lifetime int64
	maxEntries              int
}

// expired says whether e is forgotten at now.
func (t timing) expired(e entry, now int64) bool {
	if e.passed {
		return now-e.last > t.lifetime
	}
	return now-e.first > t.window || now < e.first
}

// outcome is what check decided.
type outcome int

const (
	outcomeNew         outcome = iota // First seen (or seen again after expiry): tempfail.
	outcomeEarly                      // Retried before the delay: tempfail.
	outcomePassed                     // Retried after the delay: now whitelisted.
	outcomeWhitelisted                // Whitelisted before.
)

func (o outcome) String() string {
	return [...]string{"new", "early", "passed", "whitelisted"}[o]
}

// store is the greylisting state of one instance, in memory and in its file.
type store struct {
	path string
	log  *slog.Logger

	mu        sync.Mutex
	t         timing
	m         map[triplet]entry
	f         *os.File // The log, positioned at its end; nil after close.
	records   int      // Records in the log.
	retryAt   int      // After a failed compaction: records before the next try.
	writeFail bool     // The last write failed; logged once until one works.
}

// openStore loads the state file at path, creating it if it does not
// exist. A file that is not a state file is set aside as path+".corrupt"
// and the state starts empty.
func openStore(path string, t timing, now time.Time, log *slog.Logger) (*store, error) {
	s := &store{path: path, log: log, t: t, m: map[triplet]entry{}}
	f, err := os.Open(path)
	var st loadStats
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("opening state: %w", err)
	default:
		st, err = s.load(f, now.Unix())
		f.Close()
		switch {
		case errors.Is(err, errNotStateFile):
			aside := path + ".corrupt"
			if rerr := os.Rename(path, aside); rerr != nil {
				return nil, fmt.Errorf("setting aside unreadable state %s: %w", path, rerr)
			}
			s.m = map[triplet]entry{}
			log.Warn("state file unreadable, starting empty", slog.String("file", path), slog.String("moved_to", aside), slog.Any("err", err))
		case err != nil:
			return nil, fmt.Errorf("reading state %s: %w", path, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(now.Unix())
	if st.records > 0 || st.bad > 0 || st.torn {
		attrs := []any{slog.String("file", path), slog.Int("entries", len(s.m)), slog.Int("records", st.records)}
		if st.bad > 0 || st.torn {
			log.Warn("state file had bad records, skipped", append(attrs, slog.Int("bad", st.bad), slog.Bool("torn_end", st.torn))...)
		} else {
			log.Info("state loaded", attrs...)
		}
	}
	if err := s.compact(); err != nil {
		return nil, err
	}
	return s, nil
}

var errNotStateFile = errors.New("not a greylisting state file")

// loadStats is what load found besides entries.
type loadStats struct {
	records int  // Good records.
	bad     int  // Lines skipped.
	torn    bool // The file ended in an unterminated line, skipped.
}

// load reads a state file into s.m, pruning as it goes so that a large file
// cannot take more than about twice the cap in memory.
func (s *store) load(r io.Reader, now int64) (loadStats, error) {
	var st loadStats
	br := bufio.NewReaderSize(r, 64*1024)
	header, complete, err := readLine(br)
	if err != nil && !errors.Is(err, io.EOF) {
		return st, err
	}
	if !complete && len(header) == 0 && errors.Is(err, io.EOF) {
		return st, nil // Empty file.
	}
	if !complete || string(header) != fileHeader {
		return st, errNotStateFile
	}
	for {
		line, complete, err := readLine(br)
		if errors.Is(err, io.EOF) {
			st.torn = len(line) > 0
			return st, nil
		}
		if err != nil {
			return st, err
		}
		if !complete {
			st.bad++
			continue
		}
		k, e, ok := parseRecord(line)
		if !ok {
			st.bad++
			continue
		}
		st.records++
		s.m[k] = e
		if len(s.m) > 2*s.t.maxEntries {
			s.prune(now)
		}
	}
}

// readLine returns the next line without its newline. complete is false if
// the line was longer than maxLine (it is skipped to its end) or, with an
// error such as io.EOF, if the input ended without a newline; line is then
// not empty if anything was left.
func readLine(br *bufio.Reader) (line []byte, complete bool, err error) {
	var buf []byte
	long := false
	for {
		frag, err := br.ReadSlice('\n')
		if !long && len(buf)+len(frag) <= maxLine+1 {
			buf = append(buf, frag...)
		} else {
			long, buf = true, nil
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == nil && long:
			return nil, false, nil
		case err == nil:
			return buf[:len(buf)-1], true, nil
		case long:
			return []byte{0}, false, err
		default:
			return buf, false, err
		}
	}
}

// appendRecord appends the record of k and e to b.
func appendRecord(b []byte, k triplet, e entry) []byte {
	b = strconv.AppendInt(b, e.first, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, e.last, 10)
	if e.passed {
		b = append(b, " w "...)
	} else {
		b = append(b, " g "...)
	}
	b = k.network.AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendQuote(b, k.from)
	b = append(b, ' ')
	b = strconv.AppendQuote(b, k.rcpt)
	return append(b, '\n')
}

// parseRecord parses a record line, without its newline, strictly: what
// appendRecord writes and nothing else.
func parseRecord(line []byte) (triplet, entry, bool) {
	var k triplet
	var e entry
	fields := make([][]byte, 0, 4)
	rest := line
	for range 4 {
		f, r, ok := bytes.Cut(rest, []byte{' '})
		if !ok {
			return k, e, false
		}
		fields, rest = append(fields, f), r
	}
	var err error
	if e.first, err = parseUnix(fields[0]); err != nil {
		return k, e, false
	}
	if e.last, err = parseUnix(fields[1]); err != nil || e.last < e.first {
		return k, e, false
	}
	switch string(fields[2]) {
	case "g":
		if e.last != e.first {
			return k, e, false
		}
	case "w":
		e.passed = true
	default:
		return k, e, false
	}
	if k.network, err = netip.ParsePrefix(string(fields[3])); err != nil || k.network != k.network.Masked() || k.network.Addr().Is4In6() || k.network.Addr().Zone() != "" {
		return k, e, false
	}
	var ok bool
	if k.from, rest, ok = cutQuoted(rest); !ok || len(rest) == 0 || rest[0] != ' ' {
		return k, e, false
	}
	if k.rcpt, rest, ok = cutQuoted(rest[1:]); !ok || len(rest) != 0 {
		return k, e, false
	}
	if len(k.from) > maxAddrLen || len(k.rcpt) > maxAddrLen {
		return k, e, false
	}
	return k, e, true
}

// parseUnix parses non-negative decimal seconds without sign or leading zeros.
func parseUnix(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 1 && b[0] == '0' || b[0] == '+' || b[0] == '-' {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseInt(string(b), 10, 64)
}

// cutQuoted takes a Go-quoted string off the front of b.
func cutQuoted(b []byte) (string, []byte, bool) {
	q, err := strconv.QuotedPrefix(string(b))
	if err != nil || q[0] != '"' {
		return "", nil, false
	}
	s, err := strconv.Unquote(q)
	if err != nil {
		return "", nil, false
	}
	return s, b[len(q):], true
}

// check decides on an attempt of k at now and records what changed.
func (s *store) check(k triplet, now time.Time) (outcome, time.Duration) {
	t := now.Unix()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[k]
	switch {
	case !ok || s.t.expired(e, t):
		e = entry{first: t, last: t}
		s.m[k] = e
		s.write(k, e)
		if len(s.m) > s.t.maxEntries {
			s.evict(t, &k)
		}
		return outcomeNew, 0
	case e.passed:
		if t-e.last >= int64(refreshEvery/time.Second) {
			e.last = t
			s.m[k] = e
			s.write(k, e)
		}
		return outcomeWhitelisted, 0
	case t-e.first < s.t.delay:
		return outcomeEarly, time.Duration(t-e.first) * time.Second
	default:
		e.passed, e.last = true, t
		s.m[k] = e
		s.write(k, e)
		return outcomePassed, time.Duration(t-e.first) * time.Second
	}
}

// write appends a record, and compacts the log when it has grown. Called
// with s.mu held. A failure is logged, not returned: greylisting goes on
// from memory, and the triplet is only greylisted again after a restart.
func (s *store) write(k triplet, e entry) {
	if s.f == nil {
		return
	}
	if s.records >= 2*len(s.m)+compactSlack && s.records >= s.retryAt {
		err := s.compact()
		if err == nil {
			return // The snapshot holds the record.
		}
		// Not on every write while the disk is full.
		s.retryAt = s.records + len(s.m) + compactSlack
		s.log.Error("compacting state", slog.String("file", s.path), slog.Any("err", err))
	}
	if _, err := s.f.Write(appendRecord(nil, k, e)); err != nil {
		s.failed(err)
		return
	}
	s.records++
	if s.writeFail {
		s.writeFail = false
		s.log.Info("writing state works again", slog.String("file", s.path))
	}
}

func (s *store) failed(err error) {
	if !s.writeFail {
		s.writeFail = true
		s.log.Error("writing state", slog.String("file", s.path), slog.Any("err", err))
	}
}

// prune drops expired entries. Called with s.mu held.
func (s *store) prune(now int64) {
	for k, e := range s.m {
		if s.t.expired(e, now) {
			delete(s.m, k)
		}
	}
	if len(s.m) > s.t.maxEntries {
		s.evict(now, nil)
	}
}

// evict brings the entries down to 90% of the cap, so that it does not run
// on every new triplet: expired entries first, then greylisted ones, oldest
// first, and only then whitelisted ones, least recently passed first. A
// flood of new triplets thus pushes out other new triplets, not the
// whitelist. keep, if not nil, is the triplet just added: never dropped, so
// that a cap full of whitelisted triplets still lets new ones in. Called
// with s.mu held.
func (s *store) evict(now int64, keep *triplet) {
	target := s.t.maxEntries - s.t.maxEntries/10
	for k, e := range s.m {
		if s.t.expired(e, now) {
			delete(s.m, k)
		}
	}
	if len(s.m) <= target {
		return
	}
	type aged struct {
		k      triplet
		passed bool
		at     int64
	}
	all := make([]aged, 0, len(s.m))
	for k, e := range s.m {
		if keep != nil && k == *keep {
			continue
		}
		at := e.first
		if e.passed {
			at = e.last
		}
		all = append(all, aged{k, e.passed, at})
	}
	slices.SortFunc(all, func(a, b aged) int {
		if a.passed != b.passed {
			if a.passed {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.at, b.at)
	})
	n := len(s.m) - target
	for _, a := range all[:n] {
		delete(s.m, a.k)
	}
	s.log.Warn("state full, oldest entries dropped", slog.String("file", s.path), slog.Int("dropped", n), slog.Int("max_entries", s.t.maxEntries))
}

// compact writes the entries to a new file and renames it over the log,
// which it then appends to. Called with s.mu held.
func (s *store) compact() error {
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("writing state: %w", err)
	}
	w := bufio.NewWriterSize(f, 64*1024)
	w.WriteString(fileHeader + "\n")
	var b []byte
	for k, e := range s.m {
		b = appendRecord(b[:0], k, e)
		w.Write(b)
	}
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("writing state: %w", err)
	}
	if s.f != nil {
		s.f.Close()
	}
	s.f, s.records, s.retryAt = f, len(s.m), 0
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return fmt.Errorf("syncing state directory: %w", err)
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// setTiming applies a new configuration of the instance.
func (s *store) setTiming(t timing, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.t = t
	s.prune(now.Unix())
}

// close closes the log; the store keeps deciding from memory.
func (s *store) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// len returns the number of entries.
func (s *store) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
