package store

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sort"

	"github.com/mjl-/bstore"
)

// The flag index keeps, per mailbox, each message's UID, system flags,
// ModSeq, record ID and header size in blocks of up to blockLen messages, ascending by UID: what
// SELECT, FETCH FLAGS and a SEARCH of headers need, read from a few
// records instead of one per message (the job of Dovecot's index file). Every change that adds,
// removes or re-flags messages updates it in the same transaction as the
// message records; Check compares the two and rebuilds the index.

// blockLen is how many messages a flagBlock holds at most: small enough
// that appending a delivery rewrites little, large enough that a mailbox
// of 50,000 messages is a few hundred records.
const blockLen = 128

// entrySize is an entry's encoded length: UID (4 bytes), flag bits (1),
// ModSeq (8), ID (8), HeaderSize (8), big endian. An index of another
// size (an earlier version's) is rebuilt at Open.
const entrySize = 29

// flagBlock holds the entries of consecutive messages of a mailbox; blocks
// of a mailbox do not overlap, and a block's UIDs are above the previous
// block's Last.
type flagBlock struct {
	ID        int64
	MailboxID int64  `bstore:"nonzero,ref Mailbox,index MailboxID+Last"`
	Last      UID    `bstore:"nonzero"` // The highest UID in Entries.
	Entries   []byte // entrySize bytes a message, ascending by UID.
}

// Flag bits of an entry.
const (
	bitSeen = 1 << iota
	bitAnswered
	bitFlagged
	bitDeleted
	bitDraft
	bitKeywords // The message has keywords: they are in its record.
)

// indexEntry is a message's entry in the flag index.
type indexEntry struct {
	UID        UID
	Bits       byte
	ModSeq     int64
	ID         int64 // Of the Message record, which names its file.
	HeaderSize int64
}

func (m Message) entry() indexEntry {
	var b byte
	for _, f := range [...]struct {
		set bool
		bit byte
	}{{m.Seen, bitSeen}, {m.Answered, bitAnswered}, {m.Flagged, bitFlagged}, {m.Deleted, bitDeleted}, {m.Draft, bitDraft}, {len(m.Keywords) > 0, bitKeywords}} {
		if f.set {
			b |= f.bit
		}
	}
	return indexEntry{UID: m.UID, Bits: b, ModSeq: m.ModSeq, ID: m.ID, HeaderSize: m.HeaderSize}
}

// flags returns the system flags of e.
func (e indexEntry) flags() Flags {
	return Flags{
		Seen:     e.Bits&bitSeen != 0,
		Answered: e.Bits&bitAnswered != 0,
		Flagged:  e.Bits&bitFlagged != 0,
		Deleted:  e.Bits&bitDeleted != 0,
		Draft:    e.Bits&bitDraft != 0,
	}
}

func (b *flagBlock) len() int { return len(b.Entries) / entrySize }

func (b *flagBlock) at(i int) indexEntry {
	p := b.Entries[i*entrySize:]
	return indexEntry{UID: UID(binary.BigEndian.Uint32(p)), Bits: p[4], ModSeq: int64(binary.BigEndian.Uint64(p[5:])),
		ID: int64(binary.BigEndian.Uint64(p[13:])), HeaderSize: int64(binary.BigEndian.Uint64(p[21:]))}
}

func (b *flagBlock) uidAt(i int) UID {
	return UID(binary.BigEndian.Uint32(b.Entries[i*entrySize:]))
}

func (b *flagBlock) set(i int, e indexEntry) {
	p := b.Entries[i*entrySize:]
	binary.BigEndian.PutUint32(p, uint32(e.UID))
	p[4] = e.Bits
	binary.BigEndian.PutUint64(p[5:], uint64(e.ModSeq))
	binary.BigEndian.PutUint64(p[13:], uint64(e.ID))
	binary.BigEndian.PutUint64(p[21:], uint64(e.HeaderSize))
}

func (b *flagBlock) append(e indexEntry) {
	b.Entries = append(b.Entries, make([]byte, entrySize)...)
	b.set(b.len()-1, e)
	b.Last = e.UID
}

// find returns the position of uid in b, and whether it is there.
func (b *flagBlock) find(uid UID) (int, bool) {
	n := b.len()
	i := sort.Search(n, func(i int) bool { return b.uidAt(i) >= uid })
	return i, i < n && b.uidAt(i) == uid
}

// save writes b, or deletes it once empty.
func (b *flagBlock) save(tx *bstore.Tx) error {
	switch {
	case b.len() == 0 && b.ID != 0:
		return tx.Delete(b)
	case b.len() == 0:
		return nil
	case b.ID == 0:
		return tx.Insert(b)
	}
	b.Last = b.at(b.len() - 1).UID
	return tx.Update(b)
}

