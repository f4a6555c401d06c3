package dkim

import (
	"bytes"
	"io"
	"testing"
)

// The byte-by-byte canonicalization Switchyard's patch replaced, kept as
// the reference the patched one must agree with.

type refCRLFFixer struct{ cr bool }

func (cf *refCRLFFixer) Fix(b []byte) []byte {
	res := make([]byte, 0, len(b))
	for _, ch := range b {
		prevCR := cf.cr
		cf.cr = false
		switch ch {
		case '\r':
			cf.cr = true
		case '\n':
			if !prevCR {
				res = append(res, '\r')
			}
		}
		res = append(res, ch)
	}
	return res
}

type refRelaxedBody struct {
	w         io.Writer
	crlfBuf   []byte
	wsp       bool
	written   bool
	crlfFixer refCRLFFixer
}

func (c *refRelaxedBody) Write(b []byte) (int, error) {
	written := len(b)
	b = c.crlfFixer.Fix(b)
	canonical := make([]byte, 0, len(b))
	for _, ch := range b {
		if ch == ' ' || ch == '\t' {
			c.wsp = true
		} else if ch == '\r' || ch == '\n' {
			c.wsp = false
			c.crlfBuf = append(c.crlfBuf, ch)
		} else {
			if len(c.crlfBuf) > 0 {
				canonical = append(canonical, c.crlfBuf...)
				c.crlfBuf = c.crlfBuf[:0]
			}
			if c.wsp {
				canonical = append(canonical, ' ')
				c.wsp = false
			}
			canonical = append(canonical, ch)
		}
	}
	if !c.written && len(canonical) > 0 {
		c.written = true
	}
	_, err := c.w.Write(canonical)
	return written, err
}

func (c *refRelaxedBody) Close() error {
	if c.written {
		if _, err := c.w.Write([]byte(crlf)); err != nil {
			return err
		}
	}
	return nil
}

type refSimpleBody struct {
	w         io.Writer
	crlfBuf   []byte
	crlfFixer refCRLFFixer
}

func (c *refSimpleBody) Write(b []byte) (int, error) {
	written := len(b)
	b = append(c.crlfBuf, b...)
	b = c.crlfFixer.Fix(b)
	end := len(b)
	if end > 0 && b[end-1] == '\r' {
		end--
	}
	for end >= 2 {
		if b[end-2] != '\r' || b[end-1] != '\n' {
			break
		}
		end -= 2
	}
	c.crlfBuf = b[end:]
	var err error
	if end > 0 {
		_, err = c.w.Write(b[:end])
	}
	return written, err
}

func (c *refSimpleBody) Close() error {
	if len(c.crlfBuf) > 0 && c.crlfBuf[len(c.crlfBuf)-1] == '\r' {
		if _, err := c.w.Write(c.crlfBuf); err != nil {
			return err
		}
	}
	c.crlfBuf = nil
	_, err := c.w.Write([]byte(crlf))
	return err
}

// canonicalize writes body to a canonicalizer in pieces of the sizes in
// cuts (cycled; 0 read as 1) and returns what came out.
func canonicalize(mk func(io.Writer) io.WriteCloser, body, cuts []byte) []byte {
	var out bytes.Buffer
	wc := mk(&out)
	for i := 0; len(body) > 0; i++ {
		n := 1
		if len(cuts) > 0 && cuts[i%len(cuts)] > 0 {
			n = int(cuts[i%len(cuts)])
		}
		if n > len(body) {
			n = len(body)
		}
		// A copy, which the canonicalizer may not keep: it is spoiled after.
		piece := append([]byte(nil), body[:n]...)
		wc.Write(piece)
		for j := range piece {
			piece[j] = 'X'
		}
		body = body[n:]
	}
	wc.Close()
	return out.Bytes()
}

// FuzzBodyCanonicalizers checks the patched relaxed and simple body
// canonicalizers against the reference, with the body written in pieces.
func FuzzBodyCanonicalizers(f *testing.F) {
	for _, s := range []string{
		"", "\r\n", "a\r\nb\r\n\r\n\r\n", "a \t b  \r\n \r\n", "lone\nlf\n\r\n", "cr\r\r\nx", "trailing  \t\r\n\r\n",
		"line one\r\n  indented\r\n\r\n\r\nlast\r", "\n\n\n", "a\rb\nc\r\n",
	} {
		f.Add([]byte(s), []byte{1, 3, 7})
		f.Add([]byte(s), []byte{255})
	}
	f.Fuzz(func(t *testing.T, body, cuts []byte) {
		relaxed := canonicalize(func(w io.Writer) io.WriteCloser { return new(relaxedCanonicalizer).CanonicalizeBody(w) }, body, cuts)
		refRelaxed := canonicalize(func(w io.Writer) io.WriteCloser { return &refRelaxedBody{w: w} }, body, cuts)
		if !bytes.Equal(relaxed, refRelaxed) {
			t.Fatalf("relaxed %q in pieces %v: %q, reference %q", body, cuts, relaxed, refRelaxed)
		}
		simple := canonicalize(func(w io.Writer) io.WriteCloser { return new(simpleCanonicalizer).CanonicalizeBody(w) }, body, cuts)
		refSimple := canonicalize(func(w io.Writer) io.WriteCloser { return &refSimpleBody{w: w} }, body, cuts)
		if !bytes.Equal(simple, refSimple) {
			t.Fatalf("simple %q in pieces %v: %q, reference %q", body, cuts, simple, refSimple)
		}
	})
}

// BenchmarkRelaxedBody compares the patched relaxed body canonicalization
// with the reference on a typical 4 KB body written at once.
func BenchmarkRelaxedBody(b *testing.B) {
	body := bytes.Repeat([]byte("A line of a typical message body, with some words.\r\n"), 80)
	for _, c := range []struct {
		name string
		mk   func(io.Writer) io.WriteCloser
	}{
		{"patched", func(w io.Writer) io.WriteCloser { return new(relaxedCanonicalizer).CanonicalizeBody(w) }},
		{"reference", func(w io.Writer) io.WriteCloser { return &refRelaxedBody{w: w} }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				wc := c.mk(io.Discard)
				wc.Write(body)
				wc.Close()
			}
		})
	}
}
