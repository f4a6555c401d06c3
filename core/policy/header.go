package policy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/switchyard-mta/switchyard/sdk"
)

// checkField checks a header field a check prepends: name, colon, value,
// lines ending in CRLF, continuation lines starting with a space or tab
// (RFC 5322 §2.2, §2.2.3), lines at most 998 bytes, no NUL or bare CR/LF.
func checkField(f string) error {
	name, _, ok := strings.Cut(f, ":")
	if !ok || !validFieldName(name) {
		return errors.New("no field name and colon")
	}
	if !strings.HasSuffix(f, "\r\n") {
		return errors.New("does not end in CRLF")
	}
	for i, line := range strings.Split(strings.TrimSuffix(f, "\r\n"), "\r\n") {
		switch {
		case len(line) > maxHeaderLine:
			return fmt.Errorf("line %d longer than %d bytes", i+1, maxHeaderLine)
		case strings.ContainsAny(line, "\r\n\x00"):
			return errors.New("bare CR, LF or NUL")
		case i > 0 && (line == "" || line[0] != ' ' && line[0] != '\t'):
			return fmt.Errorf("line %d is no continuation (starts without a space or tab)", i+1)
		case i > 0 && strings.TrimLeft(line, " \t") == "":
			return fmt.Errorf("line %d is white space only", i+1) // RFC 5322 §3.2.2.
		}
	}
	return nil
}

// validFieldName reports whether s is a field name: printable US-ASCII but
// colon (RFC 5322 §3.6.8), at most 76 bytes so that name and colon fit a
// line.
func validFieldName(s string) bool {
	if s == "" || len(s) > 76 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 || c == ':' {
			return false
		}
	}
	return true
}

// copyBufs are buffers for HeaderEnd and Rewrite: a message a second
// costs no garbage of this size.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// HeaderEnd returns the length of msg's header section, the empty line
// that ends it included; all of msg if it has no empty line. Lines end in
// CRLF (smtpd refuses others).
func HeaderEnd(msg io.ReaderAt, size int64) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	// The message starts with an empty line: no header at all.
	if size >= 2 {
		if _, err := msg.ReadAt(buf[:2], 0); err != nil && err != io.EOF {
			return 0, err
		}
		if buf[0] == '\r' && buf[1] == '\n' {
			return 2, nil
		}
	}
	// CRLF CRLF ends it; chunks overlap by 3 bytes so none is missed.
	for off := int64(0); off < size; off += int64(len(buf) - 3) {
		n, err := msg.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if err != nil && err != io.EOF {
			return 0, err
		}
		if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 {
			return off + int64(i) + 4, nil
		}
		if off+int64(n) >= size {
			break
		}
	}
	return size, nil
}

// Rewrite copies msg to w without the header fields deletes name. A
// field's continuation lines go with it; fields are counted per name
// without case, from 1 at the top. The body is copied as it is.
func Rewrite(w io.Writer, msg io.Reader, deletes []sdk.HeaderRef) error {
	if len(deletes) == 0 {
		bp := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(bp)
		_, err := io.CopyBuffer(w, msg, *bp)
		return err
	}
	drop := map[string]map[int]bool{}
	for _, d := range deletes {
		name := strings.ToLower(d.Name)
		if drop[name] == nil {
			drop[name] = map[int]bool{}
		}
		drop[name][d.Index] = true
	}
	br := bufio.NewReaderSize(msg, 32<<10)
	seen := map[string]int{}
	skipping := false
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A header line too long to look at: the header section ends
			// here for this purpose; the rest is copied as it is.
			if _, err := w.Write(line); err != nil {
				return err
			}
			break
		}
		if len(line) == 0 && err == io.EOF {
			return nil
		}
		if err != nil && err != io.EOF {
			return err
		}
		if len(line) == 2 && line[0] == '\r' || len(line) == 1 {
			// The empty line: the body follows.
			if _, err := w.Write(line); err != nil {
				return err
			}
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			// A continuation line goes with its field.
			if !skipping {
				if _, err := w.Write(line); err != nil {
					return err
				}
			}
		} else {
			skipping = false
			if name, _, ok := bytes.Cut(line, []byte(":")); ok {
				lower := strings.ToLower(string(bytes.TrimRight(name, " \t")))
				seen[lower]++
				skipping = drop[lower][seen[lower]]
			}
			if !skipping {
				if _, err := w.Write(line); err != nil {
					return err
				}
			}
		}
		if err == io.EOF {
			return nil
		}
	}
	_, err := io.Copy(w, br)
	return err
}
