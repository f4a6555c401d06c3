package smtpd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/core/guard"
	"github.com/switchyard-mta/switchyard/core/localdelivery"
	"github.com/switchyard-mta/switchyard/core/policy"
	"github.com/switchyard-mta/switchyard/core/queue"
	"github.com/switchyard-mta/switchyard/core/store"
	"github.com/switchyard-mta/switchyard/sdk"
)

var (
	// SMTP smuggling: a bare CR or LF may end a line, or the message, for
	// the next hop but not for us. RFC 5321 §2.3.8 allows only CRLF.
	errBareCRLF = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Bare LF or CR in message (SMTP smuggling)"}
	// RFC 3463 X.6.0: other media error; NUL is not text (RFC 5321 §4.5.2
	// allows it nowhere, RFC 3030 §3 only with BINARYMIME, not offered).
	errNUL = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "NUL in message"}
	// RFC 5321 §4.2.2 (552: exceeded storage allocation), RFC 3463 §3.4
	// (X.3.4: message too big for system).
	errTooLarge = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message too large"}
	// RFC 5321 §4.5.3.1.6 limits text lines.
	errLineTooLong = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Line too long"}
	errQueue       = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Queueing failed, try again later"}
	errConnection  = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2}, Message: "Connection error, closing"}
)

// copyBufs are copyMessage's buffers: messages cost no garbage of this
// size.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// errWrite marks a failure to spool the message, as opposed to reading
// from the client.
type errWrite struct{ err error }

func (e errWrite) Error() string { return e.err.Error() }
func (e errWrite) Unwrap() error { return e.err }

// Data spools the message, checks it and hands it to the queue. go-smtp
// sends the returned error as the reply, a 250 included.
func (s *session) Data(r io.Reader) (err error) {
	defer panicReply(&err, errInternal)
	defer guard.Recover(s.log, "smtp session", &err)
	start := s.start
	if start.IsZero() {
		start = time.Now()
	}
	reply, size, id := s.deliver(r)
	attrs := []any{
		slog.String("account", s.account),
		slog.String("from", s.from),
		slog.Int("rcpts", len(s.recipients)),
		slog.Int64("size", size),
		slog.Int("code", reply.Code),
		slog.Duration("duration", time.Since(start)),
	}
	if id != "" {
		attrs = append(attrs, slog.String("queueid", id))
	}
	if !s.release.IsZero() {
		attrs = append(attrs, slog.String("release", s.release.UTC().Format(time.RFC3339)))
	}
	s.log.Info("transaction", attrs...)
	return reply
}

