package smtp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

type EnhancedCode [3]int

// SMTPError specifies the error code, enhanced error code (if any) and
// message returned by the server.
type SMTPError struct {
	Code         int
	EnhancedCode EnhancedCode
	Message      string
}

// NoEnhancedCode is used to indicate that enhanced error code should not be
// included in response.
//
// Note that RFC 2034 requires an enhanced code to be included in all 2xx, 4xx
// and 5xx responses. This constant is exported for use by extensions, you
// should probably use EnhancedCodeNotSet instead.
var NoEnhancedCode = EnhancedCode{-1, -1, -1}

// EnhancedCodeNotSet is a nil value of EnhancedCode field in SMTPError, used
// to indicate that backend failed to provide enhanced status code. X.0.0 will
// be used (X is derived from error code).
var EnhancedCodeNotSet = EnhancedCode{0, 0, 0}

func (err *SMTPError) Error() string {
	s := fmt.Sprintf("SMTP error %03d", err.Code)
	if err.Message != "" {
		s += ": " + err.Message
	}
	return s
}

func (err *SMTPError) Temporary() bool {
	return err.Code/100 == 4
}

var ErrDataTooLarge = &SMTPError{
	Code:         552,
	EnhancedCode: EnhancedCode{5, 3, 4},
	Message:      "Maximum message size exceeded",
}

// ErrDotBareCR is returned by the DATA reader for a line starting with a
// dot and a CR not followed by LF: a peer taking CR alone as a line end
// sees the end of data there (SMTP smuggling), so what follows cannot be
// read in step with the client. Every later read returns it too; the
// server should close the connection after its reply. (Switchyard patch.)
var ErrDotBareCR = &SMTPError{
	Code:         500,
	EnhancedCode: EnhancedCode{5, 5, 2},
	Message:      "Bare CR after a dot at the start of a line (SMTP smuggling)",
}

type dataReader struct {
	r     *bufio.Reader
	state int
	err   error // Sticky: ErrDotBareCR.

	limited bool
	n       int64 // Maximum bytes remaining
}

func newDataReader(c *Conn) *dataReader {
	dr := &dataReader{
		r: c.text.R,
	}

	if c.server.MaxMessageBytes > 0 {
		dr.limited = true
		dr.n = int64(c.server.MaxMessageBytes)
	}

	return dr
}

func (r *dataReader) Read(b []byte) (n int, err error) {
	if r.limited {
		if r.n <= 0 {
			return 0, ErrDataTooLarge
		}
		if int64(len(b)) > r.n {
			b = b[0:r.n]
		}
	}

	// Code below is taken from net/textproto with only one modification to
	// not rewrite CRLF -> LF.

	// Run data through a simple state machine to
	// elide leading dots and detect End-of-Data (<CR><LF>.<CR><LF>) line.
	const (
		stateBeginLine = iota // beginning of line; initial state; must be zero
		stateDot              // read . at beginning of line
		stateDotCR            // read .\r at beginning of line
		stateCR               // read \r (possibly at end of line)
		stateData             // reading data in middle of line
		stateEOF              // reached .\r\n end marker line
	)
	if r.err != nil {
		return 0, r.err
	}
	for n < len(b) && r.state != stateEOF {
		if r.state == stateData {
			// In the middle of a line only CR changes the state: copy the
			// buffered bytes up to the next one at once. (Switchyard patch:
			// upstream reads byte by byte.)
			if r.r.Buffered() == 0 {
				if _, err = r.r.Peek(1); err != nil {
					if err == io.EOF {
						err = io.ErrUnexpectedEOF
					}
					break
				}
			}
			k := r.r.Buffered()
			if k > len(b)-n {
				k = len(b) - n
			}
			chunk, _ := r.r.Peek(k)
			if i := bytes.IndexByte(chunk, '\r'); i >= 0 {
				chunk = chunk[:i]
			}
			if len(chunk) > 0 {
				n += copy(b[n:], chunk)
				r.r.Discard(len(chunk))
				continue
			}
		}
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
			// Upstream drops the dot and the CR here. (Switchyard patch.)
			r.err = ErrDotBareCR
			return n, r.err
		case stateCR:
			if c == '\n' {
				r.state = stateBeginLine
				break
			}
			// A CR after a bare CR may still end the line: CR CR LF "."
			// CR LF ends the data. (Switchyard patch; upstream missed that
			// end and read on.)
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
