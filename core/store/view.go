package store

import (
	"context"
	"fmt"
	"slices"

	"github.com/mjl-/bstore"
)

// View is one IMAP session's view of its selected mailbox: the UIDs the
// client has been told of, in order, so that message sequence numbers
// (RFC 9051 §2.3.1.2) stay what the client believes until it is told of
// changes. Changes by others wait in the view until Poll turns them into
// the untagged responses to send (RFC 9051 §7.5.1: EXPUNGE only when
// allowed); the view's own changes, made through its methods, update it at
// once and are not reported back to it. A View is for one session: not
// safe for concurrent use. Close it when the mailbox is deselected.
type View struct {
	a           *Account
	w           *Watcher
	mailbox     Mailbox
	uids        []UID   // Ascending; message sequence number n is uids[n-1].
	modseq      int64   // Of the snapshot: earlier events are in it.
	firstUnseen uint32  // At selection.
	pending     []Event // Taken from w, not yet applied.
}

// Select opens a view of the named mailbox (SELECT or EXAMINE, RFC 9051
// §6.3.2): a snapshot of its messages and counts, and a watcher for the
// changes after it. ErrNoMailbox if it does not exist. Read-only access
// (EXAMINE) is the caller's to enforce.
func (a *Account) Select(ctx context.Context, name string) (*View, error) {
	name, err := NormalizeMailboxName(name)
	if err != nil {
		return nil, err
	}
	mb, err := a.Mailbox(ctx, name)
	if err != nil {
		return nil, err
	}
	// Watch before the snapshot: a change committed after it is then
	// certainly seen, one before it is skipped by its ModSeq.
	v := &View{a: a, w: a.watch(mb.ID)}
	err = a.db.Read(ctx, func(tx *bstore.Tx) error {
		meta := accountMeta{ID: 1}
		if err := tx.Get(&meta); err != nil {
			return err
		}
		v.modseq = meta.ModSeq
		if v.mailbox, err = mailboxByID(tx, mb.ID); err != nil {
			return err
		}
		v.uids = make([]UID, 0, v.mailbox.Messages)
		return forEachEntry(tx, mb.ID, 0, 0, func(e indexEntry) {
			v.uids = append(v.uids, e.UID)
			if e.Bits&bitSeen == 0 && v.firstUnseen == 0 {
				v.firstUnseen = uint32(len(v.uids))
			}
		})
	})
	if err != nil {
		v.w.Close()
		return nil, fmt.Errorf("store: select %s in %s: %w", name, a.name, err)
	}
	return v, nil
}

// Close stops the view's watcher.
func (v *View) Close() { v.w.Close() }

// Mailbox returns the mailbox as selected, with counts, UIDNEXT and
// UIDVALIDITY for the SELECT response; its Name follows renames.
func (v *View) Mailbox() Mailbox { return v.mailbox }

// FirstUnseen returns the sequence number of the first message without
// \Seen at selection, 0 if none (the UNSEEN code of IMAP4rev1, RFC 3501
// §6.3.1).
func (v *View) FirstUnseen() uint32 { return v.firstUnseen }

// Len returns the number of messages in the view (EXISTS).
func (v *View) Len() uint32 { return uint32(len(v.uids)) }

// UIDs returns the view's UIDs, ascending: message n has UIDs()[n-1]. The
// slice is read-only and valid until the next call of Poll, Expunge or
// Move.
func (v *View) UIDs() []UID { return v.uids }

// UID returns the UID of message sequence number seq, 0 if out of range.
func (v *View) UID(seq uint32) UID {
	if seq == 0 || seq > uint32(len(v.uids)) {
		return 0
	}
	return v.uids[seq-1]
}

// Seq returns the message sequence number of uid, 0 if not in the view.
func (v *View) Seq(uid UID) uint32 {
	if i, ok := slices.BinarySearch(v.uids, uid); ok {
		return uint32(i + 1)
	}
	return 0
}

// Notify returns a channel that receives a value when changes are waiting
// for Poll: wait on it while IDLE (RFC 2177).
func (v *View) Notify() <-chan struct{} { return v.w.Notify() }

// UpdateKind says which untagged response an Update is.
type UpdateKind int

const (
	UpdateExists         UpdateKind = iota + 1 // "* Exists EXISTS".
	UpdateExpunge                              // "* Seq EXPUNGE"; later Seqs already account for it.
	UpdateFlags                                // "* Seq FETCH (UID FLAGS)".
	UpdateMailboxFlags                         // "* FLAGS": system flags and Keywords.
	UpdateMailboxDeleted                       // The mailbox was deleted; the session should deselect or end (BYE).
)

