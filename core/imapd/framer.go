package imapd

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-mta/switchyard/core/clientconn"
)

// Framing limits. go-imap v2.0.0-beta.8 answers a command past its own
// limits (50 KiB of command bytes, lists 1,000 deep, buffered literals of
// 4,096 bytes, response lines of its 4,096-byte read buffer) with
// NO [SERVERBUG] or a blocked read, and then parses the rest of the command
// as the next one. The framer keeps such commands from go-imap: it refuses
// them itself, skipping their rest, below go-imap's limits.
const (
	// maxCommandBytes bounds a command's bytes outside literals (RFC 2683
	// §3.2.1.5 asks for at least 8,000 octets per line).
	maxCommandBytes = 40 << 10
	// maxNesting bounds the depth of parenthesized lists.
	maxNesting = 100
	// maxBufferedLiteral is go-imap's limit for a literal other than
	// APPEND's message, which it reads into memory.
	maxBufferedLiteral = 4096
	// maxResponseLine bounds an AUTHENTICATE response line or IDLE's DONE
	// line, read whole into go-imap's 4,096-byte buffer with its CRLF.
	maxResponseLine = 4094
	// keepHead is what the framer keeps of an over-long line: its tag.
	keepHead = 128
	// framerWriteTimeout bounds the framer's own replies.
	framerWriteTimeout = 30 * time.Second
)

// errFramerClosed is returned to go-imap when the framer ends the
// connection itself, after its BYE; it wraps net.ErrClosed, which go-imap
// does not log.
var errFramerClosed = fmt.Errorf("imapd: connection ended by the framer: %w", net.ErrClosed)

// errHandedOff ends the plain server's reading after STARTTLS.
var errHandedOff = errors.New("imapd: connection handed to the TLS server")

// framer stands between a client connection and go-imap's reader. It
// frames the client's input into commands: lines, with the literals they
// announce (RFC 9051 §4.3: "{n}" synchronizing, "{n+}" not, RFC 7888), and
// passes go-imap one line or one piece of literal at a time, only what it
// has checked. It follows go-imap's tagged responses and continuation
// requests, so that what go-imap leaves of a command it has already
// answered (a non-synchronizing literal, say) is skipped rather than read as
// the next command. It also does STARTTLS (RFC 9051 §6.2.1) for the plain
// server and hands the TLS connection to the server for TLS connections,
// and cuts off clients that send no command line within GreetingTimeout.
type framer struct {
	srv    *Server
	client *clientconn.Conn
	log    *slog.Logger

	// authenticated is set by the session on login: IDLE is then accepted.
	authenticated atomic.Bool
	// saslLine is set by the session when go-imap is to read an
	// AUTHENTICATE response line; saslTooLong when that line was too long.
	saslLine, saslTooLong atomic.Bool

	// Read side, used by the goroutine of go-imap's reader.
	br       *bufio.Reader
	ready    []byte    // Passed on, not yet read by go-imap.
	line     []byte    // Buffer of the line being read.
	litBuf   []byte    // Buffer of a literal being passed.
	greetBy  time.Time // Deadline for the first command line; zero after it.
	readBy   time.Time // go-imap's read deadline.
	doneLine bool      // The next line ends IDLE.
	err      error     // Of the last read; it ended the reading.
	cmd      command

	mu       sync.Mutex // Guards the fields below and serializes writes.
	conn     net.Conn   // The client connection, or TLS over it.
	tls      *tls.Conn  // conn, if TLS.
	view     *frameConn // What go-imap reads from now.
	tag      string     // Of the command being framed.
	answered bool       // go-imap wrote the command's tagged response.
	contSent bool       // go-imap wrote a continuation request ("+").
	out      outWatch
}

// command is the framing state of the command being read.
type command struct {
	active   bool // Some of it is passed on, more is to come.
	tag      string
	name     string // Upper case; "UID FETCH" for UID commands.
	nameEnd  int    // Offset of the end of name in the first line.
	bytes    int    // Passed on, outside literals.
	literals int    // Announced so far.
	scan     lineScan
	// A literal announced by the last line passed on, not yet started.
	litPending bool
	litSync    bool
	litSize    int64
	lit        int64 // Literal bytes still to pass on.
}

