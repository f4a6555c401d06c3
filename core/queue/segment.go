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
// named by decimal numbers, holding the contents of small messages one after
// another. The committer appends new messages to the current segment; the
// compactor appends the messages it moves to its own, so that messages
// that stay long gather in segments of their own. Each creates its segment
// when it first needs one: a segment from before a restart is never
// appended to, as its tail may be torn. A segment file is removed once no
// record names it, nobody reads it and nobody appends to it.
//
// A segment whose live bytes fall under compactBelow of its size is
// compacted: the compactor copies its messages to its own segment, and the
// segment goes. So the queue's disk use stays near its content's size, and
// a message that waits days for a retry keeps no segment of other messages.
type segments struct {
	dir  string
	dirf *os.File // Synced after a segment file is created.
	max  int64    // Size past which the committer starts a new segment.
	log  *slog.Logger

	mu      sync.Mutex
	m       map[int64]*segment
	cur     *segment // Appended to by the committer; nil until it needs one.
	old     *segment // Appended to by the compactor; nil until it needs one.
	last    int64    // Highest segment number used, also by removed segments.
	pending []int64  // Segments to compact, in order.
	kick    chan struct{}
}

// compactBelow is the share of live bytes under which a segment is
// compacted: disk use stays under 1/compactBelow of the content's size,
// and a message is copied about once per 1/(1-compactBelow) of its
// segment's size of traffic.
const compactBelow = 0.6

type segment struct {
	n    int64
	f    *os.File // Open for reading; for writing too if it was created by this process.
	size int64    // Bytes written; kept by the committer for the current segment.
	live int      // Committed records naming the segment.
	// bytes are the contents of the committed records naming the segment.
	bytes      int64
	refs       int  // Readers, from acquire to release.
	compacting bool // In pending, or being compacted.
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

// committed adds messages and bytes to the records naming segment n, and
// removes it if none remain and it is unused, or has it compacted if it is
// mostly dead. Called by the committer once the records' changes are
// durable.
func (s *segments) committed(n int64, messages int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seg := s.m[n]; seg != nil {
		seg.live += messages
		seg.bytes += bytes
		s.removeIfUnusedLocked(seg)
		s.checkLocked(seg)
	}
}

// checkLocked has seg compacted if it is mostly dead and done with.
func (s *segments) checkLocked(seg *segment) {
	if seg.compacting || seg == s.cur || seg == s.old || seg.live == 0 || float64(seg.bytes) >= compactBelow*float64(seg.size) {
		return
	}
	if s.m[seg.n] != seg {
		return // Removed.
	}
	seg.compacting = true
	s.pending = append(s.pending, seg.n)
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// next returns the next segment to compact; false if there is none.
func (s *segments) next() (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return 0, false
	}
	n := s.pending[0]
	s.pending = s.pending[1:]
	return n, true
}

// compacted ends the compaction of segment n. The segment went when its
// last record moved out and the compactor released it; if a record still
// names it (a copy or a relocation failed), it is compacted again when
// another of its messages leaves, or after a restart.
func (s *segments) compacted(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seg := s.m[n]; seg != nil {
		seg.compacting = false
	}
}

func (s *segments) removeIfUnusedLocked(seg *segment) {
	if seg.live > 0 || seg.refs > 0 || seg == s.cur || seg == s.old {
		return
	}
	if s.m[seg.n] != seg {
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
	return s.appendTo(&s.cur, n)
}

// forCompact is forAppend for the compactor's segment.
func (s *segments) forCompact(n int64) (*segment, bool, error) {
	return s.appendTo(&s.old, n)
}

func (s *segments) appendTo(cur **segment, n int64) (*segment, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := *cur; c != nil && c.size > 0 && c.size+n > s.max {
		*cur = nil
		s.removeIfUnusedLocked(c)
		s.checkLocked(c)
	}
	if *cur != nil {
		return *cur, false, nil
	}
	s.last++
	f, err := os.OpenFile(s.path(s.last), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("create segment file: %w", err)
	}
	*cur = &segment{n: s.last, f: f}
	s.m[s.last] = *cur
	return *cur, true, nil
}

// abandon stops appending to seg after a failed write: its tail is unknown.
func (s *segments) abandon(seg *segment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cur := range []**segment{&s.cur, &s.old} {
		if *cur == seg {
			*cur = nil
			s.removeIfUnusedLocked(seg)
		}
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
