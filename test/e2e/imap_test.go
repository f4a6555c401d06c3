package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// imapEvents records what a server tells an IMAP client unasked: EXISTS,
// EXPUNGE and FETCH FLAGS. The channels are buffered: go-imap calls the
// handler on its reading goroutine.
type imapEvents struct {
	exists   chan uint32
	expunged chan uint32
	flags    chan seqFlags
}

type seqFlags struct {
	seq   uint32
	flags []imap.Flag
}

func newIMAPEvents() *imapEvents {
	return &imapEvents{exists: make(chan uint32, 100), expunged: make(chan uint32, 100), flags: make(chan seqFlags, 100)}
}

func (e *imapEvents) handler() *imapclient.UnilateralDataHandler {
	return &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				e.exists <- *d.NumMessages
			}
		},
		Expunge: func(seq uint32) { e.expunged <- seq },
		Fetch: func(msg *imapclient.FetchMessageData) {
			if buf, err := msg.Collect(); err == nil && buf.Flags != nil {
				e.flags <- seqFlags{buf.SeqNum, buf.Flags}
			}
		},
	}
}

// recv waits up to within for a value on ch.
func recv[T any](t *testing.T, ch <-chan T, within time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(within):
		var zero T
		t.Fatalf("no %s within %v", what, within)
		return zero
	}
}

// imapLogin connects to srv's listener "imaps" (implicit TLS) or "imap"
// (STARTTLS), logs in and closes the connection at the end of the test.
// The server's certificate is self-signed, hence not verified.
func imapLogin(t *testing.T, srv *mtatest.Server, listener, login, password string, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	addr := srv.Listeners[listener]
	if addr == "" {
		t.Fatalf("no listener %q: %v", listener, srv.Listeners)
	}
	opts := &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}, UnilateralDataHandler: h}
	var c *imapclient.Client
	var err error
	if listener == "imaps" {
		c, err = imapclient.DialTLS(addr, opts)
	} else {
		c, err = imapclient.DialStartTLS(addr, opts)
	}
	if err != nil {
		t.Fatalf("IMAP connection to %s: %v", listener, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(login, password).Wait(); err != nil {
		t.Fatalf("IMAP LOGIN %s on %s: %v", login, listener, err)
	}
	return c
}

// selectMailbox selects (or with readOnly examines) a mailbox.
func selectMailbox(t *testing.T, c *imapclient.Client, name string, readOnly bool) *imap.SelectData {
	t.Helper()
	d, err := c.Select(name, &imap.SelectOptions{ReadOnly: readOnly}).Wait()
	if err != nil {
		t.Fatalf("SELECT/EXAMINE %s: %v", name, err)
	}
	return d
}

// fetchOne fetches items of exactly one message.
func fetchOne(t *testing.T, c *imapclient.Client, set imap.NumSet, opts *imap.FetchOptions) *imapclient.FetchMessageBuffer {
	t.Helper()
	msgs, err := c.Fetch(set, opts).Collect()
	if err != nil {
		t.Fatalf("FETCH %v: %v", set, err)
	}
	if len(msgs) != 1 {
		t.Fatalf("FETCH %v: %d messages, want 1", set, len(msgs))
	}
	return msgs[0]
}

// wholeBody is BODY[] (peek: BODY.PEEK[]).
func wholeBody(peek bool) *imap.FetchItemBodySection {
	return &imap.FetchItemBodySection{Peek: peek}
}

// fetchBody returns BODY.PEEK[] of one message.
func fetchBody(t *testing.T, c *imapclient.Client, set imap.NumSet) []byte {
	t.Helper()
	m := fetchOne(t, c, set, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{wholeBody(true)}})
	b := m.FindBodySection(wholeBody(true))
	if b == nil {
		t.Fatalf("FETCH %v: no BODY[] in the response", set)
	}
	return b
}

// receivedRE is one Received header field, folded.
var receivedRE = regexp.MustCompile(`^Received: from [^\r\n]+\r\n(?:\t[^\r\n]+\r\n)+$`)

