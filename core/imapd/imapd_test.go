package imapd

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/switchyard-mta/switchyard/core/authlimit"
	"github.com/switchyard-mta/switchyard/core/clientconn"
	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/internal/testlog"
	"github.com/switchyard-mta/switchyard/core/store"
)

const testMsg = "From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: hello\r\nDate: Mon, 02 Jan 2006 15:04:05 -0700\r\nMessage-ID: <1@example.org>\r\n\r\nHello Bob,\r\nlunch?\r\n"

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestNew(t *testing.T) {
	pw, err := passwords()
	if err != nil {
		t.Fatal(err)
	}
	good := Config{Listener: config.Listener{Name: "l", Kind: config.KindIMAP}, TLS: serverTLS(t), Accounts: fakeAccounts{}, Auth: pw, Store: pw}
	tests := []struct {
		name   string
		modify func(*Config)
		ok     bool
	}{
		{"imap", func(*Config) {}, true},
		{"imaps", func(c *Config) { c.Listener.Kind = config.KindIMAPS }, true},
		{"smtp kind", func(c *Config) { c.Listener.Kind = config.KindSMTP }, false},
		{"no TLS", func(c *Config) { c.TLS = nil }, false},
		{"no store", func(c *Config) { c.Store = nil }, false},
		{"no accounts", func(c *Config) { c.Accounts = nil }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.modify(&cfg)
			s, err := New(cfg)
			if (err == nil) != tt.ok {
				t.Fatalf("New: %v, want ok %v", err, tt.ok)
			}
			if s != nil {
				s.Close()
			}
		})
	}
}

// Before STARTTLS: LOGINDISABLED, no AUTH=, LOGIN and AUTHENTICATE refused;
// after it, LOGIN works and the capabilities are complete.
func TestSTARTTLSThenLogin(t *testing.T) {
	ts := startServer(t, config.KindIMAP, nil)
	r, greeting := ts.dialRaw(t)
	for _, want := range []string{"IMAP4rev1", "IMAP4rev2", "STARTTLS", "LOGINDISABLED", "SASL-IR"} {
		if !strings.Contains(greeting, " "+want) {
			t.Errorf("greeting %q lacks %s", greeting, want)
		}
	}
	if strings.Contains(greeting, "AUTH=") {
		t.Errorf("greeting %q offers AUTH= before TLS", greeting)
	}
	if _, res := r.cmd("LOGIN alice secret"); !strings.HasPrefix(res, "NO [PRIVACYREQUIRED]") {
		t.Errorf("LOGIN before TLS: %s", res)
	}
	if _, res := r.cmd("AUTHENTICATE PLAIN %s", b64("\x00alice\x00secret")); !strings.HasPrefix(res, "NO [PRIVACYREQUIRED]") {
		t.Errorf("AUTHENTICATE before TLS: %s", res)
	}
	r.starttls()
	caps := strings.Join(r.ok("CAPABILITY"), "\n")
	if !strings.Contains(caps, " AUTH=PLAIN") || strings.Contains(caps, "LOGINDISABLED") || strings.Contains(caps, "STARTTLS") {
		t.Errorf("capabilities after STARTTLS: %s", caps)
	}
	_, res := r.cmd("LOGIN alice secret")
	if !strings.HasPrefix(res, "OK [CAPABILITY ") {
		t.Fatalf("LOGIN: %s", res)
	}
	for _, want := range []string{"IMAP4rev1", "IMAP4rev2", "IDLE", "UIDPLUS", "MOVE", "SPECIAL-USE", "NAMESPACE", "ENABLE", "LITERAL+", "UNSELECT", "ESEARCH", "SEARCHRES", "LIST-EXTENDED", "LIST-STATUS", "STATUS=SIZE", "BINARY", "CHILDREN", "APPENDLIMIT=52428800"} {
		if !strings.Contains(strings.ReplaceAll(res, "]", " "), " "+want+" ") {
			t.Errorf("capabilities after LOGIN lack %s: %s", want, res)
		}
	}
	// The same with go-imap's client.
	c := ts.client(t, "alice@example.org", "secret", nil)
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ts.logs.String(), "authenticated") || !strings.Contains(ts.logs.String(), "tls=true") {
		t.Errorf("no authentication logged with tls:\n%s", ts.logs)
	}
}

// On imaps, AUTHENTICATE PLAIN with and without an initial response.
func TestIMAPSAuthenticate(t *testing.T) {
	ts := startServer(t, config.KindIMAPS, nil)
	failed := "NO [AUTHENTICATIONFAILED] Authentication failed"
	tests := []struct {
		name     string
		commands []string // Each line sent after a continuation request.
		want     string   // Prefix of the tagged response.
	}{
		{"sasl-ir", []string{"AUTHENTICATE PLAIN " + b64("\x00alice\x00secret")}, "OK [CAPABILITY "},
		{"continuation", []string{"AUTHENTICATE PLAIN", b64("\x00alice\x00secret")}, "OK [CAPABILITY "},
		{"address login", []string{"AUTHENTICATE PLAIN " + b64("\x00alice@example.org\x00secret")}, "OK"},
		{"own authzid", []string{"AUTHENTICATE PLAIN " + b64("alice\x00alice\x00secret")}, "OK"},
		{"other authzid", []string{"AUTHENTICATE PLAIN " + b64("bob\x00alice\x00secret")}, "NO [AUTHORIZATIONFAILED]"},
		{"wrong password", []string{"AUTHENTICATE PLAIN " + b64("\x00alice\x00nope")}, failed},
		{"unknown user", []string{"AUTHENTICATE PLAIN " + b64("\x00mallory\x00secret")}, failed},
		{"other mechanism", []string{"AUTHENTICATE CRAM-MD5"}, "NO "},
		{"cancelled", []string{"AUTHENTICATE PLAIN", "*"}, "BAD "},
		{"not base64", []string{"AUTHENTICATE PLAIN", "!!!"}, "BAD "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := ts.dialRaw(t)
			r.write("a " + tt.commands[0])
			for _, l := range tt.commands[1:] {
				if cont := r.line(); !strings.HasPrefix(cont, "+") {
					t.Fatalf("want continuation, got %q", cont)
				}
				r.write(l)
			}
			res := r.line()
			if !strings.HasPrefix(res, "a "+tt.want) {
				t.Errorf("got %q, want prefix %q", res, "a "+tt.want)
			}
		})
	}

	c := ts.client(t, "", "", nil)
	if err := c.Authenticate(sasl.NewPlainClient("", "bob", "hunter2")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
}

