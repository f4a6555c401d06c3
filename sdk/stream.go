package sdk

import (
	"errors"
	"io"
	"sync"
)

// chunkSize is how much message data one stream message carries. Large
// enough that a typical message travels in the first message, with its header.
const chunkSize = 256 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// sendMessage reads r to its end and calls send for each chunk. The first
// call always happens, with first set, so a header can ride along even for an
// empty message.
func sendMessage(r io.Reader, send func(data []byte, first bool) error) error {
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	first := true
	for {
		n, err := io.ReadFull(r, buf)
		eof := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if err != nil && !eof {
			return err
		}
		if n > 0 || first {
			if err := send(buf[:n], first); err != nil {
				return err
			}
			first = false
		}
		if eof {
			return nil
		}
	}
}

// partReader reads the data of stream parts; the first part's data is given.
type partReader struct {
	buf  []byte
	next func() ([]byte, error) // io.EOF at the end of the stream.
	err  error
}

func (r *partReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.buf, r.err = r.next()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// drain reads what the implementation left unread, so the stream ends cleanly.
func (r *partReader) drain() {
	for r.err == nil {
		_, r.err = r.next()
	}
}

// Flow-control windows of the gRPC connection between the core and a
// plugin, set on both ends. A fixed window also turns off gRPC's bandwidth
// estimation, which would send a PING and await its answer for every burst
// of data: on a local socket there is no bandwidth to find, only a syscall
// and a wake-up per message to save.
const (
	StreamWindow = 1 << 20 // Four chunks of a message in flight.
	ConnWindow   = 8 << 20
)