// newFramer frames nc, a client connection or TLS over it.
func newFramer(srv *Server, nc net.Conn) (*framer, error) {
	client, ok := clientconn.Of(nc)
	if !ok {
		return nil, errors.New("imapd: connection not from a clientconn.Listener")
	}
	f := &framer{srv: srv, client: client, log: client.Log, conn: nc, greetBy: time.Now().Add(srv.cfg.GreetingTimeout)}
	f.tls, _ = nc.(*tls.Conn)
	f.br = bufio.NewReaderSize(nc, 16<<10)
	f.view = &frameConn{f: f}
	deadline := f.greetBy
	if f.tls != nil {
		// The handshake, done before the greeting.
		if d := time.Now().Add(srv.cfg.HandshakeTimeout); d.Before(deadline) {
			deadline = d
		}
	}
	nc.SetReadDeadline(deadline)
	return f, nil
}

func (f *framer) isTLS() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tls != nil
}

// read serves go-imap's reads: what fill has passed on. An error ends
// the reading for good: what the framer has buffered must not reach
// go-imap as commands after it refused or ended the session.
func (f *framer) read(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	for len(f.ready) == 0 {
		err := f.fill()
		if errors.Is(err, errHandedOff) {
			return 0, io.EOF // For the plain server; the TLS one reads on.
		} else if err != nil {
			f.err = err
			return 0, err
		}
	}
	n := copy(p, f.ready)
	f.ready = f.ready[n:]
	return n, nil
}

// fill passes on the next line or piece of literal, or refuses a command.
func (f *framer) fill() error {
	c := &f.cmd
	switch {
	case c.litPending:
		return f.startLiteral()
	case c.lit > 0:
		if len(f.litBuf) == 0 {
			f.litBuf = make([]byte, 16<<10)
		}
		n, err := f.br.Read(f.litBuf[:min(c.lit, int64(len(f.litBuf)))])
		if err != nil {
			return f.readErr(err)
		}
		c.lit -= int64(n)
		f.ready = f.litBuf[:n]
		return nil
	case f.saslLine.Swap(false):
		return f.responseLine(true)
	case f.doneLine:
		f.doneLine = false
		return f.responseLine(false)
	case c.active:
		if answered, _ := f.status(); answered {
			// go-imap answered before the line after a literal.
			if err := f.skipCommand(0); err != nil {
				return err
			}
			f.cmd = command{}
			return nil
		}
	}
	return f.commandLine()
}

// startLiteral starts passing on the literal the last line announced, if
// go-imap is reading it: it asked for a synchronizing one, or has not
// answered the command. Otherwise the command ended with go-imap's answer:
// a synchronizing literal was never sent, a non-synchronizing one is
// skipped with the rest of the command.
func (f *framer) startLiteral() error {
	c := &f.cmd
	answered, cont := f.status()
	switch {
	case answered && c.litSync:
		f.cmd = command{}
	case answered:
		if err := f.skipCommand(c.litSize); err != nil {
			return err
		}
		f.cmd = command{}
	case c.litSync && !cont:
		// go-imap reads on without asking for the literal: the client
		// will not send it.
		return f.bye("CLIENTBUG", "Literal refused")
	default:
		c.litPending, c.lit = false, c.litSize
	}
	return nil
}

// responseLine passes on a line that is not a command: an AUTHENTICATE
// response or the DONE of IDLE. One too long for go-imap is replaced by
// an empty line, and for AUTHENTICATE marked so that the session refuses
// it.
func (f *framer) responseLine(sasl bool) error {
	line, long, err := f.readLine(maxResponseLine+2, nil)
	if err != nil {
		return err
	}
	if long {
		f.log.Info("imap: response line too long", slog.Bool("authenticate", sasl))
		if sasl {
			f.saslTooLong.Store(true)
		}
		line = []byte("\r\n")
	}
	f.ready = line
	return nil
}

