package smtpclient

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Limits on what the server sends.
const (
	maxReplyLine  = 4096 // Bytes; RFC 5321 §4.5.3.1.5 allows 512.
	maxReplyLines = 256
)

// Reply is an SMTP reply (RFC 5321 §4.2).
type Reply struct {
	Code         int    // Three digits, 200-599.
	EnhancedCode string // RFC 3463, e.g. "5.1.1"; empty if the reply has none.
	Text         string // The lines joined by spaces, without the enhanced code.
}

// String gives the reply as the server sent it, on one line.
func (r Reply) String() string {
	s := strconv.Itoa(r.Code)
	if r.EnhancedCode != "" {
		s += " " + r.EnhancedCode
	}
	if r.Text != "" {
		s += " " + r.Text
	}
	return s
}

// Positive reports whether the reply is a positive completion (2xx, RFC 5321
// §4.2.1).
func (r Reply) Positive() bool { return r.Code/100 == 2 }

// ReplyError is a reply refusing a step of connection setup or authentication.
// The connection is closed, except after AUTH.
type ReplyError struct {
	Command string // What was refused: "greeting", "EHLO", "STARTTLS", "AUTH PLAIN", ...
	Reply   Reply
}

func (e *ReplyError) Error() string { return e.Command + ": " + e.Reply.String() }

// readReply reads a possibly multi-line reply (RFC 5321 §4.2). The text of
// each line stays in c.lines until the next reply. Single-line replies, the
// usual ones, cost one allocation.
func (c *Client) readReply() (Reply, error) {
	var r Reply
	c.lines = c.lines[:0]
	for {
		b, err := c.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return Reply{}, fmt.Errorf("%w: reply line too long", ErrProtocol)
		} else if err != nil {
			return Reply{}, err
		}
		b = b[:len(b)-1]
		if len(b) > 0 && b[len(b)-1] == '\r' {
			b = b[:len(b)-1]
		}
		if len(b) < 3 || len(b) > 3 && b[3] != ' ' && b[3] != '-' {
			return Reply{}, fmt.Errorf("%w: malformed reply line %q", ErrProtocol, b)
		}
		if hasControl(b) {
			// RFC 5321 §4.2: text is printable, with tabs. A bare CR or
			// another control character would reach logs and DSNs.
			return Reply{}, fmt.Errorf("%w: control character in reply line %q", ErrProtocol, b)
		}
		code := 0
		for _, d := range b[:3] {
			if d < '0' || d > '9' {
				return Reply{}, fmt.Errorf("%w: malformed reply line %q", ErrProtocol, b)
			}
			code = code*10 + int(d-'0')
		}
		if code < 200 || code > 599 || r.Code != 0 && code != r.Code {
			return Reply{}, fmt.Errorf("%w: malformed reply line %q", ErrProtocol, b)
		}
		r.Code = code
		text := ""
		if len(b) > 4 {
			text = string(b[4:])
		}
		c.lines = append(c.lines, text)
		if len(b) == 3 || b[3] == ' ' {
			break
		}
		if len(c.lines) >= maxReplyLines {
			return Reply{}, fmt.Errorf("%w: reply has too many lines", ErrProtocol)
		}
	}
	// RFC 2034 §4: the enhanced code starts every line of the reply.
	first := c.lines[0]
	if enh, rest, ok := strings.Cut(first, " "); ok && isEnhancedCode(enh, r.Code) {
		r.EnhancedCode, first = enh, rest
	} else if isEnhancedCode(first, r.Code) {
		r.EnhancedCode, first = first, ""
	}
	if len(c.lines) == 1 {
		r.Text = strings.TrimSpace(first)
		return r, nil
	}
	var sb strings.Builder
	sb.WriteString(first)
	for _, l := range c.lines[1:] {
		if enh := r.EnhancedCode; enh != "" && len(l) > len(enh) && l[len(enh)] == ' ' && l[:len(enh)] == enh {
			l = l[len(enh)+1:]
		}
		sb.WriteByte(' ')
		sb.WriteString(l)
	}
	r.Text = strings.TrimSpace(sb.String())
	return r, nil
}

// hasControl reports whether b holds an ASCII control character other than
// a tab.
func hasControl(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return true
		}
	}
	return false
}

// isEnhancedCode reports whether s is an enhanced status code (RFC 3463 §2)
// of the class of reply code.
func isEnhancedCode(s string, code int) bool {
	class, rest, ok := strings.Cut(s, ".")
	if !ok || len(class) != 1 || int(class[0]-'0') != code/100 {
		return false
	}
	subject, detail, ok := strings.Cut(rest, ".")
	return ok && isCodeNumber(subject) && isCodeNumber(detail)
}

// isCodeNumber reports whether s is 1 to 3 digits.
func isCodeNumber(s string) bool {
	if len(s) == 0 || len(s) > 3 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