// deliver does Data's work; size counts the message as received, without
// the Received header.
func (s *session) deliver(r io.Reader) (reply *smtp.SMTPError, size int64, id string) {
	// go-smtp sets the read deadline per command line only: renew it as
	// the message comes, so that ReadTimeout bounds each block of it rather
	// than all of it, as RFC 5321 §4.5.3.2 times DATA. go-smtp passes BDAT
	// chunks through a pipe, DATA through its dot-unstuffing reader.
	r = &deadlineReader{r: r, conn: s.sc.Conn(), timeout: s.srv.cfg.ReadTimeout}

	received := s.received(time.Now())
	var sp *queue.Spool
	var m mark
	if s.srv.cfg.Policies.Wants(sdk.StageData) {
		// The checks read the message as the client sent it; what they
		// add goes on top of it, with the Received field, in a new spool.
		raw := s.srv.cfg.Queue.NewSpool()
		defer raw.Discard()
		n, reply := s.spool(raw, r)
		size = n
		if reply != nil {
			return reply, size, ""
		}
		msg, err := raw.Reader()
		if err != nil {
			s.log.Error("reading spooled message", slog.Any("err", err))
			return errQueue, size, ""
		}
		reply, deletes := s.dataPolicy(msg)
		if reply != nil {
			return reply, size, ""
		}
		var hdrs []string
		hdrs, m = s.policyMessage()
		sp = s.srv.cfg.Queue.NewSpool()
		defer sp.Discard() // Does nothing once Add took it.
		err = s.writePrefix(sp, hdrs, m, received)
		if err == nil {
			err = policy.Rewrite(sp, io.NewSectionReader(msg, 0, msg.Size()), deletes)
		}
		if err != nil {
			s.log.Error("spooling message", slog.Any("err", err))
			return errQueue, size, ""
		}
	} else {
		var hdrs []string
		hdrs, m = s.policyMessage()
		sp = s.srv.cfg.Queue.NewSpool()
		defer sp.Discard() // Does nothing once Add took it.
		if err := s.writePrefix(sp, hdrs, m, received); err != nil {
			s.log.Error("spooling message", slog.Any("err", err))
			return s.drain(r, errQueue), 0, ""
		}
		n, reply := s.spool(sp, r)
		size = n
		if reply != nil {
			return reply, size, ""
		}
	}
	if m.action == sdk.ActionDiscard {
		s.log.Info("message discarded by policy", slog.String("policy", m.check), slog.String("reason", m.reason))
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Accepted"}, size, ""
	}
	quarantine := m.action == sdk.ActionQuarantine
	if quarantine {
		s.log.Info("message quarantined by policy", slog.String("policy", m.check), slog.String("reason", m.reason))
	}

	ctx, cancel := context.WithTimeout(s.srv.ctx, queueTimeout)
	defer cancel()

	// Local recipients are delivered now, before the reply, unless held. One
	// that fails after others succeeded is queued for a retry by the local transport,
	// so the reply can still be 250 without losing it.
	var queued []sdk.Recipient
	var local []localdelivery.Rcpt    // Distinct accounts, in order, with their addresses.
	rcptsOf := map[string][]rcptRef{} // Recipients by account.
	remote := 0
	author := s.aliasAuthor(sp)
	for i, ts := range s.targets {
		if len(ts) == 0 {
			queued = append(queued, s.recipients[i])
			remote++
			continue
		}
		for _, tg := range ts {
			if tg.member != "" && strings.EqualFold(tg.member, author) {
				continue // The author gets no copy through the alias.
			}
			if _, ok := rcptsOf[tg.account]; !ok {
				local = append(local, localdelivery.Rcpt{Account: tg.account, Junk: quarantine})
			}
			rcptsOf[tg.account] = append(rcptsOf[tg.account], rcptRef{i, tg.member})
		}
	}
	for i := range local {
		for _, r := range rcptsOf[local[i].Account] {
			local[i].Addresses = append(local[i].Addresses, s.recipients[r.index].Address)
		}
	}
	// queueLocal queues an account's recipients for the local transport.
	queueLocal := func(account string) {
		for _, r := range rcptsOf[account] {
			rcpt := s.recipients[r.index]
			if r.member != "" {
				rcpt.Address = r.member // The queue knows accounts, not aliases.
			}
			queued = append(queued, rcpt)
		}
	}
	// A message held for a future release (RFC 4865) waits in the queue
	// for local recipients too.
	held := s.release.After(time.Now())
	delivered, overQuota := 0, 0
	if held {
		for _, l := range local {
			queueLocal(l.Account)
		}
	} else if len(local) > 0 {
		msg, err := sp.Reader()
		if err != nil {
			s.log.Error("reading spooled message", slog.Any("err", err))
			return errQueue, size, ""
		}
		for i, err := range s.srv.cfg.Local.DeliverLocal(ctx, s.from, local, msg) {
			if err == nil {
				delivered++
				mailbox := store.Inbox
				if quarantine {
					mailbox = "Junk"
				}
				for _, addr := range local[i].Addresses {
					// As the queue's delivery lines (core/queue).
					s.log.Info("delivery", slog.String("from", s.from), slog.String("to", addr), slog.String("transport", "local"),
						slog.String("status", "sent"), slog.String("account", local[i].Account), slog.String("mailbox", mailbox))
				}
				continue
			}
			if errors.Is(err, store.ErrQuota) {
				overQuota++
			}
			s.log.Info("local delivery failed", slog.String("account", local[i].Account), slog.Any("err", err))
			queueLocal(local[i].Account)
		}
	}
	if len(local) == 0 && remote == 0 {
		// Only an alias's author was a recipient: nothing to deliver.
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Delivered"}, size, ""
	}
	if delivered == 0 && remote == 0 && !held {
		// Nothing was done: the client may retry all of it.
		if overQuota == len(local) {
			return errOverQuota, size, ""
		}
		return errQueue, size, ""
	}
	if len(queued) == 0 {
		return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Delivered"}, size, ""
	}
	env := queue.Envelope{Account: s.account, From: s.from, Recipients: queued, Options: s.opts, ReleaseAt: s.release}
	id, err := s.srv.cfg.Queue.Add(ctx, env, sp)
	if err != nil {
		if delivered > 0 {
			// The client will send it again: local recipients get it twice,
			// which beats losing it for the others.
			s.log.Error("queueing message after local deliveries", slog.Int("delivered", delivered), slog.Any("err", err))
		} else {
			s.log.Error("queueing message", slog.Any("err", err))
		}
		return errQueue, size, ""
	}
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "Queued as " + id}, size, id
}

// rcptRef is a recipient of the transaction that goes to an account.
type rcptRef struct {
	index  int    // In session.recipients.
	member string // Through an alias, as this member; "" if directly.
}

