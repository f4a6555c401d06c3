package queue

import (
	"fmt"
	"log/slog"
	"slices"

	"github.com/mjl-/bstore"
)

// compactLoop compacts the segments that segments.committed finds mostly
// dead, one at a time, until the queue closes.
func (q *Queue) compactLoop() {
	defer q.wg.Done()
	for {
		for {
			n, ok := q.segs.next()
			if !ok {
				break
			}
			err := q.compact(n)
			q.segs.compacted(n)
			if q.ctx.Err() != nil {
				return
			}
			if err != nil {
				q.log.Error("compacting queue segment", slog.Int64("segment", n), slog.Any("err", err))
			}
		}
		select {
		case <-q.ctx.Done():
			return
		case <-q.segs.kick:
		}
	}
}

// compactChunk bounds the bytes the compactor copies before it syncs them
// and relocates their records.
const compactChunk = 4 << 20

// compact copies the contents of the messages in segment n to the
// compactor's segment, syncs them, and relocates their records; the
// segment goes once no record names it. A message removed meanwhile leaves
// its copy unused, counted as dead in the compactor's segment.
func (q *Queue) compact(n int64) error {
	src, err := q.segs.acquire(n)
	if err != nil {
		return nil // Removed meanwhile.
	}
	defer q.segs.release(n)
	var l []Msg
	err = bstore.QueryDB[Msg](q.ctx, q.db).FilterEqual("Segment", n).ForEach(func(m Msg) error {
		l = append(l, Msg{ID: m.ID, Offset: m.Offset, Size: m.Size})
		return nil
	})
	if err != nil {
		return fmt.Errorf("read messages of the segment: %w", err)
	}
	var buf []byte
	for len(l) > 0 {
		k, total := 0, int64(0)
		for k < len(l) && (k == 0 || total+l[k].Size <= compactChunk) {
			total += l[k].Size
			k++
		}
		batch := l[:k]
		l = l[k:]
		buf = buf[:0]
		for _, m := range batch {
			at := len(buf)
			buf = slices.Grow(buf, int(m.Size))[:at+int(m.Size)]
			if _, err := src.ReadAt(buf[at:], m.Offset); err != nil {
				return fmt.Errorf("read message %s: %w", formatID(m.ID), err)
			}
		}
		dst, created, err := q.segs.forCompact(total)
		if err != nil {
			return err
		}
		base := dst.size
		_, err = dst.f.WriteAt(buf, base)
		if err == nil {
			err = datasync(dst.f)
		}
		if err == nil && created {
			err = q.segs.dirf.Sync()
		}
		if err != nil {
			q.segs.abandon(dst)
			return fmt.Errorf("append to segment %d: %w", dst.n, err)
		}
		dst.size = base + total
		moves := make([]relocation, len(batch))
		done := make(chan error, len(batch))
		off := base
		for i, m := range batch {
			moves[i] = relocation{ID: m.ID, From: n, Offset: m.Offset, To: dst.n, NewOffset: off}
			off += m.Size
			if err := q.commit.submit(op{relocate: &moves[i], done: done}); err != nil {
				return err
			}
		}
		var first error
		for range batch {
			if err := <-done; err != nil && first == nil {
				first = fmt.Errorf("relocate message: %w", err)
			}
		}
		if first != nil {
			return first
		}
		q.mu.Lock()
		for _, r := range moves {
			if e := q.msgs[r.ID]; e != nil && e.msg.Segment == r.From && e.msg.Offset == r.Offset {
				e.msg.Segment, e.msg.Offset = r.To, r.NewOffset
			}
		}
		q.mu.Unlock()
	}
	return nil
}