// commandLine reads the first or a further line of a command and passes it
// on, or refuses the command.
func (f *framer) commandLine() error {
	c := &f.cmd
	first := !c.active
	if first {
		*c = command{}
	}
	c.scan.quoted, c.scan.escaped = false, false
	line, long, err := f.readLine(maxCommandBytes-c.bytes, &c.scan)
	if err != nil {
		return err
	}
	if first {
		f.greeted()
		c.tag, c.name, c.nameEnd = parseCommandStart(line)
		f.mu.Lock()
		f.tag, f.answered, f.contSent = c.tag, false, false
		f.mu.Unlock()
	}
	size, sync, hasLit := c.scan.literal()
	switch {
	case first && bytes.IndexByte([]byte(c.tag), '+') >= 0:
		// RFC 9051 §9: tag excludes "+", which go-imap reads as an atom;
		// its tagged responses would read as continuation requests.
		c.tag = ""
		return f.refuse(first, "CLIENTBUG", "Invalid tag", hasLit, sync, size)
	case long:
		return f.refuse(first, "TOOBIG", "Command line too long", hasLit, sync, size)
	case c.scan.unterminated:
		return f.refuse(first, "CLIENTBUG", "Quoted string not terminated", hasLit, sync, size)
	case c.scan.maxDepth > maxNesting:
		return f.refuse(first, "LIMIT", "Command nested too deeply", hasLit, sync, size)
	case hasLit && f.literalTooBig(line, first, sync, size):
		return f.refuse(first, "TOOBIG", "Literal too big for this command", hasLit, sync, size)
	}
	c.bytes += len(line)
	if first && !hasLit && isBare(line[c.nameEnd:]) {
		switch c.name {
		case "STARTTLS":
			if !f.isTLS() && f.srv.handoff != nil {
				return f.startTLS(c.tag)
			}
		case "IDLE":
			// go-imap reads the next line as DONE (RFC 2177).
			f.doneLine = f.authenticated.Load()
		}
	}
	if hasLit {
		c.literals++
		c.litPending, c.litSync, c.litSize = true, sync, size
		f.mu.Lock()
		f.contSent = false
		f.mu.Unlock()
	}
	c.active = hasLit
	f.ready = line
	return nil
}

// literalTooBig tells whether go-imap would refuse the literal line
// announces, or take a non-synchronizing one over APPENDLIMIT: APPEND's
// message may be up to APPENDLIMIT (go-imap refuses a larger synchronizing
// one itself); other literals, APPEND's mailbox name among them, are read
// into memory by go-imap up to maxBufferedLiteral.
func (f *framer) literalTooBig(line []byte, first, sync bool, size int64) bool {
	c := &f.cmd
	mailboxName := first && c.literals == 0 && len(bytes.TrimSpace(line[c.nameEnd:max(c.nameEnd, bytes.LastIndexByte(line, '{'))])) == 0
	if c.name == "APPEND" && !mailboxName {
		return !sync && size > f.srv.cfg.MaxMessageSize
	}
	return size > maxBufferedLiteral
}

// refuse answers a command the framer keeps from go-imap with BAD and the
// response code (RFC 9051 §7.1), skipping its rest. If go-imap has part of
// it, the session ends instead.
func (f *framer) refuse(first bool, code, text string, hasLit, sync bool, size int64) error {
	if !first {
		return f.bye(code, text)
	}
	if hasLit && !sync {
		if err := f.skipCommand(size); err != nil {
			return err
		}
	}
	tag := f.cmd.tag
	if tag == "" {
		tag = "*"
	}
	f.cmd = command{}
	f.log.Info("imap: command refused", slog.String("reason", text))
	return f.writeLine(tag + " BAD [" + code + "] " + text)
}

// skipCommand discards the rest of a command: lit bytes of literal, then
// lines and the non-synchronizing literals they announce. A command ends
// with a line announcing none, or a synchronizing one, which the client
// sends only when asked.
func (f *framer) skipCommand(lit int64) error {
	for {
		if lit > f.srv.cfg.MaxMessageSize {
			return f.bye("TOOBIG", "Literal too big")
		}
		if _, err := f.br.Discard(int(lit)); err != nil {
			return f.readErr(err)
		}
		var sc lineScan
		if _, _, err := f.readLine(0, &sc); err != nil {
			return err
		}
		size, sync, ok := sc.literal()
		if !ok || sync {
			return nil
		}
		lit = size
	}
}