// splitReceived checks that stored is n Received header fields followed
// by exactly sent and returns the fields, the outermost (newest) first.
func splitReceived(t *testing.T, stored, sent []byte, n int) []string {
	t.Helper()
	prefix, ok := bytes.CutSuffix(stored, sent)
	if !ok {
		t.Fatalf("stored message does not end with the bytes sent:\n--- stored\n%s\n--- sent\n%s", stored, sent)
	}
	// Local delivery's Return-Path and Delivered-To come first (RFC 5321 §4.4).
	top := regexp.MustCompile(`^Return-Path: <[^\r\n>]*>\r\n(?:Delivered-To: [^\r\n]+\r\n)+`).Find(prefix)
	if top == nil {
		t.Fatalf("stored message does not start with Return-Path and Delivered-To:\n%s", prefix)
	}
	prefix = prefix[len(top):]
	var fields []string
	for _, f := range regexp.MustCompile(`(?m)^Received: `).Split(string(prefix), -1)[1:] {
		fields = append(fields, "Received: "+f)
	}
	if len(fields) != n || !strings.HasPrefix(string(prefix), "Received: ") {
		t.Fatalf("want %d Received fields before the message, got:\n%s", n, prefix)
	}
	for _, f := range fields {
		if !receivedRE.MatchString(f) {
			t.Errorf("malformed Received field %q", f)
		}
	}
	return fields
}

// sendMX sends messages from an outside client to srv's MX listener, with
// STARTTLS as another MTA would.
func sendMX(t *testing.T, srv *mtatest.Server, from, to string, msgs ...[]byte) {
	t.Helper()
	c, err := mtatest.Dial(srv.Listeners["mx"], false, true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, m := range msgs {
		if err := send(c, from, []string{to}, m); err != nil {
			t.Fatalf("to %s over MX: %v", to, err)
		}
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}

// A message from an outside client to the MX listener is read over both
// IMAP listeners; an IDLE client hears of it within a second of the 250.
func TestIMAPReadsMXDelivery(t *testing.T) {
	for _, tc := range []struct{ listener, login string }{
		{"imaps", "alice"},
		{"imap", "alice@example.org"}, // An address logs in too.
	} {
		t.Run(tc.listener, func(t *testing.T) {
			srv := startServer(t, setup{IMAP: true})
			if tc.listener == "imap" {
				plaintextLoginRefused(t, srv.Listeners["imap"], tc.login, srv.Passwords["alice"])
			}
			ev := newIMAPEvents()
			c := imapLogin(t, srv, tc.listener, tc.login, srv.Passwords["alice"], ev.handler())
			if d := selectMailbox(t, c, "INBOX", false); d.NumMessages != 0 {
				t.Fatalf("new Inbox holds %d messages", d.NumMessages)
			}
			idle, err := c.Idle()
			if err != nil {
				t.Fatalf("IDLE: %v", err)
			}

			msg := mtatest.MakeMessage("someone@remote.example", "alice@example.org", "over-mx-"+tc.listener, 3000)
			mx, err := mtatest.Dial(srv.Listeners["mx"], false, true)
			if err != nil {
				t.Fatal(err)
			}
			defer mx.Close()
			if err := send(mx, "someone@remote.example", []string{"alice@example.org"}, msg); err != nil {
				t.Fatalf("over MX: %v", err)
			}
			acked := time.Now()
			if n := recv(t, ev.exists, time.Second, "EXISTS within 1s of the 250"); n != 1 {
				t.Errorf("EXISTS %d, want 1", n)
			}
			t.Logf("EXISTS %v after the 250", time.Since(acked))
			mx.Quit()
			if err := idle.Close(); err != nil {
				t.Fatal(err)
			}
			if err := idle.Wait(); err != nil {
				t.Fatalf("IDLE: %v", err)
			}

			// BODY[] (not PEEK) is the message as received, and sets \Seen.
			m := fetchOne(t, c, imap.SeqSetNum(1), &imap.FetchOptions{
				UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{wholeBody(false)},
			})
			stored := m.FindBodySection(wholeBody(false))
			recvd := splitReceived(t, stored, msg, 1)[0]
			for _, want := range []string{"by mail.example.org with ESMTPS (TLS 1.", "for <alice@example.org>"} {
				if !strings.Contains(recvd, want) {
					t.Errorf("Received field lacks %q:\n%s", want, recvd)
				}
			}
			if m.RFC822Size != int64(len(stored)) {
				t.Errorf("RFC822.SIZE %d, BODY[] has %d bytes", m.RFC822Size, len(stored))
			}
			flags := fetchOne(t, c, imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Flags
			if !slices.Contains(flags, imap.FlagSeen) {
				t.Errorf("flags after FETCH BODY[]: %v, want \\Seen", flags)
			}
			if err := c.Logout().Wait(); err != nil {
				t.Errorf("LOGOUT: %v", err)
			}
		})
	}
}

// plaintextLoginRefused checks that an imap listener announces
// LOGINDISABLED and refuses LOGIN before STARTTLS.
func plaintextLoginRefused(t *testing.T, addr, login, password string) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(waitShort))
	r := bufio.NewReader(nc)
	tagged := func(tag string) (untagged, result string) {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading IMAP response: %v", err)
			}
			if rest, ok := strings.CutPrefix(l, tag+" "); ok {
				return untagged, strings.TrimSpace(rest)
			}
			untagged += l
		}
	}
	if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting %q, %v", l, err)
	}
	fmt.Fprintf(nc, "a CAPABILITY\r\n")
	if caps, res := tagged("a"); !strings.Contains(caps, "LOGINDISABLED") || !strings.Contains(caps, "STARTTLS") || strings.Contains(caps, "AUTH=") {
		t.Errorf("capabilities before STARTTLS: %q (%s)", caps, res)
	}
	fmt.Fprintf(nc, "b LOGIN %s %s\r\n", login, password)
	if _, res := tagged("b"); !strings.HasPrefix(res, "NO") {
		t.Errorf("LOGIN before STARTTLS: %q, want NO", res)
	}
}