// aliasAuthor returns the address of the message's From field when a
// recipient is an alias, whose member with that address gets no copy; ""
// otherwise, or without one From address.
func (s *session) aliasAuthor(sp *queue.Spool) string {
	if !slices.ContainsFunc(s.targets, func(ts []target) bool { return len(ts) > 0 && ts[0].member != "" }) {
		return ""
	}
	msg, err := sp.Reader()
	if err != nil {
		return ""
	}
	end, err := policy.HeaderEnd(msg, msg.Size())
	if err != nil {
		return ""
	}
	m, err := mail.ReadMessage(io.NewSectionReader(msg, 0, end))
	if err != nil {
		return ""
	}
	from, err := m.Header.AddressList("From")
	if err != nil || len(from) != 1 {
		return ""
	}
	return from[0].Address
}

// spool copies the message from the client to sp, and returns its size and,
// if it cannot be taken, the reply.
func (s *session) spool(sp *queue.Spool, r io.Reader) (int64, *smtp.SMTPError) {
	size, err := copyMessage(sp, r)
	var we errWrite
	switch {
	case err == nil:
		return size, nil
	case err == errBareCRLF || err == errNUL:
		return size, err.(*smtp.SMTPError)
	case err == smtp.ErrDotBareCR:
		// What follows cannot be read in step with the client: end the
		// connection after the reply.
		s.log.Info("message refused, dot and bare CR at a line start: closing")
		s.hangUp()
		return size, smtp.ErrDotBareCR
	case errors.As(err, &we):
		s.log.Error("spooling message", slog.Any("err", err))
		return size, s.drain(r, errQueue)
	default:
		return size, s.readFailed(err)
	}
}

// dataPolicy runs the data-stage checks on msg and returns the reply of a
// refusal, or the header fields to delete.
func (s *session) dataPolicy(msg *io.SectionReader) (*smtp.SMTPError, []sdk.HeaderRef) {
	end, err := policy.HeaderEnd(msg, msg.Size())
	if err != nil {
		s.log.Error("reading spooled message", slog.Any("err", err))
		return errQueue, nil
	}
	req := s.checkRequest(sdk.StageData)
	req.Size = msg.Size()
	open := func(need sdk.BodyNeed) io.Reader {
		if need == sdk.BodyHeaders {
			return io.NewSectionReader(msg, 0, end)
		}
		return io.NewSectionReader(msg, 0, msg.Size())
	}
	reply, res := s.runPolicy(req, open)
	if reply != nil {
		s.log.Info("message refused by policy", slog.String("policy", res.Check), slog.Int("code", reply.Code))
	}
	return reply, res.Deletes
}

// drain reads the rest of the message, so that the reply comes after it,
// and returns reply, or another if reading fails.
func (s *session) drain(r io.Reader, reply *smtp.SMTPError) *smtp.SMTPError {
	if _, err := io.Copy(io.Discard, r); err != nil && err != smtp.ErrDataTooLarge {
		return s.readFailed(err)
	}
	return reply // Also if too large: go-smtp reads the rest.
}

// readFailed turns an error reading the message into a reply. An I/O error
// or timeout leaves the client's position in the message unknown: the rest
// must not be read as commands, so the connection is closed.
func (s *session) readFailed(err error) *smtp.SMTPError {
	switch {
	case err == smtp.ErrDataTooLarge:
		return errTooLarge // go-smtp reads the rest of the message.
	case errors.Is(err, smtp.ErrTooLongLine):
		// go-smtp would send this reply, then its own "500 5.4.0 Too long
		// line" as it reads the next command: hang up after the first.
		s.conn.HangupAfterReply()
		return errLineTooLong
	case errors.Is(err, smtp.ErrDataReset):
		return errConnection // BDAT aborted by RSET; nobody reads this.
	}
	s.log.Info("reading message", slog.Any("err", err))
	s.sc.Close()
	return errConnection
}

// checkChunk checks the next chunk p of a message, as copyMessage says;
// cr carries whether the chunk before ended in CR. The scans are of
// bytes.IndexByte and bytes.Count, not of each byte.
func checkChunk(p []byte, cr *bool) *smtp.SMTPError {
	if len(p) == 0 {
		return nil
	}
	if bytes.IndexByte(p, 0) >= 0 {
		return errNUL
	}
	if *cr != (p[0] == '\n') {
		return errBareCRLF // A CR before the chunk not followed by LF, or an LF first without it.
	}
	// Every LF after the first byte follows a CR; then the CRs are as many
	// as those LFs, and one more if the chunk ends in CR (its LF comes next).
	lfs := 0
	for i := 1; ; {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			break
		}
		if p[i+j-1] != '\r' {
			return errBareCRLF
		}
		lfs++
		i += j + 1
	}
	*cr = p[len(p)-1] == '\r'
	want := lfs
	if *cr {
		want++
	}
	if bytes.Count(p, []byte{'\r'}) != want {
		return errBareCRLF
	}
	return nil
}