// readLine reads through the next LF. Of a line longer than max it keeps
// only the first bytes, and reports it long. All bytes go through sc.
func (f *framer) readLine(max int, sc *lineScan) (line []byte, long bool, err error) {
	f.line = f.line[:0]
	for {
		frag, err := f.br.ReadSlice('\n')
		if sc != nil {
			sc.feed(frag)
		}
		if !long && len(f.line)+len(frag) > max {
			long = true
			f.line = append(f.line, frag[:min(len(frag), keepHead)]...)
			f.line = f.line[:min(len(f.line), keepHead)]
		} else if !long {
			f.line = append(f.line, frag...)
		}
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err != nil:
			return nil, false, f.readErr(err)
		}
		return f.line, long, nil
	}
}

// startTLS does STARTTLS (RFC 9051 §6.2.1) in place of go-imap's plain
// server, and hands the TLS connection to the server of TLS connections,
// which does not greet it again. Plaintext the client sent after the
// command is dropped: it must not count as sent over TLS.
func (f *framer) startTLS(tag string) error {
	f.cmd = command{}
	f.br.Reset(f.client)
	if err := f.writeLine(tag + " OK Begin TLS negotiation now"); err != nil {
		return err
	}
	tc := tls.Server(f.client, f.srv.cfg.TLS)
	tc.SetDeadline(time.Now().Add(f.srv.cfg.HandshakeTimeout))
	if err := tc.Handshake(); err != nil {
		f.log.Info("imap: STARTTLS handshake failed", slog.Any("err", err))
		f.client.Close()
		return errFramerClosed
	}
	tc.SetDeadline(time.Time{})
	f.mu.Lock()
	f.conn, f.tls = tc, tc
	f.view = &frameConn{f: f}
	f.out = outWatch{dropLine: true} // The greeting of the TLS server.
	view := f.view
	f.mu.Unlock()
	f.br.Reset(tc)
	if !f.srv.handoff.give(view) {
		tc.Close()
		return errFramerClosed
	}
	return errHandedOff
}

// status returns what go-imap wrote for the command being framed.
func (f *framer) status() (answered, contSent bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.answered, f.contSent
}

// greeted ends the greeting deadline: a command line came.
func (f *framer) greeted() {
	if !f.greetBy.IsZero() {
		f.greetBy = time.Time{}
		f.setReadDeadline(f.readBy)
	}
}

// setReadDeadline applies go-imap's read deadline t, and before the first
// command line the greeting deadline if earlier.
func (f *framer) setReadDeadline(t time.Time) error {
	f.readBy = t
	if !f.greetBy.IsZero() && (t.IsZero() || f.greetBy.Before(t)) {
		t = f.greetBy
	}
	f.mu.Lock()
	conn := f.conn
	f.mu.Unlock()
	return conn.SetReadDeadline(t)
}

// readErr returns a read error for go-imap; past the greeting deadline it
// first says BYE (RFC 9051 §7.1.5) and closes the connection.
func (f *framer) readErr(err error) error {
	if !f.greetBy.IsZero() && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(f.greetBy) {
		f.log.Info("imap: no command line in time, closing", slog.Duration("greeting_timeout", f.srv.cfg.GreetingTimeout))
		return f.bye("UNAVAILABLE", "Timed out waiting for a command")
	}
	return err
}

// bye says BYE with a response code and closes the connection.
func (f *framer) bye(code, text string) error {
	if code != "UNAVAILABLE" {
		f.log.Info("imap: closing connection", slog.String("reason", text))
	}
	f.writeLine("* BYE [" + code + "] " + text)
	f.mu.Lock()
	f.conn.Close()
	f.mu.Unlock()
	return errFramerClosed
}

