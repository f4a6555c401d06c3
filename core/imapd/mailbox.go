package imapd

import (
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/switchyard-mta/switchyard/core/store"
)

// delim is the hierarchy separator, store.Separator.
const delim = '/'

// inbox is how responses spell Inbox (RFC 9051 §5.1: case-insensitive, and
// clients expect the upper case of the RFC).
const inbox = "INBOX"

// displayName returns the name a client sees for a store mailbox name:
// "Inbox" and its children are spelled "INBOX".
func displayName(name string) string {
	if rest, ok := strings.CutPrefix(name, store.Inbox); ok && (rest == "" || strings.HasPrefix(rest, store.Separator)) {
		return inbox + rest
	}
	return name
}

// canonInbox spells a first level "INBOX" in any case as "INBOX", so that
// LIST patterns and references match Inbox case-insensitively.
func canonInbox(s string) string {
	first, rest, found := strings.Cut(s, store.Separator)
	if !strings.EqualFold(first, inbox) {
		return s
	}
	if found {
		return inbox + store.Separator + rest
	}
	return inbox
}

// systemFlags are the flags every mailbox supports (RFC 9051 §2.3.2).
var systemFlags = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}

// mailboxFlags is the FLAGS response of a mailbox with keywords.
func mailboxFlags(keywords []string) []imap.Flag {
	l := slices.Clone(systemFlags)
	for _, k := range keywords {
		l = append(l, imap.Flag(k))
	}
	return l
}

// Select is SELECT and EXAMINE (RFC 9051 §6.3.2, §6.3.3). go-imap has
// already closed a mailbox selected before.
func (s *session) Select(name string, options *imap.SelectOptions) (data *imap.SelectData, err error) {
	defer s.begin(&err)()
	s.closeView()
	v, err := s.account.Select(s.ctx(), name)
	if err != nil {
		return nil, s.storeError("select", err, imap.ResponseCodeNonExistent)
	}
	s.view, s.readOnly = v, options.ReadOnly
	mb := v.Mailbox()
	flags := mailboxFlags(mb.Keywords)
	perm := []imap.Flag{} // Read-only: no flag can be changed.
	if !s.readOnly {
		perm = append(slices.Clone(flags), imap.FlagWildcard) // Any keyword can be created.
	}
	data = &imap.SelectData{
		Flags:             flags,
		PermanentFlags:    perm,
		NumMessages:       v.Len(),
		FirstUnseenSeqNum: v.FirstUnseen(),
		UIDNext:           imap.UID(mb.UIDNext),
		UIDValidity:       mb.UIDValidity,
	}
	if s.ic.EnabledCaps().Has(imap.CapIMAP4rev2) {
		// RFC 9051 §6.3.2: the mailbox's LIST response, with its name as
		// the server spells it.
		all, err := s.account.Mailboxes(s.ctx())
		if err != nil {
			return nil, s.storeError("select", err, imap.ResponseCodeNonExistent)
		}
		data.List = &imap.ListData{Attrs: mailboxAttrs(mb, all), Delim: delim, Mailbox: displayName(mb.Name)}
	}
	return data, nil
}

// hasChildren reports whether one of all is below name.
func hasChildren(name string, all []store.Mailbox) bool {
	return slices.ContainsFunc(all, func(m store.Mailbox) bool { return strings.HasPrefix(m.Name, name+store.Separator) })
}

// mailboxAttrs returns the attributes of an existing mailbox in LIST:
// \HasChildren or \HasNoChildren (RFC 3348), and its special use (RFC
// 6154), given all mailboxes.
func mailboxAttrs(mb store.Mailbox, all []store.Mailbox) []imap.MailboxAttr {
	attr := imap.MailboxAttrHasNoChildren
	if hasChildren(mb.Name, all) {
		attr = imap.MailboxAttrHasChildren
	}
	attrs := []imap.MailboxAttr{attr}
	if mb.SpecialUse != "" {
		attrs = append(attrs, imap.MailboxAttr(mb.SpecialUse))
	}
	return attrs
}

// Unselect is UNSELECT (RFC 3691) and the end of CLOSE (RFC 9051 §6.4.1).
func (s *session) Unselect() (err error) {
	defer s.begin(&err)()
	s.closeView()
	return nil
}

