package imapd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/switchyard-mta/switchyard/core/authlimit"
	"github.com/switchyard-mta/switchyard/core/clientconn"
	"github.com/switchyard-mta/switchyard/core/sasl"
	"github.com/switchyard-mta/switchyard/core/store"
)

// Replies. Causes are logged, never sent.
var (
	errInternal  = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeServerBug, Text: "Internal error, try again later"}
	errShutdown  = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "Server shutting down"}
	errNoMailbox = &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: "No mailbox selected"}
	// RFC 9051 §6.3.3: nothing in a mailbox opened with EXAMINE changes.
	errReadOnly = &imap.Error{Type: imap.StatusResponseTypeNo, Code: "READ-ONLY", Text: "Mailbox is open read-only (EXAMINE)"}
)

// session is one IMAP connection, from greeting to logout.
type session struct {
	srv  *Server
	ic   *imapserver.Conn
	fr   *framer
	conn *clientconn.Conn
	log  *slog.Logger // With cid and remote, then account.

	// mu is held by each session method. go-imap calls them one at a
	// time, except Idle, which runs in a goroutine of its own and which
	// go-imap does not wait for when the client breaks off IDLE with
	// something else than DONE, or hangs up: the next method (or Close)
	// then waits for Idle to see stop and return.
	mu sync.Mutex

	account  *store.Account     // After login.
	exchange *sasl.Exchange     // A plugin's AUTHENTICATE in progress, or one the client cancelled.
	attempt  *authlimit.Attempt // The exchange's, counted by core/authlimit.

	view      *store.View // The selected mailbox; nil if none.
	readOnly  bool        // Selected with EXAMINE.
	searchRes []store.UID // Saved SEARCH result, "$" (RFC 5182); nil if none.
}

var (
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionSASL        = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
)

func (s *Server) newSession(ic *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	v, ok := ic.NetConn().(*frameConn)
	if !ok {
		s.log.Error("session on a connection not from Serve", slog.String("remote", ic.NetConn().RemoteAddr().String()))
		return nil, nil, errInternal
	}
	sess := &session{srv: s, ic: ic, fr: v.f, conn: v.f.client, log: v.f.log}
	return sess, &imapserver.GreetingData{PreAuth: sess.preAuth()}, nil
}

// ctx is the context of store calls: canceled when the server closes.
func (s *session) ctx() context.Context { return s.srv.ctx }

// begin starts a session method, as `defer s.begin(&err)()`: it takes mu
// until the method returns, and turns a panic into a logged internal error
// that also ends the connection, as a response may have been half written.
func (s *session) begin(err *error) func() {
	s.mu.Lock()
	return func() {
		defer s.mu.Unlock()
		if v := recover(); v != nil {
			s.log.Error("panic in IMAP session", slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
			s.conn.HangupAfterReply()
			s.conn.Close()
			*err = errInternal
		}
	}
}

// Close ends the session: the connection is gone.
func (s *session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endExchange()
	s.closeView()
	return nil
}

func (s *session) closeView() {
	if s.view != nil {
		s.view.Close()
		s.view = nil
	}
	s.readOnly = false
	s.searchRes = nil
}

// AppendLimit is announced as APPENDLIMIT (RFC 7889); go-imap refuses
// larger APPENDs with NO [TOOBIG] before reading them.
func (s *session) AppendLimit() uint32 {
	return uint32(s.srv.cfg.MaxMessageSize)
}

// Namespace is NAMESPACE (RFC 2342): one personal namespace, no prefix.
func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: delim}}}, nil
}

// storeError turns an error from the store into the reply to the client:
// the store's sentinels into NO with the response code RFC 9051 §7.1 (and
// RFC 5530, RFC 9208) gives them; missing names get noMailbox
// (NONEXISTENT, or TRYCREATE where the client may create the mailbox and
// retry). Anything else is logged and answered as an internal error.
func (s *session) storeError(op string, err error, noMailbox imap.ResponseCode) error {
	no := func(code imap.ResponseCode, text string) error {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
	}
	switch {
	case errors.Is(err, store.ErrNoMailbox):
		return no(noMailbox, "No such mailbox")
	case errors.Is(err, store.ErrQuota):
		s.log.Info(op+": over quota", slog.Any("err", err))
		return no(imap.ResponseCodeOverQuota, "Quota exceeded")
	case errors.Is(err, store.ErrMailboxExists):
		return no(imap.ResponseCodeAlreadyExists, "Mailbox already exists")
	case errors.Is(err, store.ErrBadName), errors.Is(err, store.ErrNotAllowed):
		return no(imap.ResponseCodeCannot, clientText(err))
	case errors.Is(err, context.Canceled):
		return errShutdown
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		// The server's disk, not the account's quota: RFC 5530 §3 LIMIT.
		s.log.Warn(op+": storage full", slog.Any("err", err))
		return no(imap.ResponseCodeLimit, "Server storage full, try again later")
	}
	s.log.Error(op, slog.Any("err", err))
	return errInternal
}

// clientText is the part of a store error meant for the user: the text
// after the last "store: " prefix, e.g. "invalid name: empty mailbox name".
func clientText(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, "store: "); i >= 0 {
		msg = msg[i+len("store: "):]
	}
	return strings.ToUpper(msg[:1]) + msg[1:]
}

// badRequest is a BAD reply for a command the client got wrong.
func badRequest(format string, args ...any) error {
	return &imap.Error{Type: imap.StatusResponseTypeBad, Code: imap.ResponseCodeClientBug, Text: fmt.Sprintf(format, args...)}
}
