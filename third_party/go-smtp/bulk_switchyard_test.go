package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// The byte-by-byte readers Switchyard's patch 13 replaced, kept as the
// reference the bulk ones must agree with.

type refDataReader struct {
	r       *bufio.Reader
	state   int
	err     error
	limited bool
	n       int64
}

func (r *refDataReader) Read(b []byte) (n int, err error) {
	if r.limited {
		if r.n <= 0 {
			return 0, ErrDataTooLarge
		}
		if int64(len(b)) > r.n {
			b = b[0:r.n]
		}
	}
	const (
		stateBeginLine = iota
		stateDot
		stateDotCR
		stateCR
		stateData
		stateEOF
	)
	if r.err != nil {
		return 0, r.err
	}
	for n < len(b) && r.state != stateEOF {
		var c byte
		c, err = r.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			break
		}
		switch r.state {
		case stateBeginLine:
			if c == '.' {
				r.state = stateDot
				continue
			}
			if c == '\r' {
				r.state = stateCR
				break
			}
			r.state = stateData
		case stateDot:
			if c == '\r' {
				r.state = stateDotCR
				continue
			}
			r.state = stateData
		case stateDotCR:
			if c == '\n' {
				r.state = stateEOF
				continue
			}
			r.err = ErrDotBareCR
			return n, r.err
		case stateCR:
			if c == '\n' {
				r.state = stateBeginLine
				break
			}
			if c != '\r' {
				r.state = stateData
			}
		case stateData:
			if c == '\r' {
				r.state = stateCR
			}
		}
		b[n] = c
		n++
	}
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}
	if r.limited {
		r.n -= int64(n)
	}
	return
}

type refLineLimitReader struct {
	R             io.Reader
	LineLimit     int
	curLineLength int
}

func (r *refLineLimitReader) Read(b []byte) (int, error) {
	if r.curLineLength > r.LineLimit && r.LineLimit > 0 {
		return 0, ErrTooLongLine
	}
	n, err := r.R.Read(b)
	if err != nil {
		return n, err
	}
	if r.LineLimit == 0 {
		return n, nil
	}
	for _, chr := range b[:n] {
		if chr == '\n' {
			r.curLineLength = 0
		}
		r.curLineLength++
		if r.curLineLength > r.LineLimit {
			return 0, ErrTooLongLine
		}
	}
	return n, nil
}

// readAll reads r with reads of size, up to 100 of them, and returns what
// each returned.
func readAll(r io.Reader, size int) []string {
	var out []string
	b := make([]byte, size)
	for i := 0; i < 100; i++ {
		n, err := r.Read(b)
		e := "<nil>"
		if err != nil {
			e = err.Error()
		}
		out = append(out, string(b[:n])+"|"+e)
		if err != nil && !errors.Is(err, ErrTooLongLine) {
			break
		}
	}
	return out
}

func equalReads(t *testing.T, what string, data []byte, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s of %q: %d reads, the reference %d:\n%q\n%q", what, data, len(got), len(want), got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s of %q: read %d is %q, the reference's %q", what, data, i, got[i], want[i])
		}
	}
}

// FuzzBulkReaders: the bulk data and line-limit readers return what the
// byte-by-byte ones did, read for read, whatever the input, the read size,
// the buffer refills and the limits.
func FuzzBulkReaders(f *testing.F) {
	for _, s := range []string{"a\r\n.\r\n", "..x\r\n.\r\n", "a\rb\r\r\n.\r\n", ".\rx", "a\nb\n.\n", "x\r\n.\r", "long line here\r\nshort\r\n.\r\n"} {
		f.Add([]byte(s), uint8(7), uint8(5), uint16(20))
	}
	f.Fuzz(func(t *testing.T, data []byte, readSize, limit uint8, maxBytes uint16) {
		size := int(readSize%64) + 1
		newData := func(bulk bool) io.Reader {
			br := bufio.NewReaderSize(bytes.NewReader(data), 16) // Refills often.
			if bulk {
				return &dataReader{r: br, limited: maxBytes > 0, n: int64(maxBytes)}
			}
			return &refDataReader{r: br, limited: maxBytes > 0, n: int64(maxBytes)}
		}
		equalReads(t, "data", data, readAll(newData(true), size), readAll(newData(false), size))

		l := int(limit % 32)
		got := readAll(&lineLimitReader{R: pieces(data, size), LineLimit: l}, size)
		want := readAll(&refLineLimitReader{R: pieces(data, size), LineLimit: l}, size)
		equalReads(t, "line limit", data, got, want)
	})
}

// pieces reads data in pieces of at most size bytes.
func pieces(data []byte, size int) io.Reader {
	return &pieceReader{data: data, size: size}
}

type pieceReader struct {
	data []byte
	size int
}

func (p *pieceReader) Read(b []byte) (int, error) {
	if len(p.data) == 0 {
		return 0, io.EOF
	}
	if len(b) > p.size {
		b = b[:p.size]
	}
	n := copy(b, p.data)
	p.data = p.data[n:]
	return n, nil
}
