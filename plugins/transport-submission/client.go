package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"

	"github.com/switchyard-mta/switchyard/sdk"
)

// The SMTP client speaks to one smarthost. go-smtp's client is not used: in
// v0.25.1 it says EHLO as "localhost" before STARTTLS, adds BODY=8BITMIME by
// itself, cannot send BODY=BINARYMIME with BDAT, and follows RSET with EHLO.

// Limits on what the server sends.
const (
	maxReplyLine  = 4096 // Bytes; RFC 5321 §4.5.3.1.5 allows 512.
	maxReplyLines = 256
	quitTimeout   = 10 * time.Second
	rsetTimeout   = 20 * time.Second // As Postfix's smtp_rset_timeout.
)

// reply is an SMTP reply (RFC 5321 §4.2).
type reply struct {
	code  int
	enh   string   // Enhanced status code (RFC 3463), e.g. "5.1.1"; empty if none.
	text  string   // Lines joined by spaces, enhanced code removed.
	lines []string // Text of each line, as sent.
}

func (r *reply) String() string {
	s := strconv.Itoa(r.code)
	if r.enh != "" {
		s += " " + r.enh
	}
	if r.text != "" {
		s += " " + r.text
	}
	return s
}

// status is what a reply to MAIL, RCPT or DATA means for the recipients it
// concerns (RFC 5321 §4.2.1).
func (r *reply) status() sdk.Status {
	switch {
	case r.code/100 == 2:
		return sdk.StatusDelivered
	case r.code == 530:
		// Authentication required (RFC 4954 §6): our configuration, not the
		// message, is at fault; keep the mail queued until it is fixed.
		return sdk.StatusTemporary
	case r.code/100 == 5:
		return sdk.StatusPermanent
	}
	return sdk.StatusTemporary
}

// client is one connection to the smarthost, ready for mail transactions:
// greeted, TLS started if configured, authenticated if configured.
type client struct {
	raw      net.Conn // TCP. Deadlines set here bound TLS I/O too.
	conn     net.Conn // raw, or TLS over it.
	br       *bufio.Reader
	bw       *bufio.Writer
	ext      map[string]string // EHLO keywords (upper case) and their parameters.
	tls      sdk.TLSUse
	remoteIP string
	timeout  time.Duration // For a command and its reply.
	stop     func() bool   // Unbinds the delivery's context; see bind.
}

// connError is a failure of the connection itself: network, timeout, TLS, or
// a server breaking the protocol. The connection is unusable.
type connError struct {
	enh  string // Enhanced status code for the recipients.
	what string
	err  error
}

func (e *connError) Error() string { return e.what + ": " + e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

// refusal is a reply that ends connection setup (greeting, EHLO, STARTTLS,
// AUTH) or a local refusal to go on; the connection is closed.
type refusal struct {
	code int
	enh  string
	text string
}

func (e *refusal) Error() string { return e.text }

// dial connects to the smarthost of s and makes the connection ready: TCP,
// implicit TLS or STARTTLS, EHLO, AUTH. Errors are *connError or *refusal.
// The connection is bound to ctx (see bind).
func dial(ctx context.Context, s *settings) (*client, error) {
	d := net.Dialer{Timeout: s.connectTimeout}
	raw, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, &connError{"4.4.1", "connecting to " + s.addr, err}
	}
	c := &client{raw: raw, conn: raw, timeout: s.commandTimeout}
	if a, ok := raw.RemoteAddr().(*net.TCPAddr); ok {
		c.remoteIP = a.IP.String()
	}
	c.setConn(raw)
	c.bind(ctx)
	if err := c.setup(ctx, s); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *client) setup(ctx context.Context, s *settings) error {
	if s.mode == tlsImplicit {
		if err := c.handshake(ctx, s); err != nil {
			return err
		}
	}
	r, err := c.readReply()
	if err != nil {
		return &connError{"4.4.2", "reading greeting", err}
	}
	if r.code != 220 {
		return &refusal{r.code, r.enh, "smarthost greeted with " + r.String()}
	}
	// EHLO is needed for STARTTLS and AUTH; plain SMTP may fall back to
	// HELO when EHLO is not recognized (RFC 5321 §3.2).
	if err := c.hello(s.ehlo, s.mode == tlsNone && s.username == ""); err != nil {
		return err
	}
	if s.mode == tlsStartTLS {
		// RFC 3207 §4: the client requires TLS, so no STARTTLS in EHLO or a
		// refused STARTTLS ends the attempt; it never goes on in plaintext.
		if _, ok := c.ext["STARTTLS"]; !ok {
			return &refusal{0, "4.7.10", "smarthost does not offer STARTTLS; not sending in plaintext"}
		}
		r, err := c.cmd("STARTTLS")
		if err != nil {
			return &connError{"4.4.2", "STARTTLS", err}
		}
		if r.code != 220 {
			return &refusal{r.code, r.enh, "smarthost refused STARTTLS: " + r.String()}
		}
		if err := c.handshake(ctx, s); err != nil {
			return err
		}
		// RFC 3207 §4.2: forget what was learned before TLS.
		if err := c.hello(s.ehlo, false); err != nil {
			return err
		}
	}
	if s.username != "" {
		return c.authenticate(s)
	}
	return nil
}

