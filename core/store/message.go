package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mjl-/bstore"
)

// UID is a message's unique identifier in its mailbox (RFC 9051 §2.3.1.1):
// assigned in strictly ascending order, never reused while the mailbox's
// UIDVALIDITY stays.
type UID uint32

// Flags are the system flags of a message (RFC 9051 §2.3.2). \Recent is
// not kept: IMAP4rev2 dropped it.
type Flags struct {
	Seen     bool
	Answered bool
	Flagged  bool
	Deleted  bool
	Draft    bool
}

// Message is a message's record. Its bytes are in a file of their own,
// named by ID; Copy makes a hard link, so copies share the disk space.
type Message struct {
	ID        int64
	MailboxID int64 `bstore:"nonzero,ref Mailbox,unique MailboxID+UID"`
	UID       UID   `bstore:"nonzero"`
	// ModSeq is the account's ModSeq when the message was added or its
	// flags last changed (RFC 7162 §3.1.1).
	ModSeq int64 `bstore:"nonzero"`
	Flags
	Keywords []string  // Lower case, sorted (RFC 9051 §2.3.2).
	Received time.Time `bstore:"nonzero"` // INTERNALDATE (RFC 9051 §2.3.3).
	Size     int64     // RFC822.SIZE: the exact byte count.
	// HeaderSize is the length of the header section, including the empty
	// line that ends it (BODY[HEADER], RFC 9051 §6.4.5); Size if the
	// message has no body.
	HeaderSize int64
}

// MessageFlags are a message's flags after a change.
type MessageFlags struct {
	UID      UID
	Flags    Flags
	Keywords []string
	ModSeq   int64
}

func (m Message) flags() MessageFlags {
	return MessageFlags{UID: m.UID, Flags: m.Flags, Keywords: m.Keywords, ModSeq: m.ModSeq}
}

// FlagOp says how StoreFlags combines flags with a message's (RFC 9051
// §6.4.6).
type FlagOp int

const (
	FlagsSet    FlagOp = iota + 1 // FLAGS: replace.
	FlagsAdd                      // +FLAGS: add.
	FlagsRemove                   // -FLAGS: remove.
)

// maxKeywordLen bounds a keyword's length.
const maxKeywordLen = 200

// NormalizeKeywords returns keywords lower-cased, sorted and without
// duplicates, or ErrBadName if one is not an IMAP atom (RFC 9051 §9:
// flag-keyword) or starts with a backslash (system flags are Flags).
func NormalizeKeywords(keywords []string) ([]string, error) {
	if len(keywords) == 0 {
		return nil, nil
	}
	l := make([]string, 0, len(keywords))
	for _, k := range keywords {
		if k == "" || len(k) > maxKeywordLen || strings.ContainsFunc(k, func(r rune) bool {
			return r <= ' ' || r >= 0x7f || strings.ContainsRune(`(){%*"\]`, r)
		}) {
			return nil, fmt.Errorf("%w: keyword %q", ErrBadName, k)
		}
		l = append(l, strings.ToLower(k))
	}
	slices.Sort(l)
	return slices.Compact(l), nil
}

// mergeKeywords returns the sorted union of two sorted keyword lists.
func mergeKeywords(a, b []string) []string {
	if len(b) == 0 {
		return a
	}
	l := append(slices.Clone(a), b...)
	slices.Sort(l)
	return slices.Compact(l)
}

// Incoming is a message written once to disk, ready for delivery to any
// number of accounts: each Deliver hard-links the one file, so delivering
// to N accounts writes and syncs the bytes once. It is safe for concurrent
// use. Close removes it; files of a crashed process are removed at Open.
type Incoming struct {
	path       string
	size       int64
	headerSize int64
}

// NewIncoming writes r to a file in the store and syncs it: the part of
// delivery that does not depend on the account, done outside any lock.
func (s *Store) NewIncoming(r io.Reader) (*Incoming, error) {
	return s.mail.newIncoming(r)
}

func (m *mail) newIncoming(r io.Reader) (*Incoming, error) {
	f, err := os.CreateTemp(m.incoming, "in-*")
	if err != nil {
		return nil, fmt.Errorf("store: create incoming file: %w", err)
	}
	in := &Incoming{path: f.Name()}
	hs := &headerScan{}
	in.size, err = io.CopyBuffer(io.MultiWriter(f, hs), r, make([]byte, 64<<10))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(in.path)
		return nil, fmt.Errorf("store: write incoming file: %w", err)
	}
	in.headerSize = hs.size()
	return in, nil
}