// Update is one untagged response Poll asks the session to send.
type Update struct {
	Kind     UpdateKind
	Exists   uint32 // UpdateExists: messages in the view now.
	Seq      uint32 // UpdateExpunge, UpdateFlags.
	UID      UID    // UpdateFlags.
	Flags    Flags  // UpdateFlags.
	Keywords []string
}

// Poll applies the changes others made since the last Poll to the view and
// returns the responses that tell the client, in order. Without
// allowExpunge (during FETCH, STORE and SEARCH by sequence number, RFC
// 9051 §7.5.1) it stops before the first change that would expunge a
// message of the view, keeping it and later changes for the next Poll.
func (v *View) Poll(allowExpunge bool) []Update {
	v.pending = append(v.pending, v.w.Events()...)
	var ups []Update
	i := 0
loop:
	for ; i < len(v.pending); i++ {
		e := v.pending[i]
		if e.MailboxID != v.mailbox.ID || e.ModSeq <= v.modseq {
			continue
		}
		switch e.Kind {
		case MessagesAdded:
			n := len(v.uids)
			for _, uid := range e.UIDs {
				if len(v.uids) == 0 || uid > v.uids[len(v.uids)-1] {
					v.uids = append(v.uids, uid)
				}
			}
			if len(v.uids) > n {
				ups = append(ups, Update{Kind: UpdateExists, Exists: uint32(len(v.uids))})
			}
		case MessagesExpunged:
			if e.origin == v.w {
				continue // Applied by Expunge or Move.
			}
			if !allowExpunge && slices.ContainsFunc(e.UIDs, func(uid UID) bool { return v.Seq(uid) > 0 }) {
				break loop
			}
			for _, seq := range v.remove(e.UIDs) {
				ups = append(ups, Update{Kind: UpdateExpunge, Seq: seq})
			}
		case FlagsChanged:
			if e.origin == v.w {
				continue // Returned by StoreFlags.
			}
			for _, f := range e.Flags {
				if seq := v.Seq(f.UID); seq > 0 {
					ups = append(ups, Update{Kind: UpdateFlags, Seq: seq, UID: f.UID, Flags: f.Flags, Keywords: f.Keywords})
				}
			}
		case MailboxKeywords:
			v.mailbox.Keywords = e.Keywords
			ups = append(ups, Update{Kind: UpdateMailboxFlags, Keywords: e.Keywords})
		case MailboxRenamed:
			v.mailbox.Name = e.Mailbox
		case MailboxDeleted:
			ups = append(ups, Update{Kind: UpdateMailboxDeleted})
		}
	}
	v.pending = slices.Clone(v.pending[i:])
	return ups
}

// remove takes uids (ascending) out of the view and returns the sequence
// numbers to report, in order: each as it is after the ones before.
func (v *View) remove(uids []UID) []uint32 {
	var seqs []uint32
	out := v.uids[:0]
	j := 0
	for i, uid := range v.uids {
		for j < len(uids) && uids[j] < uid {
			j++
		}
		if j < len(uids) && uids[j] == uid {
			seqs = append(seqs, uint32(i+1-len(seqs)))
			continue
		}
		out = append(out, uid)
	}
	v.uids = out
	return seqs
}

// inView returns the uids that are in the view (nil: all of the view).
func (v *View) inView(uids []UID) []UID {
	if uids == nil {
		return append([]UID{}, v.uids...) // Not nil, which would mean all messages.
	}
	l := make([]UID, 0, len(uids))
	for _, uid := range uids {
		if v.Seq(uid) > 0 {
			l = append(l, uid)
		}
	}
	slices.Sort(l)
	return slices.Compact(l)
}

// Messages returns the records of the given UIDs of the view (nil: all),
// as Account.Messages.
func (v *View) Messages(ctx context.Context, uids []UID) ([]Message, error) {
	return v.a.Messages(ctx, v.mailbox.ID, v.inView(uids))
}