// Failures get the same reply for unknown users and wrong passwords, are
// logged without the password, and too many shut the address out.
func TestLoginFailures(t *testing.T) {
	limit := authlimit.New()
	limit.FreeFailures = 10 // No delays.
	limit.MaxFailures = 2
	ts := startServer(t, config.KindIMAPS, func(c *Config) { c.AuthLimit = limit })

	r, _ := ts.dialRaw(t)
	_, wrong := r.cmd("LOGIN alice wrongpassword")
	_, unknown := r.cmd("LOGIN mallory wrongpassword")
	if wrong != "NO [AUTHENTICATIONFAILED] Authentication failed" || unknown != wrong {
		t.Errorf("wrong password: %q, unknown user: %q", wrong, unknown)
	}
	logs := ts.logs.String()
	for _, want := range []string{`login=alice`, `login=mallory`, `reason="wrong password"`, `reason="unknown login"`, `remote=127.0.0.1:`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "wrongpassword") {
		t.Errorf("password logged:\n%s", logs)
	}

	// The third attempt, even with the right password, is refused and the
	// connection closed; so is the next connection's.
	if _, res := r.cmd("LOGIN alice secret"); !strings.HasPrefix(res, "NO [UNAVAILABLE]") {
		t.Errorf("third attempt: %s", res)
	}
	r.expectClosed()
	r2, _ := ts.dialRaw(t)
	r2.write("a AUTHENTICATE PLAIN " + b64("\x00alice\x00secret"))
	if res := r2.line(); !strings.HasPrefix(res, "a NO [UNAVAILABLE]") {
		t.Errorf("new connection: %s", res)
	}
	r2.expectClosed()
}

func TestList(t *testing.T) {
	ts := startServer(t, config.KindIMAPS, nil)
	c := ts.client(t, "alice", "secret", nil)
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range list {
		got = append(got, fmt.Sprintf("%s %v", l.Mailbox, l.Attrs))
	}
	want := []string{
		`INBOX [\HasNoChildren]`,
		`Archive [\HasNoChildren \Archive]`,
		`Drafts [\HasNoChildren \Drafts]`,
		`Junk [\HasNoChildren \Junk]`,
		`Sent [\HasNoChildren \Sent]`,
		`Trash [\HasNoChildren \Trash]`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("LIST:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	r := ts.rawLogin(t)
	r.ok(`CREATE Work/2026`)
	r.ok(`SUBSCRIBE Work/2026`)
	r.ok(`SUBSCRIBE Gone`)
	tests := []struct {
		cmd  string
		want []string
	}{
		{`LIST "" ""`, []string{`* LIST (\Noselect) "/" ""`}},
		{`LIST "" inbox`, []string{`* LIST (\HasNoChildren) "/" INBOX`}},
		{`LIST (SPECIAL-USE) "" *`, []string{
			`* LIST (\HasNoChildren \Archive) "/" "Archive"`,
			`* LIST (\HasNoChildren \Drafts) "/" "Drafts"`,
			`* LIST (\HasNoChildren \Junk) "/" "Junk"`,
			`* LIST (\HasNoChildren \Sent) "/" "Sent"`,
			`* LIST (\HasNoChildren \Trash) "/" "Trash"`,
		}},
		{`LIST "" %`, []string{
			`* LIST (\HasNoChildren) "/" INBOX`,
			`* LIST (\HasNoChildren \Archive) "/" "Archive"`,
			`* LIST (\HasNoChildren \Drafts) "/" "Drafts"`,
			`* LIST (\HasNoChildren \Junk) "/" "Junk"`,
			`* LIST (\HasNoChildren \Sent) "/" "Sent"`,
			`* LIST (\HasNoChildren \Trash) "/" "Trash"`,
			`* LIST (\HasChildren) "/" "Work"`,
		}},
		{`LIST Work %`, []string{`* LIST (\HasNoChildren) "/" "Work/2026"`}},
		{`LIST (SUBSCRIBED) "" *`, []string{
			`* LIST (\HasNoChildren \Subscribed) "/" INBOX`,
			`* LIST (\HasNoChildren \Archive \Subscribed) "/" "Archive"`,
			`* LIST (\HasNoChildren \Drafts \Subscribed) "/" "Drafts"`,
			`* LIST (\NonExistent \Subscribed) "/" "Gone"`,
			`* LIST (\HasNoChildren \Junk \Subscribed) "/" "Junk"`,
			`* LIST (\HasNoChildren \Sent \Subscribed) "/" "Sent"`,
			`* LIST (\HasNoChildren \Trash \Subscribed) "/" "Trash"`,
			`* LIST (\HasNoChildren \Subscribed) "/" "Work/2026"`,
		}},
		{`LIST (SUBSCRIBED RECURSIVEMATCH) "" W%`, []string{`* LIST (\HasChildren) "/" "Work" (CHILDINFO ("SUBSCRIBED"))`}},
		{`LSUB "" W*`, []string{`* LSUB (\HasNoChildren \Subscribed) "/" "Work/2026"`}},
		{`LIST "" (Sent Trash) RETURN (STATUS (MESSAGES UNSEEN) SUBSCRIBED)`, []string{
			`* LIST (\HasNoChildren \Sent \Subscribed) "/" "Sent"`,
			`* STATUS "Sent" (MESSAGES 0 UNSEEN 0)`,
			`* LIST (\HasNoChildren \Trash \Subscribed) "/" "Trash"`,
			`* STATUS "Trash" (MESSAGES 0 UNSEEN 0)`,
		}},
	}
	for _, tt := range tests {
		if got := r.ok("%s", tt.cmd); !slices.Equal(got, tt.want) {
			t.Errorf("%s:\n%s\nwant\n%s", tt.cmd, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
		}
	}
	if got := r.ok("NAMESPACE"); !slices.Equal(got, []string{`* NAMESPACE (("" "/")) NIL NIL`}) {
		t.Errorf("NAMESPACE: %q", got)
	}
}

// A delivery to the selected mailbox reaches an IDLE client at once, and
// so do other sessions' flag changes and expunges.
func TestIdle(t *testing.T) {
	ts := startServer(t, config.KindIMAP, nil)
	exists := make(chan uint32, 10)
	expunged := make(chan uint32, 10)
	c := ts.client(t, "alice", "secret", &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
		Expunge: func(seq uint32) { expunged <- seq },
	}})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 2 {
		ts.deliver(t, "alice", "Inbox", testMsg, store.DeliverOptions{})
		select {
		case n := <-exists:
			if n != uint32(i+1) {
				t.Errorf("EXISTS %d, want %d", n, i+1)
			}
		case <-time.After(time.Second):
			t.Fatalf("no EXISTS within 1s of delivery %d", i+1)
		}
	}
	t.Logf("2 deliveries seen in %v", time.Since(start))

	r := ts.rawLogin(t)
	r.ok("SELECT INBOX")
	r.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
	r.ok("EXPUNGE")
	select {
	case seq := <-expunged:
		if seq != 1 {
			t.Errorf("EXPUNGE %d, want 1", seq)
		}
	case <-time.After(time.Second):
		t.Fatal("no EXPUNGE while idling")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}

	// IDLE broken off with another command than DONE: go-imap answers BAD
	// and goes on without waiting for Idle, the next command must wait.
	r.write("i IDLE")
	if l := r.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	r.write("x NOOP")
	for l := r.line(); !strings.HasPrefix(l, "i BAD "); l = r.line() {
		if !strings.HasPrefix(l, "* ") {
			t.Fatalf("IDLE ended with %q", l)
		}
	}
	ts.deliver(t, "alice", "Inbox", testMsg, store.DeliverOptions{})
	if got := r.ok("NOOP"); !slices.Equal(got, []string{"* 2 EXISTS"}) {
		t.Errorf("NOOP after IDLE: %q", got)
	}

	// IDLE without a selected mailbox just waits for DONE.
	r.ok("UNSELECT")
	r.write("i IDLE")
	if l := r.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	r.write("DONE")
	if l := r.line(); !strings.HasPrefix(l, "i OK") {
		t.Fatalf("after DONE: %q", l)
	}
}

// APPEND to Sent, then FETCH returns exactly the bytes appended.
func TestAppendFetchExact(t *testing.T) {
	ts := startServer(t, config.KindIMAPS, nil)
	c := ts.client(t, "alice", "secret", nil)
	msg := "Subject: exact\r\nX-Spaces:  two  spaces \r\n\tfolded\r\n\r\nbody\r\n\r\n.\r\nno final newline"
	date := time.Date(2024, 5, 6, 7, 8, 9, 0, time.FixedZone("", 2*3600))
	cmd := c.Append("Sent", int64(len(msg)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen, "$Label"}, Time: date})
	if _, err := io.WriteString(cmd, msg); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	ad, err := cmd.Wait()
	if err != nil {
		t.Fatal(err)
	}
	sent, err := ts.account(t, "alice").Mailbox(context.Background(), "Sent")
	if err != nil {
		t.Fatal(err)
	}
	if ad.UID != 1 || ad.UIDValidity != sent.UIDValidity {
		t.Errorf("APPENDUID %d %d, want 1 %d", ad.UIDValidity, ad.UID, sent.UIDValidity)
	}

	if _, err := c.Select("Sent", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	header := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
	text := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierText, Peek: true, Partial: &imap.SectionPartial{Offset: 2, Size: 7}}
	whole := &imap.FetchItemBodySection{}
	msgs, err := c.Fetch(imap.UIDSetNum(ad.UID), &imap.FetchOptions{
		Flags: true, InternalDate: true, RFC822Size: true,
		BodySection: []*imap.FetchItemBodySection{whole, header, text},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	if got := string(m.FindBodySection(whole)); got != msg {
		t.Errorf("BODY[] %q\nwant    %q", got, msg)
	}
	if got, want := string(m.FindBodySection(header)), msg[:strings.Index(msg, "\r\n\r\n")+4]; got != want {
		t.Errorf("BODY[HEADER] %q, want %q", got, want)
	}
	if got := string(m.FindBodySection(text)); got != "dy\r\n\r\n." {
		t.Errorf("BODY[TEXT]<2.7> %q", got)
	}
	if m.RFC822Size != int64(len(msg)) || !m.InternalDate.Equal(date) {
		t.Errorf("RFC822.SIZE %d, INTERNALDATE %v", m.RFC822Size, m.InternalDate)
	}
	if !slices.Equal(m.Flags, []imap.Flag{imap.FlagSeen, "$label"}) {
		t.Errorf("flags %v", m.Flags)
	}

	// BODY[] without PEEK sets \Seen and sends the new flags along;
	// BODY.PEEK[] does not.
	ts.deliver(t, "alice", "Inbox", testMsg, store.DeliverOptions{})
	r := ts.rawLogin(t)
	r.ok("SELECT INBOX")
	got := r.ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject)] FLAGS)")
	if want := "* 1 FETCH (FLAGS () BODY[HEADER.FIELDS (\"Subject\")] {18}\r\nSubject: hello\r\n\r\n)"; !slices.Equal(got, []string{want}) {
		t.Errorf("FETCH BODY.PEEK: %q, want %q", got, want)
	}
	got = r.ok("FETCH 1 BODY[]<0.4>")
	if want := "* 1 FETCH (FLAGS (\\Seen) BODY[]<0> {4}\r\nFrom)"; !slices.Equal(got, []string{want}) {
		t.Errorf("FETCH BODY[]: %q, want %q", got, want)
	}
	got = r.ok("UID FETCH 1 RFC822.SIZE")
	if want := fmt.Sprintf("* 1 FETCH (UID 1 RFC822.SIZE %d)", len(testMsg)); !slices.Equal(got, []string{want}) {
		t.Errorf("UID FETCH: %q, want %q", got, want)
	}
	if _, res := r.cmd("FETCH 2 FLAGS"); !strings.HasPrefix(res, "BAD ") {
		t.Errorf("FETCH beyond the last message: %s", res)
	}
	if got := r.ok("UID FETCH 5:* UID"); !slices.Equal(got, []string{"* 1 FETCH (UID 1)"}) {
		t.Errorf("UID FETCH 5:* %q, want the last message (RFC 9051 §6.4.8)", got)
	}
}