// handshake starts TLS on the connection and verifies the smarthost as s says.
func (c *client) handshake(ctx context.Context, s *settings) error {
	tc := tls.Client(c.raw, s.tlsConfig)
	c.raw.SetDeadline(time.Now().Add(c.timeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		enh := "4.4.2"
		var cve *tls.CertificateVerificationError
		if errors.As(err, &cve) {
			enh = "4.7.5" // Cryptographic failure (RFC 3463 §3.8).
		}
		return &connError{enh, "TLS with " + s.host, err}
	}
	cs := tc.ConnectionState()
	c.tls = sdk.TLSUse{
		Verification: s.verification,
		Version:      strings.ReplaceAll(tls.VersionName(cs.Version), " ", ""),
		Cipher:       tls.CipherSuiteName(cs.CipherSuite),
	}
	// New buffers: anything the server sent in plaintext after its 220 to
	// STARTTLS is dropped, not taken as a reply over TLS (RFC 3207 §6).
	c.setConn(tc)
	return nil
}

// hello says EHLO and learns the extensions; with heloOK it falls back to
// HELO if EHLO is not recognized.
func (c *client) hello(name string, heloOK bool) error {
	r, err := c.cmd("EHLO " + name)
	if err != nil {
		return &connError{"4.4.2", "EHLO", err}
	}
	if (r.code == 500 || r.code == 502) && heloOK {
		r, err = c.cmd("HELO " + name)
		if err != nil {
			return &connError{"4.4.2", "HELO", err}
		}
		if r.code == 250 {
			c.ext = map[string]string{}
			return nil
		}
	}
	if r.code != 250 {
		return &refusal{r.code, r.enh, "smarthost refused EHLO: " + r.String()}
	}
	// RFC 5321 §4.1.1.1: after the first line, a keyword and parameters
	// per line.
	c.ext = map[string]string{}
	for _, l := range r.lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		c.ext[strings.ToUpper(k)] = v
	}
	return nil
}

// authenticate runs SMTP AUTH (RFC 4954) with the mechanism selected from
// those offered. Any failure, 535 (bad credentials) included, is temporary
// for the recipients: the operator must fix the configuration, and the mail
// stays queued meanwhile.
func (c *client) authenticate(s *settings) error {
	offered, ok := c.ext["AUTH"]
	if !ok {
		return &refusal{0, "4.7.0", "smarthost does not offer AUTH; not sending unauthenticated"}
	}
	m, ok := selectMechanism(s.mechanisms, offered)
	if !ok {
		want := s.mechanisms
		if len(want) == 0 {
			want = mechanismNames()
		}
		return &refusal{0, "4.7.0", fmt.Sprintf("smarthost offers AUTH %s, none of %s", offered, strings.Join(want, " "))}
	}
	cs := c.tlsState()
	r, err := c.auth(m.new(s.username, s.password, cs))
	if err != nil {
		return err
	}
	if r.code != 235 {
		return &refusal{r.code, r.enh, fmt.Sprintf("smarthost refused AUTH %s: %s", m.name, r)}
	}
	return nil
}

// auth runs one SASL exchange and returns the server's final reply.
func (c *client) auth(sc sasl.Client) (*reply, error) {
	b64 := base64.StdEncoding
	mech, ir, err := sc.Start()
	if err != nil {
		return nil, &refusal{0, "4.7.0", fmt.Sprintf("AUTH %s: %v", mech, err)}
	}
	line := "AUTH " + mech
	if ir != nil {
		enc := b64.EncodeToString(ir)
		if enc == "" {
			enc = "=" // An empty initial response (RFC 4954 §4).
		}
		line += " " + enc
	}
	r, err := c.cmd(line)
	for err == nil && r.code == 334 {
		var resp []byte
		challenge, derr := b64.DecodeString(r.text)
		if derr == nil {
			resp, derr = sc.Next(challenge)
		}
		if derr != nil {
			// Cancel the exchange (RFC 4954 §4); the server answers 501.
			if _, err := c.cmd("*"); err != nil {
				return nil, &connError{"4.4.2", "AUTH " + mech, err}
			}
			return nil, &refusal{0, "4.7.0", fmt.Sprintf("AUTH %s: %v", mech, derr)}
		}
		r, err = c.cmd(b64.EncodeToString(resp))
	}
	if err != nil {
		return nil, &connError{"4.4.2", "AUTH " + mech, err}
	}
	return r, nil
}

func (c *client) tlsState() *tls.ConnectionState {
	if tc, ok := c.conn.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		return &cs
	}
	return nil
}

func (c *client) setConn(conn net.Conn) {
	c.conn = conn
	c.br = bufio.NewReaderSize(conn, maxReplyLine)
	c.bw = bufio.NewWriter(conn)
}

// bind closes the connection when ctx is done, ending any exchange at once.
func (c *client) bind(ctx context.Context) {
	c.stop = context.AfterFunc(ctx, func() { c.raw.Close() })
}

