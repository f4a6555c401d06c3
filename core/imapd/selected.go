package imapd

import (
	"fmt"
	"log/slog"
	"net"
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/switchyard-mta/switchyard/core/store"
)

// resolve returns the UIDs of the selected mailbox's messages in a
// sequence set or UID set, ascending, or "$", the saved search result
// (RFC 5182). "*" is the last message (RFC 9051 §9, seq-number). A
// sequence number beyond the last message, including "*" in an empty
// mailbox, is a client error (RFC 9051 §9, note on seq-number); UIDs of no
// message are ignored. The result is never nil: for the store, nil means
// all messages.
func (s *session) resolve(numSet imap.NumSet) ([]store.UID, error) {
	v := s.view
	uids := []store.UID{}
	if imap.IsSearchRes(numSet) {
		for _, uid := range s.searchRes {
			if v.Seq(uid) > 0 {
				uids = append(uids, uid)
			}
		}
		return uids, nil
	}
	switch set := numSet.(type) {
	case imap.SeqSet:
		n := v.Len()
		for _, r := range set {
			lo, hi := star(r.Start, n), star(r.Stop, n)
			if lo > hi {
				lo, hi = hi, lo
			}
			if lo == 0 || hi > n {
				return nil, badRequest("Message sequence number out of range: the mailbox has %d messages", n)
			}
			for seq := lo; seq <= hi; seq++ {
				uids = append(uids, v.UID(seq))
			}
		}
	case imap.UIDSet:
		all := v.UIDs()
		last := uint32(0)
		if len(all) > 0 {
			last = uint32(all[len(all)-1])
		}
		for _, r := range set {
			lo, hi := star(uint32(r.Start), last), star(uint32(r.Stop), last)
			if lo > hi {
				lo, hi = hi, lo
			}
			i, _ := slices.BinarySearch(all, store.UID(lo))
			for ; i < len(all) && uint32(all[i]) <= hi; i++ {
				uids = append(uids, all[i])
			}
		}
	default:
		return nil, fmt.Errorf("imapd: unknown number set %T", numSet)
	}
	slices.Sort(uids)
	return slices.Compact(uids), nil
}

// star returns n for "*" (0 in go-imap's sets), else num.
func star(num, n uint32) uint32 {
	if num == 0 {
		return n
	}
	return num
}

func uidsToIMAP(l []store.UID) imap.UIDSet {
	var set imap.UIDSet
	for _, uid := range l {
		set.AddNum(imap.UID(uid))
	}
	return set
}