// specialUses maps the attributes of CREATE (USE (...)) to the store's.
var specialUses = map[string]store.SpecialUse{
	`\archive`: store.Archive,
	`\drafts`:  store.Drafts,
	`\junk`:    store.Junk,
	`\sent`:    store.Sent,
	`\trash`:   store.Trash,
}

// Create is CREATE (RFC 9051 §6.3.4), with USE (RFC 6154 §3): missing
// parents are created too.
func (s *session) Create(name string, options *imap.CreateOptions) (err error) {
	defer s.begin(&err)()
	var use store.SpecialUse
	switch len(options.SpecialUse) {
	case 0:
	case 1:
		var ok bool
		if use, ok = specialUses[strings.ToLower(string(options.SpecialUse[0]))]; !ok {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "USEATTR", Text: "Special use " + string(options.SpecialUse[0]) + " not supported"}
		}
	default:
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "USEATTR", Text: "Only one special use per mailbox"}
	}
	mb, err := s.account.CreateMailbox(s.ctx(), name, use)
	if err != nil {
		return s.storeError("create mailbox", err, imap.ResponseCodeNonExistent)
	}
	s.log.Info("mailbox created", slog.String("mailbox", mb.Name), slog.String("use", string(use)))
	return nil
}

// Delete is DELETE (RFC 9051 §6.3.5). A mailbox with children is refused
// with NO [HASCHILDREN]: the store keeps no \Noselect placeholders. If the
// session deletes its selected mailbox, it is deselected.
func (s *session) Delete(name string) (err error) {
	defer s.begin(&err)()
	mb, err := s.account.Mailbox(s.ctx(), name)
	if err != nil {
		return s.storeError("delete mailbox", err, imap.ResponseCodeNonExistent)
	}
	all, err := s.account.Mailboxes(s.ctx())
	if err != nil {
		return s.storeError("delete mailbox", err, imap.ResponseCodeNonExistent)
	}
	if hasChildren(mb.Name, all) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeHasChildren, Text: "Mailbox has children, delete them first"}
	}
	if err := s.account.DeleteMailbox(s.ctx(), mb.Name); err != nil {
		return s.storeError("delete mailbox", err, imap.ResponseCodeNonExistent)
	}
	if s.view != nil && s.view.Mailbox().ID == mb.ID {
		s.closeView()
	}
	s.log.Info("mailbox deleted", slog.String("mailbox", mb.Name), slog.Int64("messages", mb.Messages))
	return nil
}

// Rename is RENAME (RFC 9051 §6.3.6); renaming INBOX moves its messages.
func (s *session) Rename(from, to string, options *imap.RenameOptions) (err error) {
	defer s.begin(&err)()
	if err := s.account.RenameMailbox(s.ctx(), from, to); err != nil {
		return s.storeError("rename mailbox", err, imap.ResponseCodeNonExistent)
	}
	s.log.Info("mailbox renamed", slog.String("mailbox", from), slog.String("to", to))
	return nil
}

// Subscribe is SUBSCRIBE (RFC 9051 §6.3.7).
func (s *session) Subscribe(name string) (err error) {
	defer s.begin(&err)()
	if err := s.account.SubscribeMailbox(s.ctx(), name); err != nil {
		return s.storeError("subscribe", err, imap.ResponseCodeNonExistent)
	}
	return nil
}

// Unsubscribe is UNSUBSCRIBE (RFC 9051 §6.3.8).
func (s *session) Unsubscribe(name string) (err error) {
	defer s.begin(&err)()
	if err := s.account.UnsubscribeMailbox(s.ctx(), name); err != nil {
		return s.storeError("unsubscribe", err, imap.ResponseCodeNonExistent)
	}
	return nil
}