// copyMessage copies the message from r, go-smtp's reader of DATA
// (dot-stuffed, ending at CRLF "." CRLF) or of BDAT chunks, to w. It checks
// what the reader returns: a CR not followed by LF or an LF not preceded by
// CR refuses the message with errBareCRLF, a NUL with errNUL (RFC 3030
// §3: only BINARYMIME, which is not offered, allows it). A refused message is
// read to its end, not written. n counts the bytes read; errWrite marks a
// failure of w.
func copyMessage(w io.Writer, r io.Reader) (n int64, err error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var refused *smtp.SMTPError
	fill := 0   // Bytes of buf waiting for w.
	cr := false // The previous byte was CR.
	for {
		k, rerr := r.Read(buf[fill:])
		n += int64(k)
		if refused == nil {
			refused = checkChunk(buf[fill:fill+k], &cr)
		}
		if refused == nil {
			fill += k
		}
		if fill == len(buf) || fill > 0 && rerr != nil {
			if _, err := w.Write(buf[:fill]); err != nil {
				return n, errWrite{err}
			}
			fill = 0
		}
		switch {
		case rerr == nil:
		case refused != nil && (rerr == io.EOF || rerr == smtp.ErrDataTooLarge):
			return n, refused // go-smtp reads the rest if too large.
		case rerr != io.EOF:
			return n, rerr
		case cr:
			return n, errBareCRLF // A BDAT message ending in CR.
		default:
			return n, nil
		}
	}
}

// deadlineReader renews the connection's read deadline before every read.
type deadlineReader struct {
	r       io.Reader
	conn    net.Conn
	timeout time.Duration
}

func (r *deadlineReader) Read(p []byte) (int, error) {
	if err := r.conn.SetReadDeadline(time.Now().Add(r.timeout)); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// received returns the Received header field for the message (RFC 5321
// §4.4, RFC 5322 §3.6.7), folded, with CRLF:
//
//	Received: from helo ([192.0.2.1])
//		by mx.example.org with ESMTPS (TLS 1.3 TLS_AES_128_GCM_SHA256)
//		for <rcpt@example.org>;
//		Mon, 02 Jan 2006 15:04:05 -0700
func (s *session) received(now time.Time) string {
	var b strings.Builder
	b.WriteString("Received: from ")
	b.WriteString(heloToken(s.sc.Hostname()))
	if s.conn.IP.IsValid() {
		// TCP-info (RFC 5321 §4.4) is an address literal (§4.1.3).
		fmt.Fprintf(&b, " (%s)", addressLiteral(s.conn.IP))
	}
	b.WriteString("\r\n\tby ")
	b.WriteString(s.srv.cfg.Hostname)
	b.WriteString(" with ")
	tlsState, isTLS := s.sc.TLSConnectionState()
	b.WriteString(withProtocol(s.opts.SMTPUTF8, isTLS, s.account != ""))
	if isTLS {
		fmt.Fprintf(&b, " (%s %s)", tls.VersionName(tlsState.Version), tls.CipherSuiteName(tlsState.CipherSuite))
	}
	// Only one recipient may be named: a Received header goes to all
	// recipients, and would otherwise disclose the Bcc ones.
	if len(s.recipients) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", s.recipients[0].Address)
	}
	b.WriteString(";\r\n\t")
	b.WriteString(now.Format(time.RFC1123Z))
	b.WriteString("\r\n")
	return b.String()
}

// withProtocol is the "with" keyword: ESMTP with S for TLS and A for AUTH
// (RFC 3848), or its UTF8SMTP variant for SMTPUTF8 (RFC 6531 §3.7.3).
func withProtocol(utf8, isTLS, auth bool) string {
	p := "ESMTP"
	if utf8 {
		p = "UTF8SMTP"
	}
	if isTLS {
		p += "S"
	}
	if auth {
		p += "A"
	}
	return p
}

// heloToken makes the client's HELO name safe in a header: characters
// outside those of domains and address literals become '_'.
func heloToken(helo string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune(".-_:[]", r):
			return r
		}
		return '_'
	}, helo)
}

// addressLiteral formats ip as in RFC 5321 §4.1.3: [192.0.2.1] or
// [IPv6:2001:db8::1].
func addressLiteral(ip netip.Addr) string {
	if ip.Is4() {
		return "[" + ip.String() + "]"
	}
	return "[IPv6:" + ip.String() + "]"
}