// Store is STORE (RFC 9051 §6.4.6): the new flags of each message are
// sent with its UID, unless .SILENT.
func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) (err error) {
	defer s.begin(&err)()
	v := s.view
	if v == nil {
		return errNoMailbox
	}
	if s.readOnly {
		return errReadOnly
	}
	uids, err := s.resolve(numSet)
	if err != nil {
		return err
	}
	f, keywords, err := flagsFromIMAP(flags.Flags)
	if err != nil {
		return err
	}
	if len(uids) == 0 {
		return nil
	}
	op := store.FlagsSet
	switch flags.Op {
	case imap.StoreFlagsAdd:
		op = store.FlagsAdd
	case imap.StoreFlagsDel:
		op = store.FlagsRemove
	}
	res, err := v.StoreFlags(s.ctx(), uids, op, f, keywords)
	if err != nil {
		return s.storeError("store", err, imap.ResponseCodeNonExistent)
	}
	if flags.Silent {
		return nil
	}
	for _, mf := range res {
		seq := v.Seq(mf.UID)
		if seq == 0 {
			continue
		}
		rw := w.CreateMessage(seq)
		rw.WriteUID(imap.UID(mf.UID))
		rw.WriteFlags(flagsToIMAP(mf.Flags, mf.Keywords))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// Copy is COPY (RFC 9051 §6.4.7), answered with COPYUID (RFC 4315 §3).
func (s *session) Copy(numSet imap.NumSet, dest string) (data *imap.CopyData, err error) {
	defer s.begin(&err)()
	v := s.view
	if v == nil {
		return nil, errNoMailbox
	}
	uids, err := s.resolve(numSet)
	if err != nil {
		return nil, err
	}
	mb, err := s.account.Mailbox(s.ctx(), dest)
	if err != nil {
		return nil, s.storeError("copy", err, imap.ResponseCodeTryCreate)
	}
	if s.readOnly && mb.ID == v.Mailbox().ID {
		return nil, errReadOnly
	}
	if len(uids) == 0 {
		return nil, nil
	}
	res, err := v.Copy(s.ctx(), uids, mb.Name)
	if err != nil {
		return nil, s.storeError("copy", err, imap.ResponseCodeTryCreate)
	}
	if len(res.Source) == 0 {
		return nil, nil // Expunged meanwhile; COPYUID cannot be empty.
	}
	s.log.Debug("messages copied", slog.String("mailbox", v.Mailbox().Name), slog.String("to", mb.Name), slog.Int("count", len(res.Source)))
	return &imap.CopyData{UIDValidity: res.UIDValidity, SourceUIDs: uidsToIMAP(res.Source), DestUIDs: uidsToIMAP(res.Dest)}, nil
}

// Move is MOVE (RFC 6851): COPYUID in an untagged OK, then the EXPUNGE
// responses (RFC 6851 §4.3). It changes the selected mailbox, so EXAMINE
// refuses it.
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) (err error) {
	defer s.begin(&err)()
	v := s.view
	if v == nil {
		return errNoMailbox
	}
	if s.readOnly {
		return errReadOnly
	}
	uids, err := s.resolve(numSet)
	if err != nil {
		return err
	}
	mb, err := s.account.Mailbox(s.ctx(), dest)
	if err != nil {
		return s.storeError("move", err, imap.ResponseCodeTryCreate)
	}
	if len(uids) == 0 {
		return nil
	}
	res, seqs, err := v.Move(s.ctx(), uids, mb.Name)
	if err != nil {
		return s.storeError("move", err, imap.ResponseCodeTryCreate)
	}
	if len(res.Source) > 0 {
		err := w.WriteCopyData(&imap.CopyData{UIDValidity: res.UIDValidity, SourceUIDs: uidsToIMAP(res.Source), DestUIDs: uidsToIMAP(res.Dest)})
		if err != nil {
			return err
		}
	}
	for _, seq := range seqs {
		if err := w.WriteExpunge(seq); err != nil {
			return err
		}
	}
	s.log.Debug("messages moved", slog.String("mailbox", v.Mailbox().Name), slog.String("to", mb.Name), slog.Int("count", len(res.Source)))
	return nil
}

// Expunge is EXPUNGE (RFC 9051 §6.4.3), UID EXPUNGE (RFC 4315 §2.1) and
// the expunge of CLOSE (RFC 9051 §6.4.1), which go-imap calls with a zero
// ExpungeWriter that writes nothing. EXAMINE refuses EXPUNGE, but CLOSE
// then just deselects: "no messages are removed, and no error is given".
func (s *session) Expunge(w *imapserver.ExpungeWriter, uidSet *imap.UIDSet) (err error) {
	defer s.begin(&err)()
	closing := *w == imapserver.ExpungeWriter{}
	v := s.view
	switch {
	case v == nil && closing:
		return nil
	case v == nil:
		return errNoMailbox
	case s.readOnly && closing:
		return nil
	case s.readOnly:
		return errReadOnly
	}
	var uids []store.UID // Nil: all.
	if uidSet != nil {
		if uids, err = s.resolve(*uidSet); err != nil {
			return err
		}
		if len(uids) == 0 {
			return nil
		}
	}
	seqs, err := v.Expunge(s.ctx(), uids)
	if err != nil {
		return s.storeError("expunge", err, imap.ResponseCodeNonExistent)
	}
	for _, seq := range seqs {
		if err := w.WriteExpunge(seq); err != nil {
			return err
		}
	}
	if len(seqs) > 0 {
		s.log.Debug("messages expunged", slog.String("mailbox", v.Mailbox().Name), slog.Int("count", len(seqs)))
	}
	return nil
}

// errGone ends a session whose selected mailbox was deleted; it wraps
// net.ErrClosed so that go-imap does not log it again.
var errGone = fmt.Errorf("imapd: selected mailbox deleted: %w", net.ErrClosed)

// Poll sends what changed in the selected mailbox since the client was
// last told (RFC 9051 §7.5.1): go-imap calls it after each command, with
// allowExpunge false after FETCH, STORE and SEARCH (not their UID forms).
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) (err error) {
	defer s.begin(&err)()
	return s.poll(w, allowExpunge)
}

func (s *session) poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.view == nil {
		return nil
	}
	for _, u := range s.view.Poll(allowExpunge) {
		var err error
		switch u.Kind {
		case store.UpdateExists:
			err = w.WriteNumMessages(u.Exists)
		case store.UpdateExpunge:
			err = w.WriteExpunge(u.Seq)
		case store.UpdateFlags:
			err = w.WriteMessageFlags(u.Seq, imap.UID(u.UID), flagsToIMAP(u.Flags, u.Keywords))
		case store.UpdateMailboxFlags:
			err = w.WriteMailboxFlags(mailboxFlags(u.Keywords))
		case store.UpdateMailboxDeleted:
			// go-imap cannot leave the selected state on its own; like
			// Dovecot, end the session.
			s.log.Info("selected mailbox deleted elsewhere, disconnecting", slog.String("mailbox", s.view.Mailbox().Name))
			s.closeView()
			s.ic.Bye("Selected mailbox was deleted, have to disconnect")
			return errGone
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Idle is IDLE (RFC 2177, RFC 9051 §6.3.13): changes to the selected
// mailbox are sent as they are committed, until DONE.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) (err error) {
	defer s.begin(&err)()
	for {
		if err := s.poll(w, true); err != nil {
			return err
		}
		var notify <-chan struct{} // Nil without a selected mailbox: wait for DONE.
		if s.view != nil {
			notify = s.view.Notify()
		}
		select {
		case <-stop:
			return nil
		case <-s.ctx().Done():
			return nil
		case <-notify:
		}
	}
}
