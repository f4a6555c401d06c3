package smtpclient

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Sizes of the buffers for message data.
const (
	dataBuffer = 16 << 10 // Per connection, for DATA.
	bdatChunk  = 1 << 20  // Per Bdat call: the size of a BDAT chunk.
)

// Data sends DATA (RFC 5321 §4.1.1.4). After a 354 reply the server takes
// all that follows as the message: send it with WriteData, or Close.
func (c *Client) Data() (Reply, error) {
	r, err := c.cmd(c.timeouts.Command, "DATA")
	c.inData = err == nil && r.Code == 354
	return r, err
}

// WriteData sends msg, after a 354 reply to Data, as the mail data:
// dot-stuffed, bare LF sent as CRLF, ended with "." on a line of its own
// (RFC 5321 §4.5.2), and returns the reply to its end. Each write is bounded
// by Timeouts.Command, the reply by Timeouts.DataEnd. An error reading msg
// wraps ErrReadMessage and closes the connection without ending the data,
// so the server discards the message (RFC 5321 §3.3).
func (c *Client) WriteData(msg io.Reader) (Reply, error) {
	if !c.inData {
		return Reply{}, errors.New("smtpclient: WriteData without a 354 reply to Data")
	}
	c.inData = false
	if c.buf == nil {
		c.buf = make([]byte, dataBuffer)
	}
	c.bol, c.cr = true, false
	for {
		n, rerr := msg.Read(c.buf)
		if n > 0 {
			c.raw.SetWriteDeadline(time.Now().Add(c.timeouts.Command))
			if err := c.writeDotStuffed(c.buf[:n]); err != nil {
				return Reply{}, err
			}
		}
		if rerr == io.EOF {
			break
		} else if rerr != nil {
			c.Close()
			return Reply{}, fmt.Errorf("%w: %w", ErrReadMessage, rerr)
		}
	}
	bw := c.bw
	if !c.bol {
		if !c.cr {
			bw.WriteByte('\r')
		}
		bw.WriteByte('\n')
	}
	bw.WriteString(".\r\n")
	c.deadline(c.timeouts.DataEnd)
	return c.flushRead()
}

// writeDotStuffed buffers p as message data: a dot starting a line is
// doubled (RFC 5321 §4.5.2) and a LF without CR before it becomes CRLF.
func (c *Client) writeDotStuffed(p []byte) error {
	bw := c.bw
	var err error
	for len(p) > 0 {
		if c.bol && p[0] == '.' {
			bw.WriteByte('.')
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			_, err = bw.Write(p)
			c.bol, c.cr = false, p[len(p)-1] == '\r'
			break
		}
		crlf := c.cr
		if i > 0 {
			crlf = p[i-1] == '\r'
		}
		if crlf {
			_, err = bw.Write(p[:i+1])
		} else {
			bw.Write(p[:i])
			_, err = bw.WriteString("\r\n")
		}
		c.bol, c.cr = true, false
		p = p[i+1:]
	}
	return err // bufio.Writer errors are sticky: the last is the first.
}

// Bdat sends msg in BDAT chunks (RFC 3030 §2), as BODY=BINARYMIME requires
// (RFC 3030 §3), unchanged, and returns the first reply that is not 250 or
// the reply to the last chunk. The server must offer CHUNKING. An error
// reading msg wraps ErrReadMessage and closes the connection before the
// last chunk, so the server discards the message.
func (c *Client) Bdat(msg io.Reader) (Reply, error) {
	buf := make([]byte, bdatChunk)
	for {
		n, err := io.ReadFull(msg, buf)
		last := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if err != nil && !last {
			c.Close()
			return Reply{}, fmt.Errorf("%w: %w", ErrReadMessage, err)
		}
		c.deadline(c.timeouts.Command)
		c.bw.WriteString("BDAT ")
		c.bw.Write(strconv.AppendInt(c.num[:0], int64(n), 10))
		if last {
			c.bw.WriteString(" LAST")
		}
		c.bw.WriteString("\r\n")
		c.bw.Write(buf[:n])
		if err := c.bw.Flush(); err != nil {
			return Reply{}, err
		}
		if last {
			c.deadline(c.timeouts.DataEnd)
		}
		r, err := c.readReply()
		if err != nil || last || r.Code != 250 {
			return r, err
		}
	}
}