// Size returns the message's size in bytes.
func (in *Incoming) Size() int64 { return in.size }

// Close removes the file; messages delivered from it keep their links.
func (in *Incoming) Close() error {
	if err := os.Remove(in.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: remove incoming file: %w", err)
	}
	return nil
}

// headerScan finds the end of the header section (RFC 5322 §2.1): the
// first empty line, ended by LF or CRLF.
type headerScan struct {
	n       int64 // Bytes seen.
	lineLen int   // Bytes on the current line, but CR.
	end     int64 // Offset after the empty line; 0 until found.
}

func (h *headerScan) Write(p []byte) (int, error) {
	if h.end == 0 {
	scan:
		for i, b := range p {
			switch b {
			case '\n':
				if h.lineLen == 0 {
					h.end = h.n + int64(i) + 1
					break scan
				}
				h.lineLen = 0
			case '\r':
			default:
				h.lineLen++
			}
		}
	}
	h.n += int64(len(p))
	return len(p), nil
}

func (h *headerScan) size() int64 {
	if h.end == 0 {
		return h.n
	}
	return h.end
}

// DeliverOptions are a new message's initial state.
type DeliverOptions struct {
	Flags    Flags
	Keywords []string  // Normalized by NormalizeKeywords.
	Received time.Time // INTERNALDATE; zero: now.
	// Key, if set, names the delivery: a second delivery with the same key
	// within DeliveryKeyTTL adds nothing and returns the first one's
	// result. The queue sets it, so that a delivery it makes again after a
	// crash between the mailbox's commit and its own leaves one copy.
	Key string
}

// DeliveryKeyTTL is how long a DeliverOptions.Key is kept: longer than a
// message stays in the queue.
const DeliveryKeyTTL = 30 * 24 * time.Hour

// deliveryKey records a delivery made with DeliverOptions.Key.
type deliveryKey struct {
	Key         string
	Delivered   time.Time `bstore:"index"`
	MailboxID   int64
	UIDValidity uint32
	UID         UID
}

// Delivered identifies a message added to a mailbox, e.g. for APPENDUID
// (RFC 4315 §3).
type Delivered struct {
	MailboxID   int64
	UIDValidity uint32
	UID         UID
}

// Copied maps the UIDs of copied or moved messages to their new UIDs, for
// COPYUID (RFC 4315 §3): Source[i] became Dest[i]; both ascending.
type Copied struct {
	MailboxID   int64 // The destination mailbox.
	UIDValidity uint32
	Source      []UID
	Dest        []UID
}

// Deliver adds the message in to the named mailbox: the file is linked
// into the account and the directory synced, then the record committed.
// Once it returns nil the message survives a crash, and a 250 may be sent.
// It fails with ErrNoMailbox or ErrQuota (nothing stored). Watchers get a
// MessagesAdded event.
func (a *Account) Deliver(ctx context.Context, mailbox string, in *Incoming, opts DeliverOptions) (Delivered, error) {
	name, err := NormalizeMailboxName(mailbox)
	if err != nil {
		return Delivered{}, err
	}
	keywords, err := NormalizeKeywords(opts.Keywords)
	if err != nil {
		return Delivered{}, err
	}
	received := opts.Received
	if received.IsZero() {
		received = time.Now()
	}
	var d Delivered
	err = a.write(ctx, nil, func(c *change) error {
		if opts.Key != "" {
			k := deliveryKey{Key: opts.Key}
			switch err := c.tx.Get(&k); {
			case err == nil && time.Since(k.Delivered) < DeliveryKeyTTL:
				d = Delivered{MailboxID: k.MailboxID, UIDValidity: k.UIDValidity, UID: k.UID}
				return nil // Delivered already.
			case err == nil:
				if err := c.tx.Delete(&k); err != nil {
					return err
				}
			case err != bstore.ErrAbsent:
				return err
			}
		}
		mb, err := mailboxByName(c.tx, name)
		if err != nil {
			return err
		}
		if err := a.checkQuota(c.tx, in.size); err != nil {
			return err
		}
		m := Message{
			MailboxID:  mb.ID,
			UID:        mb.UIDNext,
			ModSeq:     c.modseq,
			Flags:      opts.Flags,
			Keywords:   keywords,
			Received:   received.Round(0),
			Size:       in.size,
			HeaderSize: in.headerSize,
		}
		if err := c.tx.Insert(&m); err != nil {
			return err
		}
		if err := indexAdd(c.tx, mb.ID, []indexEntry{m.entry()}); err != nil {
			return err
		}
		if err := c.link(in.path, a.msgPath(m.ID)); err != nil {
			return err
		}
		a.added(c, &mb, m)
		if err := c.tx.Update(&mb); err != nil {
			return err
		}
		c.emit(Event{Kind: MessagesAdded, MailboxID: mb.ID, Mailbox: mb.Name, UIDs: []UID{m.UID}})
		d = Delivered{MailboxID: mb.ID, UIDValidity: mb.UIDValidity, UID: m.UID}
		if opts.Key != "" {
			return keepKey(c.tx, deliveryKey{Key: opts.Key, Delivered: time.Now().Round(0), MailboxID: mb.ID, UIDValidity: mb.UIDValidity, UID: m.UID})
		}
		return nil
	})
	if err != nil {
		return Delivered{}, fmt.Errorf("store: deliver to %s/%s: %w", a.name, name, err)
	}
	return d, nil
}