// unbind undoes bind. It reports false if the context was done first and the
// connection is closed.
func (c *client) unbind() bool {
	return c.stop()
}

// cmd sends a command line and reads the reply, within the command timeout.
func (c *client) cmd(line string) (*reply, error) {
	return c.cmdWithin(line, c.timeout)
}

// cmdWithin is cmd with timeout instead of the command timeout.
func (c *client) cmdWithin(line string, timeout time.Duration) (*reply, error) {
	c.raw.SetDeadline(time.Now().Add(timeout))
	if _, err := c.bw.WriteString(line + "\r\n"); err != nil {
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, err
	}
	return c.readReply()
}

// readReply reads a possibly multi-line reply (RFC 5321 §4.2).
func (c *client) readReply() (*reply, error) {
	r := &reply{}
	var lines []string
	for {
		b, err := c.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errors.New("reply line too long")
		} else if err != nil {
			return nil, err
		}
		line := strings.TrimRight(string(b), "\r\n")
		if len(line) < 3 || len(line) > 3 && line[3] != ' ' && line[3] != '-' {
			return nil, fmt.Errorf("malformed reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 200 || code > 599 || r.code != 0 && code != r.code {
			return nil, fmt.Errorf("malformed reply line %q", line)
		}
		r.code = code
		text := ""
		if len(line) > 4 {
			text = line[4:]
		}
		lines = append(lines, text)
		if len(line) == 3 || line[3] == ' ' {
			break
		}
		if len(lines) >= maxReplyLines {
			return nil, errors.New("reply has too many lines")
		}
	}
	r.lines = append([]string(nil), lines...)
	// RFC 2034 §4: the enhanced code starts every line of the reply.
	if enh, rest, ok := strings.Cut(lines[0], " "); ok && isEnhancedCode(enh, r.code) {
		r.enh = enh
		lines[0] = rest
		for i := 1; i < len(lines); i++ {
			lines[i] = strings.TrimPrefix(lines[i], enh+" ")
		}
	} else if isEnhancedCode(lines[0], r.code) {
		r.enh, lines[0] = lines[0], ""
	}
	r.text = strings.TrimSpace(strings.Join(lines, " "))
	return r, nil
}

// isEnhancedCode reports whether s is an enhanced status code (RFC 3463 §2)
// of the class of reply code.
func isEnhancedCode(s string, code int) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] != strconv.Itoa(code/100) {
		return false
	}
	for _, p := range parts[1:] {
		if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 999 || p[0] == '+' || p[0] == '-' {
			return false
		}
	}
	return true
}

// data sends the message after DATA's 354, dot-stuffed (RFC 5321 §4.5.2),
// and returns the reply to its end. Writes are bounded by the command
// timeout, the final reply by twice that (RFC 5321 §4.5.3.2.6: 10 minutes
// against 5). Errors reading msg are *sourceError.
func (c *client) data(msg io.Reader) (*reply, error) {
	dw := textproto.NewWriter(bufio.NewWriter(deadlineWriter{c.raw, c.conn, c.timeout})).DotWriter()
	if _, err := io.Copy(dw, msg); err != nil {
		return nil, err
	}
	if err := dw.Close(); err != nil {
		return nil, err
	}
	c.raw.SetDeadline(time.Now().Add(2 * c.timeout))
	return c.readReply()
}

// bdatChunk is the size of a BDAT chunk.
const bdatChunk = 1 << 20

// bdat sends the message in BDAT chunks (RFC 3030 §2), as BINARYMIME needs,
// and returns the first reply that is not 250 or the reply to the last chunk.
// Errors reading msg are *sourceError.
func (c *client) bdat(msg io.Reader) (*reply, error) {
	buf := make([]byte, bdatChunk)
	for {
		n, err := io.ReadFull(msg, buf)
		last := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if err != nil && !last {
			return nil, err
		}
		c.raw.SetDeadline(time.Now().Add(c.timeout))
		if last {
			fmt.Fprintf(c.bw, "BDAT %d LAST\r\n", n)
		} else {
			fmt.Fprintf(c.bw, "BDAT %d\r\n", n)
		}
		c.bw.Write(buf[:n])
		if err := c.bw.Flush(); err != nil {
			return nil, err
		}
		if last {
			c.raw.SetDeadline(time.Now().Add(2 * c.timeout))
		}
		r, err := c.readReply()
		if err != nil || last || r.code != 250 {
			return r, err
		}
	}
}

// deadlineWriter writes to w, each write within timeout.
type deadlineWriter struct {
	raw     net.Conn
	w       io.Writer
	timeout time.Duration
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	d.raw.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.w.Write(p)
}

// quit says QUIT, briefly, and closes the connection (RFC 5321 §4.1.1.10).
func (c *client) quit() {
	c.cmdWithin("QUIT", min(c.timeout, quitTimeout))
	c.close()
}

func (c *client) close() {
	c.raw.Close()
	if c.stop != nil {
		c.stop()
	}
}