// MOVE to Archive answers with COPYUID and expunges; COPY too.
func TestMoveCopy(t *testing.T) {
	ts := startServer(t, config.KindIMAP, nil)
	for range 3 {
		ts.deliver(t, "alice", "Inbox", testMsg, store.DeliverOptions{})
	}
	archive, err := ts.account(t, "alice").Mailbox(context.Background(), "Archive")
	if err != nil {
		t.Fatal(err)
	}
	c := ts.client(t, "alice", "secret", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	md, err := c.Move(imap.UIDSetNum(2, 3), "Archive").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if md.UIDValidity != archive.UIDValidity || md.SourceUIDs.String() != "2:3" || md.DestUIDs.String() != "1:2" {
		t.Errorf("MOVE: %+v", md)
	}
	if n := c.Mailbox().NumMessages; n != 1 {
		t.Errorf("%d messages left in INBOX, want 1", n)
	}

	r := ts.rawLogin(t)
	r.ok("SELECT Archive")
	got := r.ok("MOVE 1 INBOX")
	inbox, _ := ts.account(t, "alice").Mailbox(context.Background(), "INBOX")
	want := []string{fmt.Sprintf("* OK [COPYUID %d 1 4] COPY completed", inbox.UIDValidity), "* 1 EXPUNGE"}
	if !slices.Equal(got, want) {
		t.Errorf("MOVE: %q, want %q", got, want)
	}
	_, res := r.cmd("UID COPY 2 Trash")
	trash, _ := ts.account(t, "alice").Mailbox(context.Background(), "Trash")
	if want := fmt.Sprintf("OK [COPYUID %d 2 1] COPY completed", trash.UIDValidity); res != want {
		t.Errorf("COPY: %q, want %q", res, want)
	}
	for _, cmd := range []string{"MOVE 1 Nowhere", "COPY 1 Nowhere"} {
		if _, res := r.cmd("%s", cmd); !strings.HasPrefix(res, "NO [TRYCREATE]") {
			t.Errorf("%s: %s", cmd, res)
		}
	}
	if _, res := r.cmd("UID COPY 99 Trash"); res != "OK COPY completed" {
		t.Errorf("COPY of no message: %s", res)
	}
	for name, n := range map[string]int64{"INBOX": 2, "Archive": 1, "Trash": 1} {
		mb, _ := ts.account(t, "alice").Mailbox(context.Background(), name)
		if mb.Messages != n {
			t.Errorf("%s has %d messages, want %d", name, mb.Messages, n)
		}
	}
}

func TestStoreExpunge(t *testing.T) {
	ts := startServer(t, config.KindIMAPS, nil)
	for range 4 {
		ts.deliver(t, "alice", "Inbox", testMsg, store.DeliverOptions{})
	}
	r := ts.rawLogin(t)
	r.ok("SELECT INBOX")
	tests := []struct {
		cmd    string
		want   []string
		result string // Prefix; "" for OK.
	}{
		{`STORE 1 +FLAGS (\Deleted)`, []string{`* 1 FETCH (UID 1 FLAGS (\Deleted))`}, ""},
		// A new keyword is announced with FLAGS (RFC 9051 §7.3.5).
		{`STORE 2:3 +FLAGS.SILENT (\Deleted $Work)`, []string{`* FLAGS (\Seen \Answered \Flagged \Deleted \Draft $work)`}, ""},
		{`UID STORE 3 -FLAGS ($work)`, []string{`* 3 FETCH (UID 3 FLAGS (\Deleted))`}, ""},
		{`STORE 4 FLAGS (\Seen \Flagged Keep)`, []string{`* 4 FETCH (UID 4 FLAGS (\Seen \Flagged keep))`, `* FLAGS (\Seen \Answered \Flagged \Deleted \Draft $work keep)`}, ""},
		{`STORE 4 +FLAGS (\Recent)`, []string{`* 4 FETCH (UID 4 FLAGS (\Seen \Flagged keep))`}, ""},
		{`STORE 4 +FLAGS (\Bogus)`, nil, "BAD "},
		{`STORE 5 +FLAGS (\Seen)`, nil, "BAD "},
		{`STORE 1 +FLAGS (\Seen`, nil, "BAD "},
		{`UID EXPUNGE 2`, []string{`* 2 EXPUNGE`}, ""},
		{`FETCH 1:* (UID FLAGS)`, []string{`* 1 FETCH (UID 1 FLAGS (\Deleted))`, `* 2 FETCH (UID 3 FLAGS (\Deleted))`, `* 3 FETCH (UID 4 FLAGS (\Seen \Flagged keep))`}, ""},
		{`EXPUNGE`, []string{`* 1 EXPUNGE`, `* 1 EXPUNGE`}, ""},
		{`STATUS INBOX (MESSAGES DELETED)`, []string{`* STATUS INBOX (MESSAGES 1 DELETED 0)`}, ""},
	}
	for _, tt := range tests {
		got, res := r.cmd("%s", tt.cmd)
		if tt.result == "" && !strings.HasPrefix(res, "OK") || tt.result != "" && !strings.HasPrefix(res, tt.result) {
			t.Errorf("%s: %s", tt.cmd, res)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s:\n%q\nwant\n%q", tt.cmd, got, tt.want)
		}
	}
	// CLOSE expunges silently.
	r.ok(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	if got := r.ok("CLOSE"); len(got) != 0 {
		t.Errorf("CLOSE: %q", got)
	}
	if mb, _ := ts.account(t, "alice").Mailbox(context.Background(), "INBOX"); mb.Messages != 0 {
		t.Errorf("%d messages after CLOSE", mb.Messages)
	}
	if _, res := r.cmd("FETCH 1 FLAGS"); !strings.HasPrefix(res, "BAD ") {
		t.Errorf("FETCH after CLOSE: %s", res)
	}
}

// EXAMINE: nothing changes, FETCH BODY[] sets no \Seen, CLOSE expunges
// nothing.
func TestExamineReadOnly(t *testing.T) {
	ts := startServer(t, config.KindIMAPS, nil)
	ts.deliver(t, "alice", "Inbox", testMsg, store.DeliverOptions{Flags: store.Flags{Deleted: true}})
	r := ts.rawLogin(t)
	got, res := r.cmd("EXAMINE INBOX")
	if !strings.HasPrefix(res, "OK [READ-ONLY]") || !slices.Contains(got, "* OK [PERMANENTFLAGS ()] Permanent flags") {
		t.Errorf("EXAMINE: %q %s", got, res)
	}
	for _, cmd := range []string{`STORE 1 +FLAGS (\Seen)`, `UID STORE 1 -FLAGS (\Deleted)`, `EXPUNGE`, `UID EXPUNGE 1`, `MOVE 1 Archive`, `COPY 1 INBOX`} {
		if _, res := r.cmd("%s", cmd); !strings.HasPrefix(res, "NO [READ-ONLY]") {
			t.Errorf("%s: %s", cmd, res)
		}
	}
	r.write(fmt.Sprintf("a APPEND INBOX {%d+}\r\n%s", len(testMsg), testMsg))
	if res := r.line(); !strings.HasPrefix(res, "a NO [READ-ONLY]") {
		t.Errorf("APPEND: %s", res)
	}
	if got := r.ok("FETCH 1 BODY[TEXT]"); len(got) != 1 || strings.Contains(got[0], "Seen") {
		t.Errorf("FETCH: %q", got)
	}
	r.ok("COPY 1 Archive")
	r.ok("CLOSE")
	mb, _ := ts.account(t, "alice").Mailbox(context.Background(), "INBOX")
	if mb.Messages != 1 || mb.Unseen != 1 || mb.Deleted != 1 {
		t.Errorf("after EXAMINE: %+v", mb.Counts)
	}
	// SELECT then allows changes.
	got, res = r.cmd("SELECT INBOX")
	if !strings.HasPrefix(res, "OK [READ-WRITE]") || !slices.Contains(got, `* OK [PERMANENTFLAGS (\Seen \Answered \Flagged \Deleted \Draft \*)] Permanent flags`) {
		t.Errorf("SELECT: %q %s", got, res)
	}
	r.ok(`STORE 1 -FLAGS.SILENT (\Deleted)`)
}

// Two sessions on one mailbox see each other's changes at command
// boundaries: flags at once, expunges not during FETCH.
func TestConcurrentSessions(t *testing.T) {
	ts := startServer(t, config.KindIMAPS, nil)
	for range 3 {
		ts.deliver(t, "alice", "Inbox", testMsg, store.DeliverOptions{})
	}
	a, b := ts.rawLogin(t), ts.rawLogin(t)
	a.ok("SELECT INBOX")
	b.ok("SELECT INBOX")

	a.ok(`STORE 2 +FLAGS.SILENT (\Flagged)`)
	if got := b.ok("NOOP"); !slices.Equal(got, []string{`* 2 FETCH (UID 2 FLAGS (\Flagged))`}) {
		t.Errorf("B after A's STORE: %q", got)
	}
	if got := a.ok("NOOP"); len(got) != 0 {
		t.Errorf("A's own change echoed: %q", got)
	}

	a.ok(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	if got := a.ok("EXPUNGE"); !slices.Equal(got, []string{"* 1 EXPUNGE"}) {
		t.Errorf("A's EXPUNGE: %q", got)
	}
	// B still numbers the messages 1 to 3; FETCH must not announce the
	// expunge (RFC 9051 §7.5.1) and leaves out the message gone, but
	// tells of A's earlier flag change.
	want := []string{`* 2 FETCH (FLAGS (\Flagged))`, `* 3 FETCH (FLAGS ())`, `* 1 FETCH (UID 1 FLAGS (\Deleted))`}
	if got := b.ok("FETCH 1:3 FLAGS"); !slices.Equal(got, want) {
		t.Errorf("B's FETCH: %q, want %q", got, want)
	}
	if got := b.ok("NOOP"); !slices.Equal(got, []string{"* 1 EXPUNGE"}) {
		t.Errorf("B's NOOP: %q", got)
	}

	ts.deliver(t, "alice", "Inbox", testMsg, store.DeliverOptions{})
	for _, s := range []*raw{a, b} {
		if got := s.ok("CHECK"); !slices.Equal(got, []string{"* 3 EXISTS"}) {
			t.Errorf("after delivery: %q", got)
		}
	}
	b.ok(`UID STORE 4 +FLAGS.SILENT (\Answered)`)
	if got := a.ok("UID SEARCH ANSWERED"); !slices.Equal(got, []string{`* SEARCH 4`, `* 3 FETCH (UID 4 FLAGS (\Answered))`}) {
		t.Errorf("A's SEARCH after B's STORE: %q", got)
	}

	// Another session deleting the selected mailbox ends the session at
	// its next command.
	a.ok("CREATE Doomed")
	a.ok("SELECT Doomed")
	b.ok("DELETE Doomed")
	a.write("x NOOP")
	if got := a.expectClosed(); !slices.Equal(got, []string{"* BYE Selected mailbox was deleted, have to disconnect"}) {
		t.Errorf("A after B deleted its mailbox: %q", got)
	}
	// Also while it idles there.
	c := ts.rawLogin(t)
	c.ok("CREATE Doomed3")
	c.ok("SELECT Doomed3")
	c.write("i IDLE")
	if l := c.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	b.ok("DELETE Doomed3")
	if got := c.expectClosed(); !slices.Equal(got, []string{"* BYE Selected mailbox was deleted, have to disconnect"}) {
		t.Errorf("idling session after its mailbox was deleted: %q", got)
	}
	// Deleting one's own selected mailbox deselects it.
	b.ok("CREATE Doomed2")
	b.ok("SELECT Doomed2")
	b.ok("DELETE Doomed2")
	if _, res := b.cmd("FETCH 1 FLAGS"); !strings.HasPrefix(res, "BAD ") {
		t.Errorf("FETCH after deleting the selected mailbox: %s", res)
	}
	b.ok("SELECT INBOX")
}

func TestSearch(t *testing.T) {
	ts := startServer(t, config.KindIMAPS, nil)
	day := func(d string) time.Time {
		tm, err := time.Parse("2006-01-02 15:04", d)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	msgs := []struct {
		msg  string
		opts store.DeliverOptions
	}{
		{"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: Lunch plans\r\nDate: Wed, 10 Jan 2024 12:00:00 +0000\r\n\r\nLet's eat pizza.\r\n",
			store.DeliverOptions{Flags: store.Flags{Seen: true}, Received: day("2024-01-10 12:00")}},
		{"From: Carol <carol@example.net>\r\nTo: alice@example.org\r\nSubject: Invoice 42\r\nDate: Thu, 15 Feb 2024 08:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64("Total due: 100 EUR") + "\r\n--b--\r\n",
			store.DeliverOptions{Flags: store.Flags{Flagged: true}, Received: day("2024-02-15 08:00")}},
		{"From: bob@example.org\r\nTo: alice@example.org\r\nCc: Dave <dave@example.net>\r\nSubject: =?utf-8?q?R=C3=A9sum=C3=A9?=\r\nDate: Wed, 20 Mar 2024 23:30:00 -0500\r\n\r\nsee attached\r\n",
			store.DeliverOptions{Flags: store.Flags{Deleted: true}, Keywords: []string{"$work"}, Received: day("2024-03-20 23:59")}},
		{"From: alice@example.org\r\nSubject: large\r\n\r\n" + strings.Repeat("x", 2000) + "\r\n",
			store.DeliverOptions{Received: day("2024-03-20 00:01")}},
		// A malformed header: its body is searched as raw bytes.
		{"Subject: broken\r\nno colon here\r\n\r\nneedle in body\r\n",
			store.DeliverOptions{Received: day("2024-04-01 00:00")}},
	}
	for _, m := range msgs {
		ts.deliver(t, "alice", "Inbox", m.msg, m.opts)
	}
	r := ts.rawLogin(t)
	r.ok("SELECT INBOX")
	tests := []struct{ criteria, want string }{
		{"ALL", "1 2 3 4 5"},
		{"SEEN", "1"},
		{"UNSEEN", "2 3 4 5"},
		{"FLAGGED", "2"},
		{"DELETED", "3"},
		{"UNDELETED", "1 2 4 5"},
		{"KEYWORD $Work", "3"},
		{"UNKEYWORD $work", "1 2 4 5"},
		{"NEW", ""},
		{"OLD", "1 2 3 4 5"},
		{"FROM alice", "1 4"},
		{"FROM CAROL", "2"},
		{"TO alice@example.org", "2 3"},
		{"SUBJECT invoice", "2"},
		{`CHARSET UTF-8 SUBJECT "résumé"`, "3"},
		{"HEADER Cc dave", "3"},
		{`HEADER Cc ""`, "3"},
		{"BODY pizza", "1"},
		{`BODY "100 eur"`, "2"},
		{"BODY lunch", ""},
		{"TEXT lunch", "1"},
		{"TEXT Dave", "3"},
		{"SINCE 1-Mar-2024", "3 4 5"},
		{"BEFORE 1-Feb-2024", "1"},
		{"ON 20-Mar-2024", "3 4"},
		{"ON 21-Mar-2024", ""},
		{"SENTON 20-Mar-2024", "3"},
		{"SENTBEFORE 15-Feb-2024", "1"},
		{"LARGER 1000", "4"},
		{"SMALLER 1000", "1 2 3 5"},
		{"NOT FROM alice", "2 3 5"},
		{"OR FLAGGED DELETED", "2 3"},
		{"(OR SEEN FLAGGED) NOT SUBJECT plans", "2"},
		{"2:3", "2 3"},
		{"2:*", "2 3 4 5"},
		{"1,4 SEEN", "1"},
		{"UID 3:*", "3 4 5"},
		{"UID 9:*", "5"},
		{"BODY needle", "5"},
		{"TEXT BROKEN", "5"},
		{"SUBJECT broken", "5"},
	}
	for _, tt := range tests {
		got := r.ok("SEARCH %s", tt.criteria)
		want := strings.TrimSpace("* SEARCH " + tt.want)
		if !slices.Equal(got, []string{want}) {
			t.Errorf("SEARCH %s: %q, want %q", tt.criteria, got, want)
		}
	}
	if got := r.ok("UID SEARCH FLAGGED"); !slices.Equal(got, []string{"* SEARCH 2"}) {
		t.Errorf("UID SEARCH: %q", got)
	}
	// go-imap answers an unknown search key with NO [SERVERBUG] instead of
	// BAD, before the session sees the command; at least the connection
	// stays in sync.
	if _, res := r.cmd("SEARCH BOGUS"); !strings.HasPrefix(res, "BAD") && !strings.HasPrefix(res, "NO") {
		t.Errorf("SEARCH BOGUS: %s", res)
	}
	if _, res := r.cmd("SEARCH CHARSET KOI8-R ALL"); !strings.HasPrefix(res, "NO [BADCHARSET]") {
		t.Errorf("SEARCH CHARSET KOI8-R: %s", res)
	}

	// ESEARCH (RFC 4731) and SEARCHRES (RFC 5182).
	if got := r.ok("SEARCH RETURN (MIN MAX COUNT) UNSEEN"); !slices.Equal(got, []string{fmt.Sprintf(`* ESEARCH (TAG "t%d") MIN 2 MAX 5 COUNT 4`, r.tag)}) {
		t.Errorf("ESEARCH: %q", got)
	}
	r.ok("SEARCH RETURN (SAVE) OR SEEN DELETED")
	if got := r.ok("FETCH $ (UID)"); !slices.Equal(got, []string{"* 1 FETCH (UID 1)", "* 3 FETCH (UID 3)"}) {
		t.Errorf("FETCH $: %q", got)
	}
	if got := r.ok("UID SEARCH $ SEEN"); !slices.Equal(got, []string{"* SEARCH 1"}) {
		t.Errorf("SEARCH $: %q", got)
	}

	// The same through go-imap's client.
	c := ts.client(t, "alice", "secret", nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sd, err := c.UIDSearch(&imap.SearchCriteria{
		Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "alice"}},
		Since:  day("2024-02-01 00:00"),
	}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := sd.AllUIDs(); !slices.Equal(got, []imap.UID{4}) {
		t.Errorf("UIDSearch: %v", got)
	}
}

// Header searches match across folded lines, in any case, and in encoded
// words, whether or not the raw bytes hold the value; a value the bytes
// lack matches nothing.
func TestSearchHeaderBytes(t *testing.T) {
	ts := startServer(t, config.KindIMAPS, nil)
	for _, m := range []string{
		"Subject: Quarterly\r\n\tREPORT draft\r\nX-Tag: MiXeD\r\n\r\nbody\r\n",
		"Subject: =?utf-8?q?Quarterly_report?=\r\n\r\nbody\r\n",
		"Subject: =?utf-8?b?" + b64("Zürich") + "?=\r\n\r\nbody\r\n",
		"Subject: other\r\n\r\nreport\r\n",
	} {
		ts.deliver(t, "alice", "Inbox", m, store.DeliverOptions{})
	}
	r := ts.rawLogin(t)
	r.ok("SELECT INBOX")
	for _, tt := range []struct{ criteria, want string }{
		{"SUBJECT report", "1 2"},
		{`SUBJECT "quarterly report"`, "1 2"},
		{"SUBJECT Quarterly", "1 2"},
		{"HEADER X-Tag mixed", "1"},
		{`CHARSET UTF-8 SUBJECT "zürich"`, "3"},
		{"SUBJECT zqxj", ""},
		{"OR SUBJECT zqxj SUBJECT other", "4"},
		{"NOT SUBJECT report", "3 4"},
	} {
		got := r.ok("SEARCH %s", tt.criteria)
		if want := strings.TrimSpace("* SEARCH " + tt.want); !slices.Equal(got, []string{want}) {
			t.Errorf("SEARCH %s: %q, want %q", tt.criteria, got, want)
		}
	}
}

func TestStatus(t *testing.T) {
	ts := startServer(t, config.KindIMAPS, nil)
	ts.deliver(t, "alice", "Inbox", testMsg, store.DeliverOptions{Flags: store.Flags{Seen: true}})
	ts.deliver(t, "alice", "Inbox", testMsg, store.DeliverOptions{Flags: store.Flags{Deleted: true}})
	inbox, _ := ts.account(t, "alice").Mailbox(context.Background(), "Inbox")
	r := ts.rawLogin(t)
	got := r.ok("STATUS inbox (MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE DELETED RECENT APPENDLIMIT DELETED-STORAGE)")
	want := fmt.Sprintf("* STATUS INBOX (MESSAGES 2 UIDNEXT 3 UIDVALIDITY %d UNSEEN 1 DELETED 1 SIZE %d APPENDLIMIT 52428800 DELETED-STORAGE %d RECENT 0)", inbox.UIDValidity, 2*len(testMsg), len(testMsg))
	if !slices.Equal(got, []string{want}) {
		t.Errorf("STATUS:\n%q\nwant\n%q", got, want)
	}
	if _, res := r.cmd("STATUS Nowhere (MESSAGES)"); !strings.HasPrefix(res, "NO [NONEXISTENT]") {
		t.Errorf("STATUS Nowhere: %s", res)
	}

	c := ts.client(t, "alice", "secret", nil)
	sd, err := c.Status("Sent", &imap.StatusOptions{NumMessages: true, UIDNext: true, NumUnseen: true, Size: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if *sd.NumMessages != 0 || sd.UIDNext != 1 || *sd.NumUnseen != 0 || *sd.Size != 0 {
		t.Errorf("STATUS Sent: %+v", sd)
	}
}

func TestMailboxManagement(t *testing.T) {
	ts := startServer(t, config.KindIMAPS, nil)
	ts.deliver(t, "alice", "Inbox", testMsg, store.DeliverOptions{})
	r := ts.rawLogin(t)
	tests := []struct {
		cmd, result string // Result prefix.
	}{
		{"CREATE Projects/2026", "OK"},
		{"CREATE Projects", "NO [ALREADYEXISTS]"},
		{"CREATE inbox", "NO [ALREADYEXISTS]"},
		{`CREATE Spam (USE (\Junk))`, "OK"},
		{`CREATE Stars (USE (\Flagged))`, "NO [USEATTR]"},
		{"CREATE a//b", "NO [CANNOT]"},
		{"CREATE Caf&AOk-", "OK"}, // Modified UTF-7 (RFC 3501 §5.1.3).
		{"RENAME Projects Work", "OK"},
		{"RENAME Work Sent", "NO [ALREADYEXISTS]"},
		{"RENAME Nowhere Else", "NO [NONEXISTENT]"},
		{"DELETE Work", "NO [HASCHILDREN]"},
		{"DELETE Work/2026", "OK"},
		{"DELETE Work", "OK"},
		{"DELETE INBOX", "NO [CANNOT]"},
		{"DELETE Nowhere", "NO [NONEXISTENT]"},
		{"SELECT Nowhere", "NO [NONEXISTENT]"},
		{"UNSUBSCRIBE Trash", "OK"},
		{"SUBSCRIBE Spam", "OK"},
		{"RENAME INBOX Old", "OK"},
		{fmt.Sprintf("APPEND Nowhere {%d+}\r\n%s", len(testMsg), testMsg), "NO [TRYCREATE]"},
	}
	for _, tt := range tests {
		if _, res := r.cmd("%s", tt.cmd); !strings.HasPrefix(res, tt.result) {
			t.Errorf("%s: %s, want %s", tt.cmd, res, tt.result)
		}
	}
	got := r.ok(`LIST "" *`)
	want := []string{
		`* LIST (\HasNoChildren) "/" INBOX`,
		`* LIST (\HasNoChildren \Archive) "/" "Archive"`,
		`* LIST (\HasNoChildren) "/" "Caf&AOk-"`,
		`* LIST (\HasNoChildren \Drafts) "/" "Drafts"`,
		`* LIST (\HasNoChildren \Junk) "/" "Junk"`,
		`* LIST (\HasNoChildren) "/" "Old"`,
		`* LIST (\HasNoChildren \Sent) "/" "Sent"`,
		`* LIST (\HasNoChildren \Junk) "/" "Spam"`,
		`* LIST (\HasNoChildren \Trash) "/" "Trash"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("LIST:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := r.ok(`LSUB "" S*`); !slices.Equal(got, []string{`* LSUB (\HasNoChildren \Sent \Subscribed) "/" "Sent"`, `* LSUB (\HasNoChildren \Junk \Subscribed) "/" "Spam"`}) {
		t.Errorf("LSUB: %q", got)
	}
	// RENAME INBOX moved its message.
	if got := r.ok("STATUS Old (MESSAGES)"); !slices.Equal(got, []string{`* STATUS "Old" (MESSAGES 1)`}) {
		t.Errorf("STATUS Old: %q", got)
	}
	if _, err := ts.account(t, "alice").Mailbox(context.Background(), "Café"); err != nil {
		t.Errorf("mailbox name not decoded from modified UTF-7: %v", err)
	}
}

const multipartMsg = "From: \"Alice Example\" <alice@example.org>\r\n" +
	"To: Bob <bob@example.org>, carol@example.net\r\n" +
	"Cc: dave@example.net\r\n" +
	"Subject: =?utf-8?q?caf=C3=A9_report?=\r\n" +
	"Date: Tue, 07 May 2024 10:00:00 +0200\r\n" +
	"Message-ID: <mp1@example.org>\r\n" +
	"In-Reply-To: <orig@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n" +
	"\r\n" +
	"preamble\r\n" +
	"--XYZ\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Hello caf=C3=A9 world\r\n" +
	"second line\r\n" +
	"--XYZ\r\n" +
	"Content-Type: application/pdf; name=\"r.pdf\"\r\n" +
	"Content-Disposition: attachment; filename=\"r.pdf\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"JVBERi0xLjQK\r\n" +
	"--XYZ--\r\n"

func TestBodyStructureEnvelope(t *testing.T) {
	ts := startServer(t, config.KindIMAPS, nil)
	ts.deliver(t, "alice", "Inbox", multipartMsg, store.DeliverOptions{})
	// A multipart whose boundary never occurs, and a message without
	// Content-Type, must not break the server.
	ts.deliver(t, "alice", "Inbox", "Subject: broken\r\nContent-Type: multipart/mixed; boundary=nope\r\n\r\nno parts here\r\n", store.DeliverOptions{})
	ts.deliver(t, "alice", "Inbox", "Subject: plain\r\n\r\nline 1\r\nline 2\r\n", store.DeliverOptions{})

	c := ts.client(t, "alice", "secret", nil)
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	part1 := &imap.FetchItemBodySection{Part: []int{1}, Peek: true}
	mime2 := &imap.FetchItemBodySection{Part: []int{2}, Specifier: imap.PartSpecifierMIME, Peek: true}
	bin1 := &imap.FetchItemBinarySection{Part: []int{1}, Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{
		Envelope:          true,
		BodyStructure:     &imap.FetchItemBodyStructure{Extended: true},
		BodySection:       []*imap.FetchItemBodySection{part1, mime2},
		BinarySection:     []*imap.FetchItemBinarySection{bin1},
		BinarySectionSize: []*imap.FetchItemBinarySectionSize{{Part: []int{2}}},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[0]
	env := m.Envelope
	if env.Subject != "café report" || env.MessageID != "mp1@example.org" || !slices.Equal(env.InReplyTo, []string{"orig@example.org"}) ||
		!env.Date.Equal(time.Date(2024, 5, 7, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("envelope %+v", env)
	}
	addrs := func(l []imap.Address) string {
		var s []string
		for _, a := range l {
			s = append(s, a.Name+" <"+a.Addr()+">")
		}
		return strings.Join(s, ", ")
	}
	for _, tt := range []struct{ field, got, want string }{
		{"from", addrs(env.From), "Alice Example <alice@example.org>"},
		{"sender", addrs(env.Sender), "Alice Example <alice@example.org>"},
		{"reply-to", addrs(env.ReplyTo), "Alice Example <alice@example.org>"},
		{"to", addrs(env.To), "Bob <bob@example.org>,  <carol@example.net>"},
		{"cc", addrs(env.Cc), " <dave@example.net>"},
		{"bcc", addrs(env.Bcc), ""},
	} {
		if tt.got != tt.want {
			t.Errorf("envelope %s %q, want %q", tt.field, tt.got, tt.want)
		}
	}

	bs, ok := m.BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || bs.Subtype != "mixed" || len(bs.Children) != 2 || bs.Extended.Params["boundary"] != "XYZ" {
		t.Fatalf("body structure %#v", m.BodyStructure)
	}
	text, ok1 := bs.Children[0].(*imap.BodyStructureSinglePart)
	pdf, ok2 := bs.Children[1].(*imap.BodyStructureSinglePart)
	if !ok1 || !ok2 {
		t.Fatalf("parts %#v", bs.Children)
	}
	if text.Type != "text" || text.Subtype != "plain" || text.Params["charset"] != "utf-8" || text.Encoding != "quoted-printable" ||
		text.Size != uint32(len("Hello caf=C3=A9 world\r\nsecond line")) || text.Text == nil || text.Text.NumLines != 1 {
		t.Errorf("part 1 %+v %+v", text, text.Text)
	}
	if pdf.Type != "application" || pdf.Subtype != "pdf" || pdf.Encoding != "base64" || pdf.Params["name"] != "r.pdf" ||
		pdf.Extended.Disposition == nil || pdf.Extended.Disposition.Value != "attachment" || pdf.Extended.Disposition.Params["filename"] != "r.pdf" {
		t.Errorf("part 2 %+v %+v", pdf, pdf.Extended)
	}
	if got := string(m.FindBodySection(part1)); got != "Hello caf=C3=A9 world\r\nsecond line" {
		t.Errorf("BODY[1] %q", got)
	}
	if got := string(m.FindBodySection(mime2)); !strings.HasPrefix(got, "Content-Type: application/pdf") || !strings.HasSuffix(got, "\r\n\r\n") {
		t.Errorf("BODY[2.MIME] %q", got)
	}
	if got := string(m.FindBinarySection(bin1)); got != "Hello café world\r\nsecond line" {
		t.Errorf("BINARY[1] %q", got)
	}
	if n, ok := m.FindBinarySectionSize([]int{2}); !ok || n != uint32(len("%PDF-1.4\n")) {
		t.Errorf("BINARY.SIZE[2] %d %v", n, ok)
	}

	r := ts.rawLogin(t)
	r.ok("EXAMINE INBOX")
	tests := []struct{ cmd, want string }{
		{"FETCH 2 BODYSTRUCTURE", `* 2 FETCH (BODYSTRUCTURE (("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed" ("boundary" "nope") NIL NIL NIL))`},
		{"FETCH 3 BODY", `* 3 FETCH (BODY ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 16 2))`},
		{"FETCH 3 ENVELOPE", `* 3 FETCH (ENVELOPE (NIL "plain" NIL NIL NIL NIL NIL NIL NIL NIL))`},
		{"FETCH 3 BODY.PEEK[1]", "* 3 FETCH (BODY[1] {16}\r\nline 1\r\nline 2\r\n)"},
		{"FETCH 3 BODY.PEEK[5]", "* 3 FETCH (BODY[5] {0}\r\n)"},
	}
	for _, tt := range tests {
		if got := r.ok("%s", tt.cmd); !slices.Equal(got, []string{tt.want}) {
			t.Errorf("%s:\n%q\nwant\n%q", tt.cmd, got, tt.want)
		}
	}
}

// APPEND and COPY over the quota get NO [OVERQUOTA]; over APPENDLIMIT NO
// [TOOBIG].
func TestOverQuota(t *testing.T) {
	ts := startServer(t, config.KindIMAPS, func(c *Config) { c.MaxMessageSize = 1800 })
	r, _ := ts.dialRaw(t)
	r.ok("LOGIN bob hunter2")
	big := "Subject: big\r\n\r\n" + strings.Repeat("y", 1200) + "\r\n"
	r.write(fmt.Sprintf("a APPEND INBOX {%d+}\r\n%s", len(big), big))
	if res := r.line(); !strings.HasPrefix(res, "a OK [APPENDUID ") {
		t.Fatalf("first APPEND: %s", res)
	}
	r.write(fmt.Sprintf("b APPEND Sent {%d+}\r\n%s", len(big), big))
	if res := r.line(); !strings.HasPrefix(res, "b NO [OVERQUOTA]") {
		t.Errorf("second APPEND: %s", res)
	}
	r.ok("SELECT INBOX")
	if _, res := r.cmd("COPY 1 Archive"); !strings.HasPrefix(res, "NO [OVERQUOTA]") {
		t.Errorf("COPY: %s", res)
	}
	huge := strings.Repeat("z", 1900)
	r.write(fmt.Sprintf("c APPEND INBOX {%d}", len(huge)))
	if res := r.line(); !strings.HasPrefix(res, "c NO [TOOBIG]") {
		t.Errorf("APPEND over APPENDLIMIT: %s", res)
	}
	used, _, _ := ts.account(t, "bob").Quota(context.Background())
	if used != int64(len(big)) {
		t.Errorf("bob uses %d bytes, want %d", used, len(big))
	}
	r.ok("NOOP") // The connection is still in sync.
}

// With IMAP4rev2 enabled, SEARCH answers ESEARCH and SELECT has no RECENT.
func TestIMAP4rev2(t *testing.T) {
	ts := startServer(t, config.KindIMAPS, nil)
	ts.deliver(t, "alice", "Inbox", testMsg, store.DeliverOptions{})
	r := ts.rawLogin(t)
	if got := r.ok("ENABLE IMAP4rev2"); !slices.Equal(got, []string{"* ENABLED IMAP4rev2"}) {
		t.Errorf("ENABLE: %q", got)
	}
	got := r.ok("SELECT inbox")
	if slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, "RECENT") }) || !slices.Contains(got, "* 1 EXISTS") ||
		!slices.Contains(got, `* LIST (\HasNoChildren) "/" INBOX`) {
		t.Errorf("SELECT: %q", got)
	}
	if got := r.ok("SEARCH ALL"); !slices.Equal(got, []string{fmt.Sprintf(`* ESEARCH (TAG "t%d") ALL 1`, r.tag)}) {
		t.Errorf("SEARCH: %q", got)
	}
}

// Logging out and closing the server end sessions cleanly, IDLE included.
func TestShutdown(t *testing.T) {
	ts := startServer(t, config.KindIMAPS, nil)
	r := ts.rawLogin(t)
	if got, res := r.cmd("LOGOUT"); !slices.Equal(got, []string{"* BYE Logging out"}) || !strings.HasPrefix(res, "OK") {
		t.Errorf("LOGOUT: %q %s", got, res)
	}
	r.expectClosed()

	pw, _ := passwords()
	srv, err := New(Config{Listener: config.Listener{Name: "x", Kind: config.KindIMAPS}, TLS: serverTLS(t), Accounts: fakeAccounts{}, Auth: pw, Store: ts.store})
	if err != nil {
		t.Fatal(err)
	}
	ts2 := *ts
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts2.addr = l.Addr().String()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	r2 := ts2.rawLogin(t)
	r2.ok("SELECT INBOX")
	r2.write("i IDLE")
	if l := r2.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	srv.Close()
	r2.expectClosed()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	if err := srv.Serve(l); err == nil {
		t.Error("Serve after Close succeeded")
	}
}

// A panic in a session method is logged with the connection's id and ends
// the connection; the client gets an error, the server goes on.
func TestPanicGuard(t *testing.T) {
	logs := &testlog.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, nil)).With(slog.String("cid", "c1"))
	c1, c2 := net.Pipe()
	defer c2.Close()
	s := &session{srv: &Server{ctx: context.Background()}, conn: &clientconn.Conn{Conn: c1, Log: log}, log: log}
	// No account: the store dereferences nil.
	if _, err := s.Select("INBOX", &imap.SelectOptions{}); err != errInternal {
		t.Errorf("Select: %v, want %v", err, errInternal)
	}
	if l := logs.String(); !strings.Contains(l, "panic in IMAP session") || !strings.Contains(l, "cid=c1") || !strings.Contains(l, "goroutine") {
		t.Errorf("log:\n%s", l)
	}
	if _, err := c2.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("connection not closed: %v", err)
	}
}

func TestListenAndServeError(t *testing.T) {
	pw, _ := passwords()
	srv, err := New(Config{Listener: config.Listener{Name: "x", Kind: config.KindIMAP, Address: "127.0.0.1:bad"}, TLS: serverTLS(t), Accounts: fakeAccounts{}, Auth: pw, Store: pw})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.ListenAndServe(); err == nil || !strings.Contains(err.Error(), "listener x") {
		t.Errorf("ListenAndServe: %v", err)
	}
}

// A client that connects to imaps and sends nothing is dropped: go-imap
// sets no deadline for the handshake.
func TestHandshakeTimeout(t *testing.T) {
	ts := startServer(t, config.KindIMAPS, func(c *Config) { c.HandshakeTimeout = 200 * time.Millisecond })
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := nc.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read: %v, want EOF", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed after %v", d)
	}
	// A client that does the handshake in time is served as usual.
	c := ts.client(t, "alice", "secret", nil)
	time.Sleep(300 * time.Millisecond)
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
}

// A search of a mailbox of several chunks, matched by several workers,
// finds each match once, in order.
func TestSearchLargeMailbox(t *testing.T) {
	ts := startServer(t, config.KindIMAPS, nil)
	n := benchMailbox(t, ts, 6)
	r := ts.rawLogin(t)
	r.ok("SELECT INBOX")
	var want []string
	for seq := 4; seq <= n; seq += 10 {
		want = append(want, strconv.Itoa(seq))
	}
	if got := r.ok(`SEARCH SUBJECT "message 3 "`); !slices.Equal(got, []string{"* SEARCH " + strings.Join(want, " ")}) {
		t.Errorf("SEARCH SUBJECT in %d messages: %q, want %d matches", n, got, len(want))
	}
	if got := r.ok("SEARCH RETURN (COUNT) BODY body"); !slices.Equal(got, []string{fmt.Sprintf(`* ESEARCH (TAG "t%d") COUNT %d`, r.tag, n)}) {
		t.Errorf("SEARCH BODY: %q", got)
	}
}