// keepKey stores k and removes a few keys past DeliveryKeyTTL, so that
// the keys kept stay about as many as the deliveries of the last TTL.
func keepKey(tx *bstore.Tx, k deliveryKey) error {
	if err := tx.Insert(&k); err != nil {
		return err
	}
	_, err := bstore.QueryTx[deliveryKey](tx).FilterLess("Delivered", time.Now().Add(-DeliveryKeyTTL)).Limit(4).Delete()
	return err
}

// added accounts for m, just added to mb, in mb, and announces keywords
// new to mb.
func (a *Account) added(c *change, mb *Mailbox, m Message) {
	mb.UIDNext = max(mb.UIDNext, m.UID+1)
	mb.Counts.add(m, 1)
	mb.HighestModSeq = c.modseq
	a.defineKeywords(c, mb, m.Keywords)
}

// defineKeywords adds keywords to mb's, announcing a change.
func (a *Account) defineKeywords(c *change, mb *Mailbox, keywords []string) {
	if kw := mergeKeywords(mb.Keywords, keywords); len(kw) != len(mb.Keywords) {
		mb.Keywords = kw
		c.emit(Event{Kind: MailboxKeywords, MailboxID: mb.ID, Mailbox: mb.Name, Keywords: kw})
	}
}

// Append writes r as a new message to the named mailbox (IMAP APPEND, RFC
// 9051 §6.3.12), as Deliver.
func (a *Account) Append(ctx context.Context, mailbox string, r io.Reader, opts DeliverOptions) (Delivered, error) {
	in, err := a.mail.newIncoming(r)
	if err != nil {
		return Delivered{}, err
	}
	defer in.Close()
	return a.Deliver(ctx, mailbox, in, opts)
}

// messagesTx returns mailbox id's messages with the given UIDs (nil: all),
// by UID; UIDs without a message are skipped.
func messagesTx(tx *bstore.Tx, mailboxID int64, uids []UID) ([]Message, error) {
	q := bstore.QueryTx[Message](tx).FilterNonzero(Message{MailboxID: mailboxID}).SortAsc("UID")
	if uids != nil {
		if len(uids) == 0 {
			return nil, nil
		}
		if !slices.IsSorted(uids) {
			uids = slices.Sorted(slices.Values(uids))
		}
		q.FilterGreaterEqual("UID", uids[0]).FilterLessEqual("UID", uids[len(uids)-1])
		q.FilterFn(func(m Message) bool {
			_, ok := slices.BinarySearch(uids, m.UID)
			return ok
		})
	}
	return q.List()
}