// Flags returns the flags of messages of the view with the given UIDs
// (nil: all), in UID order, from the flag index: for FETCH of FLAGS and UID
// alone, without reading every message's record. Messages expunged
// meanwhile are left out. ErrNoMailbox if the mailbox was deleted.
func (v *View) Flags(ctx context.Context, uids []UID) ([]MessageFlags, error) {
	uids = v.inView(uids)
	if len(uids) == 0 {
		return nil, nil
	}
	l := make([]MessageFlags, 0, len(uids))
	err := v.a.db.Read(ctx, func(tx *bstore.Tx) error {
		var withKeywords []UID
		err := v.entries(tx, uids, func(e indexEntry) {
			l = append(l, MessageFlags{UID: e.UID, Flags: e.flags(), ModSeq: e.ModSeq})
			if e.Bits&bitKeywords != 0 {
				withKeywords = append(withKeywords, e.UID)
			}
		})
		if err != nil || len(withKeywords) == 0 {
			return err
		}
		msgs, err := messagesTx(tx, v.mailbox.ID, withKeywords)
		if err != nil {
			return err
		}
		j := 0
		for _, m := range msgs {
			for l[j].UID < m.UID {
				j++
			}
			l[j].Keywords = m.Keywords
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: flags in %s of %s: %w", v.mailbox.Name, v.a.name, err)
	}
	return l, nil
}

// entries calls fn with the flag index entry of each message with one of
// uids (sorted, not empty), in UID order. ErrNoMailbox if the mailbox was
// deleted.
func (v *View) entries(tx *bstore.Tx, uids []UID, fn func(indexEntry)) error {
	if _, err := mailboxByID(tx, v.mailbox.ID); err != nil {
		return err
	}
	i := 0
	return forEachEntry(tx, v.mailbox.ID, uids[0], uids[len(uids)-1], func(e indexEntry) {
		for i < len(uids) && uids[i] < e.UID {
			i++
		}
		if i < len(uids) && uids[i] == e.UID {
			fn(e)
		}
	})
}

// Indexed returns the messages of the view with the given UIDs (nil: all),
// in UID order, from the flag index alone, without decoding their
// records: only ID, MailboxID, UID, ModSeq, the system flags and
// HeaderSize are set, not Keywords, Size or Received. That is what a
// SEARCH of headers and system flags needs. Messages expunged meanwhile
// are left out. ErrNoMailbox if the mailbox was deleted.
func (v *View) Indexed(ctx context.Context, uids []UID) ([]Message, error) {
	uids = v.inView(uids)
	if len(uids) == 0 {
		return nil, nil
	}
	l := make([]Message, 0, len(uids))
	err := v.a.db.Read(ctx, func(tx *bstore.Tx) error {
		return v.entries(tx, uids, func(e indexEntry) {
			l = append(l, Message{ID: e.ID, MailboxID: v.mailbox.ID, UID: e.UID, ModSeq: e.ModSeq, Flags: e.flags(), HeaderSize: e.HeaderSize})
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: messages in %s of %s: %w", v.mailbox.Name, v.a.name, err)
	}
	return l, nil
}

// StoreFlags changes flags of messages of the view (nil: all), as
// Account.StoreFlags. Older changes by others to these messages, not yet
// polled, are dropped: they would undo the new flags in the client's eyes.
func (v *View) StoreFlags(ctx context.Context, uids []UID, op FlagOp, flags Flags, keywords []string) ([]MessageFlags, error) {
	res, err := v.a.storeFlags(ctx, v.w, v.mailbox.ID, v.inView(uids), op, flags, keywords)
	if err != nil {
		return nil, err
	}
	current := make(map[UID]int64, len(res))
	for _, f := range res {
		current[f.UID] = f.ModSeq
	}
	v.pending = append(v.pending, v.w.Events()...)
	for i, e := range v.pending {
		if e.Kind != FlagsChanged || e.origin == v.w || e.MailboxID != v.mailbox.ID {
			continue
		}
		e.Flags = slices.DeleteFunc(slices.Clone(e.Flags), func(f MessageFlags) bool {
			m, ok := current[f.UID]
			return ok && f.ModSeq <= m
		})
		v.pending[i] = e
	}
	return res, nil
}

// Expunge expunges the messages of the view with \Deleted, only those
// with the given UIDs unless uids is nil (EXPUNGE, UID EXPUNGE). It returns
// the sequence numbers to report with EXPUNGE responses, in order.
// Messages added since the client was told are not touched.
func (v *View) Expunge(ctx context.Context, uids []UID) ([]uint32, error) {
	expunged, err := v.a.expunge(ctx, v.w, v.mailbox.ID, v.inView(uids))
	if err != nil {
		return nil, err
	}
	return v.remove(expunged), nil
}

// Copy copies messages of the view to the named mailbox, as Account.Copy.
func (v *View) Copy(ctx context.Context, uids []UID, dest string) (Copied, error) {
	return v.a.copyMove(ctx, v.w, v.mailbox.ID, v.inView(uids), dest, false)
}

// Move moves messages of the view to the named mailbox, as Account.Move,
// and returns the sequence numbers to report expunged, in order (RFC 6851
// §3.3).
func (v *View) Move(ctx context.Context, uids []UID, dest string) (Copied, []uint32, error) {
	res, err := v.a.copyMove(ctx, v.w, v.mailbox.ID, v.inView(uids), dest, true)
	if err != nil {
		return Copied{}, nil, err
	}
	return res, v.remove(res.Source), nil
}
