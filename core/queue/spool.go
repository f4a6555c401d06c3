package queue

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/textproto"
	"os"
	"strings"
	"unicode/utf8"
)

// SpoolMemory is how much of a message a Spool holds in memory. A larger
// message is spilled to a file, and queued as a file of its own; a smaller
// one is appended to a segment file with others.
const SpoolMemory = 256 << 10

// errSpoolDone is returned for a spool that was added or discarded.
var errSpoolDone = errors.New("queue: spool already added or discarded")

// Spool accumulates a message being received: up to SpoolMemory bytes in
// memory, beyond that in a temporary file in the queue's spool directory.
// It is not safe for concurrent use. Add or Discard ends it.
type Spool struct {
	q    *Queue
	buf  *[]byte       // The content while in memory, from Queue.bufs; nil once spilled or done.
	f    *os.File      // The spill file; nil while in memory.
	w    *bufio.Writer // Buffers writes to f.
	size int64
	err  error // The first write error; later writes and Add fail with it.
	done bool
	// msgID and subject are of the header, taken when the content
	// leaves memory.
	msgID, subject string
}

// headerFields returns the Message-ID (RFC 5322 §3.6.4) and Subject
// fields of the header section that msg starts with, for log lines and
// retired records; empty if absent. It reads no further than the header's
// end or 64 KiB, and keeps at most 250 bytes of each, without control
// characters: a Message-ID with one is dropped, in a Subject they are
// spaces.
func headerFields(msg []byte) (msgID, subject string) {
	msg = msg[:min(len(msg), 64<<10)]
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		msg = msg[:i+4]
	}
	h, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(msg))).ReadMIMEHeader() // What it read before an error is kept.
	isCtl := func(r rune) bool { return r < ' ' || r == 0x7f }
	msgID = strings.TrimSpace(h.Get("Message-Id"))
	if strings.ContainsFunc(msgID, isCtl) {
		msgID = ""
	}
	subject = strings.Map(func(r rune) rune {
		if isCtl(r) {
			return ' '
		}
		return r
	}, strings.TrimSpace(h.Get("Subject")))
	return truncate(msgID, 250), truncate(subject, 250)
}

// truncate returns s cut to at most n bytes, at a UTF-8 boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// NewSpool returns an empty spool for a message to Add.
func (q *Queue) NewSpool() *Spool {
	return &Spool{q: q, buf: q.getBuf()}
}

// Write appends p to the message. A failure to write the spill file is
// kept: later writes and Add fail with it.
func (s *Spool) Write(p []byte) (int, error) {
	switch {
	case s.done:
		return 0, errSpoolDone
	case s.err != nil:
		return 0, s.err
	}
	if s.f == nil {
		b := *s.buf
		if n := len(b) + len(p); n <= SpoolMemory {
			if n > cap(b) {
				nb := make([]byte, len(b), min(max(2*cap(b), n), SpoolMemory))
				copy(nb, b)
				s.q.putBuf(s.buf)
				s.buf = &nb
			}
			*s.buf = append(*s.buf, p...)
			s.size += int64(len(p))
			return len(p), nil
		}
		if err := s.spill(); err != nil {
			s.err = err
			return 0, err
		}
	}
	n, err := s.w.Write(p)
	s.size += int64(n)
	if err != nil {
		s.err = fmt.Errorf("write spool file: %w", err)
	}
	return n, s.err
}

// spill moves the content to a new file in the spool directory.
func (s *Spool) spill() error {
	f, err := os.CreateTemp(s.q.spoolDir(), "spool-*")
	if err != nil {
		return fmt.Errorf("create spool file: %w", err)
	}
	s.f = f
	s.w = bufio.NewWriterSize(f, 64<<10)
	s.msgID, s.subject = headerFields(*s.buf)
	_, err = s.w.Write(*s.buf)
	s.q.putBuf(s.buf)
	s.buf = nil
	if err != nil {
		return fmt.Errorf("write spool file: %w", err)
	}
	return nil
}

// Size returns the number of bytes written.
func (s *Spool) Size() int64 {
	return s.size
}

// Reader returns what was written so far, for reading until the next Write,
// Add or Discard.
func (s *Spool) Reader() (*io.SectionReader, error) {
	switch {
	case s.done:
		return nil, errSpoolDone
	case s.err != nil:
		return nil, s.err
	case s.f == nil:
		return io.NewSectionReader(bytes.NewReader(*s.buf), 0, s.size), nil
	}
	if err := s.w.Flush(); err != nil {
		s.err = fmt.Errorf("write spool file: %w", err)
		return nil, s.err
	}
	return io.NewSectionReader(s.f, 0, s.size), nil
}

// Discard drops the message; it may be called again, also after Add.
func (s *Spool) Discard() {
	if s.done {
		return
	}
	s.done = true
	if s.buf != nil {
		s.q.putBuf(s.buf)
		s.buf = nil
	}
	if s.f != nil {
		s.f.Close()
		if err := os.Remove(s.f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.q.log.Error("removing spool file", slog.Any("err", err))
		}
		s.f = nil
	}
}

// getBuf returns an empty buffer for a spool.
func (q *Queue) getBuf() *[]byte {
	if b, ok := q.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 16<<10)
	return &b
}

// putBuf returns a spool's buffer for reuse.
func (q *Queue) putBuf(b *[]byte) {
	*b = (*b)[:0]
	q.bufs.Put(b)
}