// Messages returns the messages of a mailbox with the given UIDs (nil: all
// of them), in UID order; UIDs of no message (expunged meanwhile) are
// skipped. ErrNoMailbox if the mailbox was deleted.
func (a *Account) Messages(ctx context.Context, mailboxID int64, uids []UID) ([]Message, error) {
	var l []Message
	err := a.db.Read(ctx, func(tx *bstore.Tx) error {
		if _, err := mailboxByID(tx, mailboxID); err != nil {
			return err
		}
		var err error
		l, err = messagesTx(tx, mailboxID, uids)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: messages of %s: %w", a.name, err)
	}
	return l, nil
}

// Content is an open message: its exact bytes, readable at any offset by
// concurrent readers (io.ReaderAt), also as a stream (Read, Seek).
type Content struct {
	*io.SectionReader
	// HeaderSize is the length of the header section with its ending
	// empty line: bytes [0, HeaderSize) are BODY[HEADER], the rest
	// BODY[TEXT] (RFC 9051 §6.4.5).
	HeaderSize int64
	f          *os.File
}

// OpenMessage opens m's bytes; the caller must Close them. A message
// expunged since m was read may be gone: ErrNotFound. Once open, the bytes
// stay readable even if the message is expunged meanwhile.
func (a *Account) OpenMessage(m Message) (*Content, error) {
	f, err := os.Open(a.msgPath(m.ID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: message %d of %s (expunged)", ErrNotFound, m.ID, a.name)
	} else if err != nil {
		return nil, fmt.Errorf("store: open message: %w", err)
	}
	return &Content{SectionReader: io.NewSectionReader(f, 0, m.Size), HeaderSize: m.HeaderSize, f: f}, nil
}

// ReadHeader returns m's header section with the empty line ending it
// (BODY[HEADER]), read with as few system calls as can be: for matching
// the headers of many messages (SEARCH). ErrNotFound if m was expunged.
func (a *Account) ReadHeader(m Message) ([]byte, error) {
	path := a.msgPath(m.ID)
	fd, err := retryEINTR(func() (int, error) { return syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0) })
	if err == syscall.ENOENT {
		return nil, fmt.Errorf("%w: message %d of %s (expunged)", ErrNotFound, m.ID, a.name)
	} else if err != nil {
		return nil, fmt.Errorf("store: open message: %w", err)
	}
	defer syscall.Close(fd)
	b := make([]byte, m.HeaderSize)
	for off := 0; off < len(b); {
		n, err := retryEINTR(func() (int, error) { return syscall.Pread(fd, b[off:], int64(off)) })
		if err != nil {
			return nil, fmt.Errorf("store: read header: %w", err)
		} else if n == 0 {
			return nil, fmt.Errorf("store: read header: %w", io.ErrUnexpectedEOF)
		}
		off += n
	}
	return b, nil
}

// retryEINTR calls fn until it fails with other than EINTR.
func retryEINTR(fn func() (int, error)) (int, error) {
	for {
		n, err := fn()
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// Header returns the header section, with the empty line ending it.
func (c *Content) Header() ([]byte, error) {
	b := make([]byte, c.HeaderSize)
	if _, err := c.ReadAt(b, 0); err != nil && len(b) > 0 {
		return nil, fmt.Errorf("store: read header: %w", err)
	}
	return b, nil
}

// Close closes the file.
func (c *Content) Close() error { return c.f.Close() }

// Copy copies messages of a mailbox with the given UIDs (nil: all) to the
// named one (RFC 9051 §6.4.7), as hard links with the same flags and
// internal date; quota counts each copy. UIDs of no message are skipped.
// ErrNoMailbox if either mailbox does not exist, ErrQuota if the copies
// do not fit.
func (a *Account) Copy(ctx context.Context, mailboxID int64, uids []UID, dest string) (Copied, error) {
	return a.copyMove(ctx, nil, mailboxID, uids, dest, false)
}

// Move moves messages of a mailbox with the given UIDs (nil: all) to the
// named one (RFC 6851): they get new UIDs there and are expunged from the
// source; no bytes are copied. UIDs of no message are skipped. Watchers get MessagesExpunged for the
// source, then MessagesAdded for the destination.
func (a *Account) Move(ctx context.Context, mailboxID int64, uids []UID, dest string) (Copied, error) {
	return a.copyMove(ctx, nil, mailboxID, uids, dest, true)
}

func (a *Account) copyMove(ctx context.Context, origin *Watcher, mailboxID int64, uids []UID, dest string, move bool) (Copied, error) {
	op := "copy"
	if move {
		op = "move"
	}
	dest, err := NormalizeMailboxName(dest)
	if err != nil {
		return Copied{}, err
	}
	var res Copied
	err = a.write(ctx, origin, func(c *change) error {
		src, err := mailboxByID(c.tx, mailboxID)
		if err != nil {
			return err
		}
		dst, err := mailboxByName(c.tx, dest)
		if err != nil {
			return err
		}
		msgs, err := messagesTx(c.tx, mailboxID, uids)
		if err != nil || len(msgs) == 0 {
			res = Copied{MailboxID: dst.ID, UIDValidity: dst.UIDValidity}
			return err
		}
		if move {
			res, err = a.moveTx(c, src, msgs, dst)
		} else {
			res, err = a.copyTx(c, msgs, dst)
		}
		return err
	})
	if err != nil {
		return Copied{}, fmt.Errorf("store: %s to %s/%s: %w", op, a.name, dest, err)
	}
	return res, nil
}

func (a *Account) copyTx(c *change, msgs []Message, dst Mailbox) (Copied, error) {
	var size int64
	for _, m := range msgs {
		size += m.Size
	}
	if err := a.checkQuota(c.tx, size); err != nil {
		return Copied{}, err
	}
	res := Copied{MailboxID: dst.ID, UIDValidity: dst.UIDValidity}
	entries := make([]indexEntry, 0, len(msgs))
	for _, m := range msgs {
		n := m
		n.ID = 0
		n.MailboxID = dst.ID
		n.UID = dst.UIDNext
		n.ModSeq = c.modseq
		if err := c.tx.Insert(&n); err != nil {
			return Copied{}, err
		}
		if err := c.link(a.msgPath(m.ID), a.msgPath(n.ID)); err != nil {
			return Copied{}, err
		}
		a.added(c, &dst, n)
		entries = append(entries, n.entry())
		res.Source = append(res.Source, m.UID)
		res.Dest = append(res.Dest, n.UID)
	}
	if err := indexAdd(c.tx, dst.ID, entries); err != nil {
		return Copied{}, err
	}
	if err := c.tx.Update(&dst); err != nil {
		return Copied{}, err
	}
	c.emit(Event{Kind: MessagesAdded, MailboxID: dst.ID, Mailbox: dst.Name, UIDs: res.Dest})
	return res, nil
}

// moveTx moves msgs from src to dst by updating their records in place.
func (a *Account) moveTx(c *change, src Mailbox, msgs []Message, dst Mailbox) (Copied, error) {
	srcp, dstp := &src, &dst
	if src.ID == dst.ID {
		dstp = srcp
	}
	res := Copied{MailboxID: dst.ID, UIDValidity: dst.UIDValidity}
	entries := make([]indexEntry, 0, len(msgs))
	for _, m := range msgs {
		srcp.Counts.add(m, -1)
		res.Source = append(res.Source, m.UID)
		m.MailboxID = dstp.ID
		m.UID = dstp.UIDNext
		m.ModSeq = c.modseq
		if err := c.tx.Update(&m); err != nil {
			return Copied{}, err
		}
		a.added(c, dstp, m)
		entries = append(entries, m.entry())
		res.Dest = append(res.Dest, m.UID)
	}
	if err := indexRemove(c.tx, src.ID, res.Source); err != nil {
		return Copied{}, err
	}
	if err := indexAdd(c.tx, dst.ID, entries); err != nil {
		return Copied{}, err
	}
	srcp.HighestModSeq = c.modseq
	if err := c.tx.Update(srcp); err != nil {
		return Copied{}, err
	}
	if dstp != srcp {
		if err := c.tx.Update(dstp); err != nil {
			return Copied{}, err
		}
	}
	c.emit(Event{Kind: MessagesExpunged, MailboxID: src.ID, Mailbox: src.Name, UIDs: res.Source})
	c.emit(Event{Kind: MessagesAdded, MailboxID: dst.ID, Mailbox: dst.Name, UIDs: res.Dest})
	return res, nil
}

// Expunge removes the messages of a mailbox that have \Deleted (RFC 9051
// §6.4.3), only those with the given UIDs unless uids is nil (UID EXPUNGE,
// RFC 4315 §2.1). It returns the UIDs expunged, ascending. Their files are
// removed after the commit.
func (a *Account) Expunge(ctx context.Context, mailboxID int64, uids []UID) ([]UID, error) {
	return a.expunge(ctx, nil, mailboxID, uids)
}

func (a *Account) expunge(ctx context.Context, origin *Watcher, mailboxID int64, uids []UID) ([]UID, error) {
	var expunged []UID
	err := a.write(ctx, origin, func(c *change) error {
		expunged = nil
		mb, err := mailboxByID(c.tx, mailboxID)
		if err != nil {
			return err
		}
		msgs, err := messagesTx(c.tx, mailboxID, uids)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if !m.Deleted {
				continue
			}
			if err := c.tx.Delete(&m); err != nil {
				return err
			}
			mb.Counts.add(m, -1)
			expunged = append(expunged, m.UID)
			c.remove = append(c.remove, a.msgPath(m.ID))
		}
		if len(expunged) == 0 {
			return nil
		}
		if err := indexRemove(c.tx, mb.ID, expunged); err != nil {
			return err
		}
		mb.HighestModSeq = c.modseq
		if err := c.tx.Update(&mb); err != nil {
			return err
		}
		c.emit(Event{Kind: MessagesExpunged, MailboxID: mb.ID, Mailbox: mb.Name, UIDs: expunged})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: expunge in %s: %w", a.name, err)
	}
	return expunged, nil
}

// StoreFlags changes the flags and keywords of messages of a mailbox with
// the given UIDs (nil: all) (RFC 9051 §6.4.6) and returns the flags of all
// of them afterwards, by UID.
// UIDs of no message are skipped. Messages whose flags change get a new
// ModSeq; watchers get one FlagsChanged event with those.
func (a *Account) StoreFlags(ctx context.Context, mailboxID int64, uids []UID, op FlagOp, flags Flags, keywords []string) ([]MessageFlags, error) {
	return a.storeFlags(ctx, nil, mailboxID, uids, op, flags, keywords)
}

func (a *Account) storeFlags(ctx context.Context, origin *Watcher, mailboxID int64, uids []UID, op FlagOp, flags Flags, keywords []string) ([]MessageFlags, error) {
	if op < FlagsSet || op > FlagsRemove {
		return nil, fmt.Errorf("store: invalid flag operation %d", op)
	}
	keywords, err := NormalizeKeywords(keywords)
	if err != nil {
		return nil, err
	}
	var res []MessageFlags
	err = a.write(ctx, origin, func(c *change) error {
		res = nil
		mb, err := mailboxByID(c.tx, mailboxID)
		if err != nil {
			return err
		}
		msgs, err := messagesTx(c.tx, mailboxID, uids)
		if err != nil {
			return err
		}
		var changed []MessageFlags
		var entries []indexEntry
		for _, m := range msgs {
			nf, nk := applyFlags(m.Flags, m.Keywords, op, flags, keywords)
			if nf != m.Flags || !slices.Equal(nk, m.Keywords) {
				mb.Counts.add(m, -1)
				m.Flags, m.Keywords, m.ModSeq = nf, nk, c.modseq
				mb.Counts.add(m, 1)
				if err := c.tx.Update(&m); err != nil {
					return err
				}
				changed = append(changed, m.flags())
				entries = append(entries, m.entry())
			}
			res = append(res, m.flags())
		}
		if len(changed) == 0 {
			return nil
		}
		if err := indexUpdate(c.tx, mb.ID, entries); err != nil {
			return err
		}
		mb.HighestModSeq = c.modseq
		if op != FlagsRemove {
			a.defineKeywords(c, &mb, keywords)
		}
		if err := c.tx.Update(&mb); err != nil {
			return err
		}
		c.emit(Event{Kind: FlagsChanged, MailboxID: mb.ID, Mailbox: mb.Name, Flags: changed})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: store flags in %s: %w", a.name, err)
	}
	return res, nil
}

// applyFlags returns flags and keywords after op with f and kw.
func applyFlags(flags Flags, keywords []string, op FlagOp, f Flags, kw []string) (Flags, []string) {
	switch op {
	case FlagsSet:
		return f, kw
	case FlagsAdd:
		flags.Seen = flags.Seen || f.Seen
		flags.Answered = flags.Answered || f.Answered
		flags.Flagged = flags.Flagged || f.Flagged
		flags.Deleted = flags.Deleted || f.Deleted
		flags.Draft = flags.Draft || f.Draft
		return flags, mergeKeywords(keywords, kw)
	default:
		flags.Seen = flags.Seen && !f.Seen
		flags.Answered = flags.Answered && !f.Answered
		flags.Flagged = flags.Flagged && !f.Flagged
		flags.Deleted = flags.Deleted && !f.Deleted
		flags.Draft = flags.Draft && !f.Draft
		var l []string
		for _, k := range keywords {
			if !slices.Contains(kw, k) {
				l = append(l, k)
			}
		}
		return flags, l
	}
}