// writeLine writes a line of the framer's own. go-imap is then waiting for
// input, so it writes nothing meanwhile.
func (f *framer) writeLine(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tls != nil && !f.tls.ConnectionState().HandshakeComplete {
		return errFramerClosed // Nothing can be said without TLS.
	}
	f.conn.SetWriteDeadline(time.Now().Add(framerWriteTimeout))
	defer f.conn.SetWriteDeadline(time.Time{})
	_, err := io.WriteString(f.conn, s+"\r\n")
	return err
}

// peerCertificates are the client's TLS certificates, nil without.
func (f *framer) peerCertificates() []*x509.Certificate {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tls == nil {
		return nil
	}
	return f.tls.ConnectionState().PeerCertificates
}

// handshake runs the TLS handshake of an imaps connection, before the
// greeting, if it has not run; mu not held.
func (f *framer) handshake() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.handshakeLocked()
}

// handshakeLocked is handshake with mu held. It runs within the greeting
// deadline.
func (f *framer) handshakeLocked() error {
	if f.tls == nil || f.tls.ConnectionState().HandshakeComplete {
		return nil
	}
	err := f.tls.Handshake()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		f.log.Info("imap: TLS handshake timed out, closing", slog.Duration("greeting_timeout", f.srv.cfg.GreetingTimeout))
	}
	return err
}