// APPEND, MOVE, EXPUNGE, read-only EXAMINE and STATUS on the real server.
func TestIMAPMailboxOperations(t *testing.T) {
	srv := startServer(t, setup{IMAP: true})
	msgs := map[string][]byte{}
	for _, s := range []string{"move-me", "delete-me", "keep-me"} {
		msgs[s] = mtatest.MakeMessage("someone@remote.example", "alice@example.org", s, 1500)
	}
	sendMX(t, srv, "someone@remote.example", "alice@example.org", msgs["move-me"], msgs["delete-me"], msgs["keep-me"])
	c := imapLogin(t, srv, "imaps", "alice", srv.Passwords["alice"], nil)

	// The standard mailboxes, with their SPECIAL-USE attributes.
	list, err := c.List("", "*", &imap.ListOptions{ReturnSpecialUse: true}).Collect()
	if err != nil {
		t.Fatalf("LIST: %v", err)
	}
	special := map[string][]imap.MailboxAttr{}
	for _, l := range list {
		special[l.Mailbox] = l.Attrs
	}
	for mb, attr := range map[string]imap.MailboxAttr{"Sent": imap.MailboxAttrSent, "Drafts": imap.MailboxAttrDrafts,
		"Archive": imap.MailboxAttrArchive, "Junk": imap.MailboxAttrJunk, "Trash": imap.MailboxAttrTrash} {
		if !slices.Contains(special[mb], attr) {
			t.Errorf("LIST: %s has %v, want %s", mb, special[mb], attr)
		}
	}
	if _, ok := special["INBOX"]; !ok {
		t.Errorf("LIST: no INBOX in %v", special)
	}

	// APPEND to Sent, then FETCH: the exact bytes, the flags given.
	sent := mtatest.MakeMessage("alice@example.org", "carol@remote.example", "appended", 2500)
	ap := c.Append("Sent", int64(len(sent)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
	if _, err := ap.Write(sent); err != nil {
		t.Fatal(err)
	}
	if err := ap.Close(); err != nil {
		t.Fatal(err)
	}
	appended, err := ap.Wait()
	if err != nil {
		t.Fatalf("APPEND: %v", err)
	}
	if appended.UID == 0 || appended.UIDValidity == 0 {
		t.Fatalf("APPEND: no APPENDUID: %+v", appended)
	}
	if d := selectMailbox(t, c, "Sent", false); d.UIDValidity != appended.UIDValidity || d.NumMessages != 1 {
		t.Errorf("SELECT Sent: UIDVALIDITY %d (APPENDUID said %d), %d messages", d.UIDValidity, appended.UIDValidity, d.NumMessages)
	}
	m := fetchOne(t, c, imap.UIDSetNum(appended.UID), &imap.FetchOptions{
		Flags: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{wholeBody(true)},
	})
	if got := m.FindBodySection(wholeBody(true)); !bytes.Equal(got, sent) {
		t.Errorf("FETCH of the appended message:\n%q\nwant\n%q", got, sent)
	}
	if m.RFC822Size != int64(len(sent)) || !slices.Contains(m.Flags, imap.FlagSeen) {
		t.Errorf("appended message: RFC822.SIZE %d (want %d), flags %v", m.RFC822Size, len(sent), m.Flags)
	}

	// The delivered messages by subject.
	if d := selectMailbox(t, c, "INBOX", false); d.NumMessages != 3 {
		t.Fatalf("Inbox holds %d messages, want 3", d.NumMessages)
	}
	all, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	uid := map[string]imap.UID{}
	for _, m := range all {
		uid[m.Envelope.Subject] = m.UID
	}
	inboxUIDs := func() []imap.UID {
		t.Helper()
		d, err := c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
		if err != nil {
			t.Fatalf("UID SEARCH ALL: %v", err)
		}
		return d.AllUIDs()
	}

	// MOVE to Archive: COPYUID, gone from the Inbox, the same message in
	// the Archive.
	moved, err := c.Move(imap.UIDSetNum(uid["move-me"]), "Archive").Wait()
	if err != nil {
		t.Fatalf("MOVE: %v", err)
	}
	src, _ := moved.SourceUIDs.(imap.UIDSet)
	dst, _ := moved.DestUIDs.(imap.UIDSet)
	srcUIDs, _ := src.Nums()
	dstUIDs, _ := dst.Nums()
	if moved.UIDValidity == 0 || !slices.Equal(srcUIDs, []imap.UID{uid["move-me"]}) || len(dstUIDs) != 1 {
		t.Fatalf("MOVE: COPYUID %d %v %v, want the source UID %d and one destination UID", moved.UIDValidity, moved.SourceUIDs, moved.DestUIDs, uid["move-me"])
	}
	if got, want := inboxUIDs(), []imap.UID{uid["delete-me"], uid["keep-me"]}; !slices.Equal(got, want) {
		t.Errorf("Inbox after MOVE: UIDs %v, want %v", got, want)
	}

	// STORE \Deleted and EXPUNGE.
	if err := c.Store(imap.UIDSetNum(uid["delete-me"]), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatalf("STORE \\Deleted: %v", err)
	}
	expunged, err := c.Expunge().Collect()
	if err != nil {
		t.Fatalf("EXPUNGE: %v", err)
	}
	if !slices.Equal(expunged, []uint32{1}) {
		t.Errorf("EXPUNGE: %v, want [1]", expunged)
	}
	if got, want := inboxUIDs(), []imap.UID{uid["keep-me"]}; !slices.Equal(got, want) {
		t.Errorf("Inbox after EXPUNGE: UIDs %v, want %v", got, want)
	}

	if d := selectMailbox(t, c, "Archive", false); d.UIDValidity != moved.UIDValidity || d.NumMessages != 1 {
		t.Errorf("SELECT Archive: UIDVALIDITY %d (COPYUID said %d), %d messages", d.UIDValidity, moved.UIDValidity, d.NumMessages)
	}
	splitReceived(t, fetchBody(t, c, imap.UIDSetNum(dstUIDs[0])), msgs["move-me"], 1)

	// EXAMINE: STORE is refused, and BODY[] does not set \Seen.
	if d := selectMailbox(t, c, "INBOX", true); d.NumMessages != 1 {
		t.Errorf("EXAMINE INBOX: %d messages, want 1", d.NumMessages)
	}
	err = c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo {
		t.Errorf("STORE in a mailbox opened with EXAMINE: %v, want NO", err)
	}
	fetchOne(t, c, imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{wholeBody(false)}})
	if flags := fetchOne(t, c, imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Flags; len(flags) != 0 {
		t.Errorf("flags after STORE and FETCH BODY[] under EXAMINE: %v, want none", flags)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}

	// STATUS agrees with what happened.
	keepSize := int64(len(fetchBodyOf(t, c, "INBOX", uid["keep-me"])))
	archSize := int64(len(fetchBodyOf(t, c, "Archive", dstUIDs[0])))
	type counts struct {
		messages, unseen, deleted uint32
		size                      int64
	}
	for mb, want := range map[string]counts{
		"INBOX":   {1, 1, 0, keepSize},
		"Archive": {1, 1, 0, archSize},
		"Sent":    {1, 0, 0, int64(len(sent))},
		"Drafts":  {},
		"Junk":    {},
		"Trash":   {},
	} {
		d, err := c.Status(mb, &imap.StatusOptions{NumMessages: true, NumUnseen: true, NumDeleted: true, Size: true, UIDNext: true, UIDValidity: true}).Wait()
		if err != nil {
			t.Errorf("STATUS %s: %v", mb, err)
			continue
		}
		got := counts{deref(d.NumMessages), deref(d.NumUnseen), deref(d.NumDeleted), deref(d.Size)}
		if got != want || d.UIDValidity == 0 {
			t.Errorf("STATUS %s: %+v UIDVALIDITY %d, want %+v", mb, got, d.UIDValidity, want)
		}
		switch mb {
		case "INBOX":
			if d.UIDNext != uid["keep-me"]+1 {
				t.Errorf("STATUS INBOX: UIDNEXT %d, want %d", d.UIDNext, uid["keep-me"]+1)
			}
		case "Archive":
			if d.UIDNext != dstUIDs[0]+1 || d.UIDValidity != moved.UIDValidity {
				t.Errorf("STATUS Archive: UIDNEXT %d UIDVALIDITY %d, want %d %d", d.UIDNext, d.UIDValidity, dstUIDs[0]+1, moved.UIDValidity)
			}
		case "Sent":
			if d.UIDNext != appended.UID+1 || d.UIDValidity != appended.UIDValidity {
				t.Errorf("STATUS Sent: UIDNEXT %d UIDVALIDITY %d, want %d %d", d.UIDNext, d.UIDValidity, appended.UID+1, appended.UIDValidity)
			}
		}
	}
}

// fetchBodyOf examines mailbox and returns BODY.PEEK[] of the message uid.
func fetchBodyOf(t *testing.T, c *imapclient.Client, mailbox string, uid imap.UID) []byte {
	t.Helper()
	selectMailbox(t, c, mailbox, true)
	b := fetchBody(t, c, imap.UIDSetNum(uid))
	if err := c.Unselect().Wait(); err != nil {
		t.Fatalf("UNSELECT: %v", err)
	}
	return b
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

// Two sessions on one Inbox see each other's flag changes, expunges and
// new messages at NOOP.
func TestIMAPConcurrentSessions(t *testing.T) {
	srv := startServer(t, setup{IMAP: true})
	var msgs [][]byte
	for i := range 3 {
		msgs = append(msgs, mtatest.MakeMessage("someone@remote.example", "alice@example.org", fmt.Sprintf("concurrent-%d", i), 1000))
	}
	sendMX(t, srv, "someone@remote.example", "alice@example.org", msgs...)
	ev1, ev2 := newIMAPEvents(), newIMAPEvents()
	c1 := imapLogin(t, srv, "imaps", "alice", srv.Passwords["alice"], ev1.handler())
	c2 := imapLogin(t, srv, "imap", "alice", srv.Passwords["alice"], ev2.handler())
	for _, c := range []*imapclient.Client{c1, c2} {
		if d := selectMailbox(t, c, "INBOX", false); d.NumMessages != 3 {
			t.Fatalf("SELECT INBOX: %d messages, want 3", d.NumMessages)
		}
	}
	noop := func(c *imapclient.Client) {
		t.Helper()
		if err := c.Noop().Wait(); err != nil {
			t.Fatalf("NOOP: %v", err)
		}
	}
	// Responses to a NOOP come before its OK: they are in the channels once
	// it returns; the wait is only a bound.
	store := func(c *imapclient.Client, seq uint32, op imap.StoreFlagsOp, flag imap.Flag) {
		t.Helper()
		if err := c.Store(imap.SeqSetNum(seq), &imap.StoreFlags{Op: op, Silent: true, Flags: []imap.Flag{flag}}, nil).Close(); err != nil {
			t.Fatalf("STORE: %v", err)
		}
	}

	store(c1, 1, imap.StoreFlagsAdd, imap.FlagFlagged)
	noop(c2)
	if f := recv(t, ev2.flags, time.Second, "FETCH FLAGS in session 2"); f.seq != 1 || !slices.Contains(f.flags, imap.FlagFlagged) {
		t.Errorf("session 2 saw message %d with %v, want 1 with \\Flagged", f.seq, f.flags)
	}
	store(c2, 1, imap.StoreFlagsDel, imap.FlagFlagged)
	store(c2, 1, imap.StoreFlagsAdd, imap.FlagAnswered)
	noop(c1)
	var last seqFlags
	for len(ev1.flags) > 0 || last.seq == 0 {
		last = recv(t, ev1.flags, time.Second, "FETCH FLAGS in session 1")
	}
	if last.seq != 1 || slices.Contains(last.flags, imap.FlagFlagged) || !slices.Contains(last.flags, imap.FlagAnswered) {
		t.Errorf("session 1 saw message %d with %v, want 1 with \\Answered only", last.seq, last.flags)
	}

	store(c2, 2, imap.StoreFlagsAdd, imap.FlagDeleted)
	if _, err := c2.Expunge().Collect(); err != nil {
		t.Fatalf("EXPUNGE: %v", err)
	}
	noop(c1)
	if seq := recv(t, ev1.expunged, time.Second, "EXPUNGE in session 1"); seq != 2 {
		t.Errorf("session 1: EXPUNGE %d, want 2", seq)
	}
	left, err := c1.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, m := range left {
		subjects = append(subjects, m.Envelope.Subject)
	}
	if want := []string{"concurrent-0", "concurrent-2"}; !slices.Equal(subjects, want) {
		t.Errorf("session 1 after the other's EXPUNGE: %v, want %v", subjects, want)
	}

	// A message appended by one session and one delivered over MX: EXISTS
	// in the other.
	ap := c1.Append("INBOX", int64(len(msgs[0])), nil)
	ap.Write(msgs[0])
	ap.Close()
	if _, err := ap.Wait(); err != nil {
		t.Fatalf("APPEND: %v", err)
	}
	noop(c2)
	if n := recv(t, ev2.exists, time.Second, "EXISTS in session 2"); n != 3 {
		t.Errorf("session 2: EXISTS %d, want 3", n)
	}
	sendMX(t, srv, "someone@remote.example", "alice@example.org", msgs[1])
	noop(c1)
	for n := uint32(0); n != 4; {
		n = recv(t, ev1.exists, time.Second, "EXISTS 4 in session 1")
	}
	if err := c1.Logout().Wait(); err != nil {
		t.Error(err)
	}
}