// List is LIST (RFC 9051 §6.3.9) with LIST-EXTENDED selection and return
// options (RFC 5258), LIST-STATUS (RFC 5819) and special uses (RFC 6154),
// and LSUB (RFC 3501 §6.3.9), which go-imap turns into LIST (SUBSCRIBED).
// Special-use attributes and \HasChildren or \HasNoChildren (RFC 3348) are
// always returned.
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) (err error) {
	defer s.begin(&err)()
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter and root (RFC 9051 §6.3.9).
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	ref = canonInbox(ref)
	for i, p := range patterns {
		patterns[i] = canonInbox(p)
	}
	match := func(name string) bool {
		return slices.ContainsFunc(patterns, func(p string) bool { return imapserver.MatchList(name, delim, ref, p) })
	}

	boxes, err := s.account.Mailboxes(s.ctx())
	if err != nil {
		return s.storeError("list", err, imap.ResponseCodeNonExistent)
	}
	subs, err := s.account.Subscriptions(s.ctx())
	if err != nil {
		return s.storeError("list", err, imap.ResponseCodeNonExistent)
	}
	subscribed := map[string]bool{}
	for _, name := range subs {
		subscribed[displayName(name)] = true
	}
	existing := map[string]*store.Mailbox{}
	for i := range boxes {
		existing[displayName(boxes[i].Name)] = &boxes[i]
	}
	names := slices.Collect(maps.Keys(existing))
	if options.SelectSubscribed {
		for name := range subscribed {
			if existing[name] == nil {
				names = append(names, name)
			}
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		// INBOX first, then by name.
		if ai, bi := a == inbox, b == inbox; ai != bi {
			if ai {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	// subscribedBelow reports whether a descendant of name is subscribed
	// but not itself listed (RECURSIVEMATCH, RFC 5258 §3.5).
	subscribedBelow := func(name string) bool {
		for other := range subscribed {
			if strings.HasPrefix(other, name+string(delim)) && !match(other) {
				return true
			}
		}
		return false
	}

	for _, name := range names {
		if !match(name) {
			continue
		}
		mb := existing[name]
		data := imap.ListData{Delim: delim, Mailbox: name}
		if options.SelectSubscribed && !subscribed[name] {
			if !options.SelectRecursiveMatch || !subscribedBelow(name) {
				continue
			}
		}
		if options.SelectRecursiveMatch && subscribedBelow(name) {
			data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
		}
		if options.SelectSpecialUse && (mb == nil || mb.SpecialUse == "") {
			continue
		}
		if mb == nil {
			data.Attrs = append(data.Attrs, imap.MailboxAttrNonExistent)
		} else {
			data.Attrs = mailboxAttrs(*mb, boxes)
		}
		if subscribed[name] && (options.ReturnSubscribed || options.SelectSubscribed) {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if options.ReturnStatus != nil && mb != nil {
			if data.Status, err = s.statusData(*mb, options.ReturnStatus); err != nil {
				return err
			}
		}
		if err := w.WriteList(&data); err != nil {
			return err
		}
	}
	return nil
}

// Status is STATUS (RFC 9051 §6.3.11), with SIZE (RFC 8438), APPENDLIMIT
// (RFC 7889) and DELETED-STORAGE (RFC 9208 §5.2).
func (s *session) Status(name string, options *imap.StatusOptions) (data *imap.StatusData, err error) {
	defer s.begin(&err)()
	mb, err := s.account.Mailbox(s.ctx(), name)
	if err != nil {
		return nil, s.storeError("status", err, imap.ResponseCodeNonExistent)
	}
	return s.statusData(mb, options)
}

// statusData fills in every item asked for: go-imap writes each one asked
// for, and dereferences nil for a missing one.
func (s *session) statusData(mb store.Mailbox, o *imap.StatusOptions) (*imap.StatusData, error) {
	u32 := func(n int64) *uint32 {
		v := uint32(n)
		return &v
	}
	d := &imap.StatusData{Mailbox: displayName(mb.Name)}
	if o.NumMessages {
		d.NumMessages = u32(mb.Messages)
	}
	if o.UIDNext {
		d.UIDNext = imap.UID(mb.UIDNext)
	}
	if o.UIDValidity {
		d.UIDValidity = mb.UIDValidity
	}
	if o.NumUnseen {
		d.NumUnseen = u32(mb.Unseen)
	}
	if o.NumDeleted {
		d.NumDeleted = u32(mb.Deleted)
	}
	if o.Size {
		d.Size = &mb.Size
	}
	if o.NumRecent {
		d.NumRecent = u32(0) // IMAP4rev2 dropped \Recent; the store keeps none.
	}
	if o.AppendLimit {
		limit := s.AppendLimit()
		d.AppendLimit = &limit
	}
	if o.DeletedStorage {
		msgs, err := s.account.Messages(s.ctx(), mb.ID, nil)
		if err != nil {
			return nil, s.storeError("status", err, imap.ResponseCodeNonExistent)
		}
		var n int64
		for _, m := range msgs {
			if m.Deleted {
				n += m.Size
			}
		}
		d.DeletedStorage = &n
	}
	return d, nil
}

// Append is APPEND (RFC 9051 §6.3.12), answered with APPENDUID (RFC 4315
// §3). A mailbox that does not exist gets NO [TRYCREATE]; one selected
// with EXAMINE NO [READ-ONLY]; a message over the quota NO [OVERQUOTA]
// (RFC 9208 §4.3), checked before the message is written.
func (s *session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (data *imap.AppendData, err error) {
	defer s.begin(&err)()
	mb, err := s.account.Mailbox(s.ctx(), mailbox)
	if err != nil {
		return nil, s.storeError("append", err, imap.ResponseCodeTryCreate)
	}
	if s.view != nil && s.readOnly && s.view.Mailbox().ID == mb.ID {
		return nil, errReadOnly
	}
	flags, keywords, err := flagsFromIMAP(options.Flags)
	if err != nil {
		return nil, err
	}
	used, limit, err := s.account.Quota(s.ctx())
	if err != nil {
		return nil, s.storeError("append", err, imap.ResponseCodeTryCreate)
	}
	if limit > 0 && used+r.Size() > limit {
		s.log.Info("append: over quota", slog.String("mailbox", mb.Name), slog.Int64("size", r.Size()), slog.Int64("used", used), slog.Int64("limit", limit))
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeOverQuota, Text: "Quota exceeded"}
	}
	d, err := s.account.Append(s.ctx(), mb.Name, r, store.DeliverOptions{Flags: flags, Keywords: keywords, Received: options.Time})
	if err != nil {
		return nil, s.storeError("append", err, imap.ResponseCodeTryCreate)
	}
	s.log.Info("message appended", slog.String("mailbox", mb.Name), slog.Uint64("uid", uint64(d.UID)), slog.Int64("size", r.Size()))
	return &imap.AppendData{UID: imap.UID(d.UID), UIDValidity: d.UIDValidity}, nil
}

// flagsFromIMAP splits flags of STORE or APPEND into system flags and
// keywords. \Recent cannot be set (RFC 3501 §2.3.2) and is ignored;
// other unknown system flags are refused.
func flagsFromIMAP(l []imap.Flag) (store.Flags, []string, error) {
	var f store.Flags
	var keywords []string
	for _, flag := range l {
		switch strings.ToLower(string(flag)) {
		case `\seen`:
			f.Seen = true
		case `\answered`:
			f.Answered = true
		case `\flagged`:
			f.Flagged = true
		case `\deleted`:
			f.Deleted = true
		case `\draft`:
			f.Draft = true
		case `\recent`:
		default:
			if strings.HasPrefix(string(flag), `\`) {
				return f, nil, badRequest("Unknown system flag %s", flag)
			}
			keywords = append(keywords, string(flag))
		}
	}
	keywords, err := store.NormalizeKeywords(keywords)
	if err != nil {
		return f, nil, badRequest("%s", clientText(err))
	}
	return f, keywords, nil
}

// flagsToIMAP lists a message's flags and keywords.
func flagsToIMAP(f store.Flags, keywords []string) []imap.Flag {
	l := make([]imap.Flag, 0, 5+len(keywords))
	for _, x := range []struct {
		set  bool
		flag imap.Flag
	}{
		{f.Seen, imap.FlagSeen},
		{f.Answered, imap.FlagAnswered},
		{f.Flagged, imap.FlagFlagged},
		{f.Deleted, imap.FlagDeleted},
		{f.Draft, imap.FlagDraft},
	} {
		if x.set {
			l = append(l, x.flag)
		}
	}
	for _, k := range keywords {
		l = append(l, imap.Flag(k))
	}
	return l
}