// write writes go-imap's output for view v, noting tagged responses and
// continuation requests.
func (f *framer) write(v *frameConn, p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v != f.view {
		return 0, net.ErrClosed
	}
	if err := f.handshakeLocked(); err != nil {
		return 0, err
	}
	out := f.out.watch(p, f)
	if len(out) > 0 {
		if _, err := f.conn.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// outWatch follows go-imap's output line by line, skipping literals.
type outWatch struct {
	dropLine bool   // Drop the next line (a second greeting).
	held     []byte // The start of the current line, up to maxHeld.
	passing  bool   // Past maxHeld: passing the line on as it comes.
	tail     []byte // The end of a passed line, for a literal's "{n}".
	lit      int64  // Literal bytes to pass on.
	buf      []byte
}

// maxHeld is the longest output line held whole: status responses and
// continuation requests of interest are shorter.
const maxHeld = 256

// goIMAPInternalError is the line go-imap writes, with the tag before it,
// for an error not of the imap.Error type: in practice its decoder's,
// for malformed arguments (a sequence number 0, an invalid modified UTF-7
// mailbox name, a date, SASL-IR that is not base64); this package's own
// internal errors read "Internal error, try again later".
const goIMAPInternalError = " NO [SERVERBUG] Internal server error\r\n"

// watch returns p to write, and notes go-imap's answers for f; f.mu held.
func (w *outWatch) watch(p []byte, f *framer) []byte {
	w.buf = w.buf[:0]
	for len(p) > 0 {
		switch {
		case w.lit > 0:
			n := int(min(w.lit, int64(len(p))))
			w.buf = append(w.buf, p[:n]...)
			w.lit -= int64(n)
			p = p[n:]
		case w.dropLine:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				return w.buf
			}
			w.dropLine = false
			p = p[i+1:]
		case w.passing:
			i := bytes.IndexByte(p, '\n')
			chunk := p
			if i >= 0 {
				chunk = p[:i+1]
			}
			w.buf = append(w.buf, chunk...)
			w.tail = append(w.tail, chunk...)
			w.tail = w.tail[max(0, len(w.tail)-32):]
			p = p[len(chunk):]
			if i >= 0 {
				w.passing = false
				w.endLine(w.tail)
				w.tail = w.tail[:0]
			}
		default:
			i := bytes.IndexByte(p, '\n')
			chunk := p
			if i >= 0 {
				chunk = p[:i+1]
			}
			if len(w.held)+len(chunk) > maxHeld {
				w.note(w.held, f)
				w.buf = append(w.buf, w.held...)
				w.tail = append(w.tail[:0], w.held[max(0, len(w.held)-32):]...)
				w.held = w.held[:0]
				w.passing = true
				continue
			}
			w.held = append(w.held, chunk...)
			p = p[len(chunk):]
			if i >= 0 {
				w.buf = append(w.buf, w.line(w.held, f)...)
				w.held = w.held[:0]
			}
		}
	}
	return w.buf
}

// line notes a whole output line and returns it to write: go-imap's
// internal error for the command's malformed arguments becomes BAD
// (RFC 9051 §7.1.3).
func (w *outWatch) line(l []byte, f *framer) []byte {
	if w.note(l, f) && string(l[len(f.tag):]) == goIMAPInternalError {
		l = []byte(f.tag + " BAD [CLIENTBUG] Invalid command arguments\r\n")
	}
	w.endLine(l)
	return l
}

// note notes a tagged response or a continuation request from the start
// of an output line, and tells whether it is the tagged response.
func (w *outWatch) note(head []byte, f *framer) (tagged bool) {
	switch {
	case f.tag != "" && len(head) > len(f.tag) && string(head[:len(f.tag)+1]) == f.tag+" ":
		f.answered = true
		return true
	case bytes.HasPrefix(head, []byte("+")):
		f.contSent = true
	}
	return false
}

// endLine starts passing the literal a line announces.
func (w *outWatch) endLine(l []byte) {
	var sc lineScan
	sc.feed(l)
	if size, _, ok := sc.literal(); ok {
		w.lit = size
	}
}

// lineScan follows a command line as far as framing needs: quoted strings
// (which may hold parentheses and braces), the nesting of parenthesized
// lists outside them, and the line's last bytes, where a literal's
// announcement would be.
type lineScan struct {
	quoted, escaped bool
	// unterminated: a quoted string ran to the end of the line, which
	// go-imap would read on into the next (RFC 9051 §4.3: no CR or LF in
	// a quoted string).
	unterminated    bool
	depth, maxDepth int
	tail            []byte
}

func (sc *lineScan) feed(b []byte) {
	for _, c := range b {
		switch {
		case sc.escaped:
			sc.escaped = false
		case sc.quoted:
			switch c {
			case '\\':
				sc.escaped = true
			case '"':
				sc.quoted = false
			case '\n':
				sc.quoted, sc.unterminated = false, true
			}
		case c == '"':
			sc.quoted = true
		case c == '(':
			sc.depth++
			sc.maxDepth = max(sc.maxDepth, sc.depth)
		case c == ')':
			sc.depth = max(0, sc.depth-1)
		}
	}
	sc.tail = append(sc.tail, b...)
	sc.tail = sc.tail[max(0, len(sc.tail)-32):]
}

// literal returns the literal the line announces at its end: "{n}" or
// "{n+}" (or "~{n}", literal8, RFC 3516), then CRLF, which go-imap takes
// with a space before and without CR. A size too large to count is
// returned as the largest int64.
func (sc *lineScan) literal() (size int64, sync, ok bool) {
	t := sc.tail
	t = bytes.TrimSuffix(t, []byte("\n"))
	t = bytes.TrimSuffix(t, []byte("\r"))
	t = bytes.TrimSuffix(t, []byte(" "))
	if !bytes.HasSuffix(t, []byte("}")) {
		return 0, false, false
	}
	open := bytes.LastIndexByte(t, '{')
	if open < 0 {
		return 0, false, false
	}
	num := t[open+1 : len(t)-1]
	sync = true
	if n, ok := bytes.CutSuffix(num, []byte("+")); ok {
		num, sync = n, false
	}
	if len(num) == 0 || bytes.ContainsFunc(num, func(r rune) bool { return r < '0' || r > '9' }) {
		return 0, false, false
	}
	size, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil {
		size = 1<<63 - 1
	}
	return size, sync, true
}

// parseCommandStart returns a command line's tag (empty if not a valid
// one) and its name in upper case, with the name's end.
func parseCommandStart(line []byte) (tag, name string, nameEnd int) {
	atom := func(from int) (string, int) {
		i := from
		for i < len(line) && isAtomChar(line[i]) {
			i++
		}
		return string(line[from:i]), i
	}
	tag, i := atom(0)
	if i >= len(line) || line[i] != ' ' {
		return tag, "", i
	}
	name, end := atom(i + 1)
	name = upperASCII(name)
	if name == "UID" && end < len(line) && line[end] == ' ' {
		sub, subEnd := atom(end + 1)
		return tag, "UID " + upperASCII(sub), subEnd
	}
	return tag, name, end
}

// isAtomChar is ATOM-CHAR (RFC 9051 §9), as go-imap reads tags.
func isAtomChar(c byte) bool {
	switch c {
	case '(', ')', '{', ' ', '%', '*', '"', '\\', ']':
		return false
	}
	return c > 0x1f && c < 0x7f
}

func upperASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// isBare tells whether the rest of a command line after its name is only
// its end, as go-imap reads it: an optional space, an optional CR, LF.
func isBare(rest []byte) bool {
	rest = bytes.TrimSuffix(rest, []byte("\n"))
	rest = bytes.TrimSuffix(rest, []byte("\r"))
	return len(rest) == 0 || string(rest) == " "
}

// frameConn is the connection go-imap serves: reads come from the framer.
// After STARTTLS the plain server's frameConn reads EOF and closes nothing.
type frameConn struct {
	f *framer
}

func (v *frameConn) current() bool {
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	return v.f.view == v
}

func (v *frameConn) Read(p []byte) (int, error) {
	if !v.current() {
		return 0, io.EOF
	}
	return v.f.read(p)
}

func (v *frameConn) Write(p []byte) (int, error) { return v.f.write(v, p) }

func (v *frameConn) Close() error {
	if !v.current() {
		return nil
	}
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	return v.f.conn.Close()
}

func (v *frameConn) LocalAddr() net.Addr  { return v.f.client.LocalAddr() }
func (v *frameConn) RemoteAddr() net.Addr { return v.f.client.RemoteAddr() }

func (v *frameConn) SetDeadline(t time.Time) error {
	if err := v.SetReadDeadline(t); err != nil {
		return err
	}
	return v.SetWriteDeadline(t)
}

func (v *frameConn) SetReadDeadline(t time.Time) error {
	if !v.current() {
		return nil
	}
	return v.f.setReadDeadline(t)
}

func (v *frameConn) SetWriteDeadline(t time.Time) error {
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	if v.f.view != v {
		return nil
	}
	return v.f.conn.SetWriteDeadline(t)
}

// ConnectionState is the TLS state, for channel binding (core/sasl
// ConnInfo); the zero value without TLS.
func (v *frameConn) ConnectionState() tls.ConnectionState {
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	if v.f.tls == nil {
		return tls.ConnectionState{}
	}
	return v.f.tls.ConnectionState()
}

// framerListener frames the connections of a listener.
type framerListener struct {
	net.Listener
	srv *Server
}

func (l framerListener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		f, err := newFramer(l.srv, nc)
		if err != nil {
			l.srv.log.Error("imap: framing connection", slog.Any("err", err))
			nc.Close()
			continue
		}
		return f.view, nil
	}
}

// handoff is the listener of the server of TLS connections on an imap
// listener: it accepts the connections that did STARTTLS.
type handoff struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	addr   net.Addr
	// accepting is closed at the first Accept: go-imap's Serve has then
	// counted itself in the WaitGroup its Close waits on, which it does
	// after registering the listener, outside its lock (a race with a
	// Close right after New, as tests do).
	accepting     chan struct{}
	acceptingOnce sync.Once
}

func newHandoff() *handoff {
	return &handoff{conns: make(chan net.Conn), closed: make(chan struct{}), accepting: make(chan struct{}), addr: &net.TCPAddr{}}
}

// give passes c to the server; false once closed.
func (h *handoff) give(c net.Conn) bool {
	select {
	case h.conns <- c:
		return true
	case <-h.closed:
		return false
	}
}

func (h *handoff) Accept() (net.Conn, error) {
	h.acceptingOnce.Do(func() { close(h.accepting) })
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.closed:
		return nil, net.ErrClosed
	}
}

func (h *handoff) Close() error {
	h.once.Do(func() { close(h.closed) })
	return nil
}

func (h *handoff) Addr() net.Addr { return h.addr }