func blockQuery(tx *bstore.Tx, mailboxID int64) *bstore.Query[flagBlock] {
	return bstore.QueryTx[flagBlock](tx).FilterNonzero(flagBlock{MailboxID: mailboxID})
}

// forEachEntry calls fn with the entries of a mailbox, ascending by UID,
// from those of the block holding UID first to the block holding last
// (inclusive; 0: to the end).
func forEachEntry(tx *bstore.Tx, mailboxID int64, first, last UID, fn func(indexEntry)) error {
	return blockQuery(tx, mailboxID).FilterGreaterEqual("Last", first).SortAsc("Last").ForEach(func(b flagBlock) error {
		for i := range b.len() {
			fn(b.at(i))
		}
		if last != 0 && b.Last >= last {
			return bstore.StopForEach
		}
		return nil
	})
}

// indexAdd adds entries of new messages, ascending and above every UID of
// the mailbox.
func indexAdd(tx *bstore.Tx, mailboxID int64, l []indexEntry) error {
	if len(l) == 0 {
		return nil
	}
	b, err := blockQuery(tx, mailboxID).SortDesc("Last").Limit(1).Get()
	if err == bstore.ErrAbsent || err == nil && b.len() >= blockLen {
		b = flagBlock{MailboxID: mailboxID}
	} else if err != nil {
		return err
	} else if l[0].UID <= b.Last {
		return fmt.Errorf("flag index of mailbox %d: adding uid %d at or below %d", mailboxID, l[0].UID, b.Last)
	}
	for _, e := range l {
		if b.len() >= blockLen {
			if err := b.save(tx); err != nil {
				return err
			}
			b = flagBlock{MailboxID: mailboxID}
		}
		b.append(e)
	}
	return b.save(tx)
}

// indexChange applies fn to the entries of the given UIDs (ascending, all
// in the index): fn returns the new entry, or false to remove it.
func indexChange(tx *bstore.Tx, mailboxID int64, uids []UID, fn func(indexEntry) (indexEntry, bool)) error {
	var b flagBlock
	loaded := false
	for _, uid := range uids {
		if !loaded || uid > b.Last {
			if loaded {
				if err := b.save(tx); err != nil {
					return err
				}
			}
			var err error
			b, err = blockQuery(tx, mailboxID).FilterGreaterEqual("Last", uid).SortAsc("Last").Limit(1).Get()
			if err != nil {
				return fmt.Errorf("flag index of mailbox %d: block of uid %d: %w", mailboxID, uid, err)
			}
			loaded = true
		}
		i, ok := b.find(uid)
		if !ok {
			return fmt.Errorf("flag index of mailbox %d: uid %d missing", mailboxID, uid)
		}
		if e, keep := fn(b.at(i)); keep {
			b.set(i, e)
		} else {
			b.Entries = slices.Delete(b.Entries, i*entrySize, (i+1)*entrySize)
		}
	}
	if !loaded {
		return nil
	}
	return b.save(tx)
}

// indexUpdate replaces the entries of messages whose flags changed
// (ascending by UID).
func indexUpdate(tx *bstore.Tx, mailboxID int64, l []indexEntry) error {
	uids := make([]UID, len(l))
	for i, e := range l {
		uids[i] = e.UID
	}
	i := 0
	return indexChange(tx, mailboxID, uids, func(indexEntry) (indexEntry, bool) {
		i++
		return l[i-1], true
	})
}

// indexRemove removes the entries of the given UIDs (ascending).
func indexRemove(tx *bstore.Tx, mailboxID int64, uids []UID) error {
	return indexChange(tx, mailboxID, uids, func(e indexEntry) (indexEntry, bool) { return e, false })
}

// indexRebuild replaces the index of a mailbox with l (ascending).
func indexRebuild(tx *bstore.Tx, mailboxID int64, l []indexEntry) error {
	if _, err := blockQuery(tx, mailboxID).Delete(); err != nil {
		return err
	}
	return indexAdd(tx, mailboxID, l)
}

// indexDiffers reports whether the index of a mailbox is other than l
// (ascending), or its blocks are malformed.
func indexDiffers(tx *bstore.Tx, mailboxID int64, l []indexEntry) (bool, error) {
	i := 0
	differs := false
	err := blockQuery(tx, mailboxID).SortAsc("Last").ForEach(func(b flagBlock) error {
		if len(b.Entries)%entrySize != 0 || b.len() == 0 || b.len() > blockLen || b.at(b.len()-1).UID != b.Last {
			differs = true
			return bstore.StopForEach
		}
		for j := range b.len() {
			if i >= len(l) || b.at(j) != l[i] {
				differs = true
				return bstore.StopForEach
			}
			i++
		}
		return nil
	})
	return differs || i != len(l), err
}
