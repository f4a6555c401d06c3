package queue

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// defaultSegmentSize is the size past which the committer starts a new
// segment file.
const defaultSegmentSize = 64 << 20

// segments are the segment files of a queue: files in its segment directory,
// named by decimal numbers, holding the content of small messages one after
// another. Only the committer appends, and only to the current segment, which
// it creates when it first needs one: a segment from before a restart is never
// appended to, as its tail may be torn. A segment file is removed once no
// record names it, nobody reads it and it is not current.
type segments struct {
	dir  string
	dirf *os.File // Synced after a segment file is created.
	max  int64    // Size past which the committer starts a new segment.
	log  *slog.Logger

	mu   sync.Mutex
	m    map[int64]*segment
	cur  *segment // Appended to by the committer; nil until it needs one.
	last int64    // Highest segment number used, also by removed segments.
}

type segment struct {
	n    int64
	f    *os.File // Open for reading; for writing too if it was created by this process.
	size int64    // Bytes written; kept by the committer for the current segment.
	live int      // Committed records naming the segment.
	refs int      // Readers, from acquire to release.
}

func segmentName(n int64) string {
	return strconv.FormatInt(n, 10)
}

// parseSegment returns the number of the segment file with name s.
func parseSegment(s string) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n > 0 && segmentName(n) == s
}

func (s *segments) path(n int64) string {
	return filepath.Join(s.dir, segmentName(n))
}

// acquire returns the open file of segment n for reading; release ends the
// use. The file stays open and in place until then.
func (s *segments) acquire(n int64) (*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seg := s.m[n]
	if seg == nil {
		return nil, fmt.Errorf("segment %d not open", n)
	}
	seg.refs++
	return seg.f, nil
}

func (s *segments) release(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seg := s.m[n]
	seg.refs--
	s.removeIfUnusedLocked(seg)
}

// committed adds delta to the records naming segment n, and removes it if
// none remain and it is unused. Called by the committer once the records'
// changes are durable.
func (s *segments) committed(n int64, delta int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seg := s.m[n]; seg != nil {
		seg.live += delta
		s.removeIfUnusedLocked(seg)
	}
}

func (s *segments) removeIfUnusedLocked(seg *segment) {
	if seg.live > 0 || seg.refs > 0 || seg == s.cur {
		return
	}
	delete(s.m, seg.n)
	seg.f.Close()
	// A file left by a crash before the removal is durable is removed at
	// the next Open: no record names it.
	if err := os.Remove(s.path(seg.n)); err != nil {
		s.log.Error("removing segment file", slog.Int64("segment", seg.n), slog.Any("err", err))
	}
}

// forAppend returns the segment the committer is to append n bytes to,
// starting a new one if there is none or the current one would grow past
// its maximum size, and reports whether the file was created.
func (s *segments) forAppend(n int64) (*segment, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.cur; cur != nil && cur.size > 0 && cur.size+n > s.max {
		s.cur = nil
		s.removeIfUnusedLocked(cur)
	}
	if s.cur != nil {
		return s.cur, false, nil
	}
	s.last++
	f, err := os.OpenFile(s.path(s.last), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("create segment file: %w", err)
	}
	s.cur = &segment{n: s.last, f: f}
	s.m[s.last] = s.cur
	return s.cur, true, nil
}

// abandon stops appending to seg after a failed write: its tail is unknown.
func (s *segments) abandon(seg *segment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == seg {
		s.cur = nil
		s.removeIfUnusedLocked(seg)
	}
}

// close closes the segment files.
func (s *segments) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, seg := range s.m {
		seg.f.Close()
	}
	s.dirf.Close()
}
