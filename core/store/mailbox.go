package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mjl-/bstore"
)

// Inbox is the name of an account's primary mailbox (RFC 9051 §5.1). Any
// name whose first hierarchy element is "INBOX" in any case means it or its
// children; the store keeps the spelling "Inbox".
const Inbox = "Inbox"

// Separator separates hierarchy levels in mailbox names (RFC 9051 §5.1.1).
const Separator = "/"

// maxNameLen bounds a mailbox name, in bytes of UTF-8.
const maxNameLen = 1000

// SpecialUse marks a mailbox's role for clients (RFC 6154 §2); "" for none.
type SpecialUse string

// The special uses a mailbox can have; the standard mailboxes have one each.
const (
	Archive SpecialUse = `\Archive`
	Drafts  SpecialUse = `\Drafts`
	Junk    SpecialUse = `\Junk`
	Sent    SpecialUse = `\Sent`
	Trash   SpecialUse = `\Trash`
)

// Mailbox is a mailbox's record. Its ID is stable across renames, and is
// what operations on a selected mailbox take.
type Mailbox struct {
	ID   int64
	Name string `bstore:"nonzero,unique"` // Full name, levels separated by Separator.
	// SpecialUse is the role given at creation (CREATE-SPECIAL-USE, RFC 6154
	// §3), kept across renames.
	SpecialUse SpecialUse
	// UIDValidity is unique among the account's mailboxes, past and present
	// (RFC 9051 §2.3.1.1): a mailbox deleted and created again gets a new
	// one. A rename keeps it.
	UIDValidity uint32 `bstore:"nonzero"`
	// UIDNext is the UID the next message added gets (RFC 9051 §2.3.1.1);
	// it only grows, so UIDs are never reused.
	UIDNext UID `bstore:"nonzero"`
	// HighestModSeq is the ModSeq of the last change to the mailbox's
	// messages (RFC 7162 §3.1.2.1); 0 while none.
	HighestModSeq int64
	// Keywords ever set on its messages, lower case, sorted: the keywords
	// of the FLAGS response (RFC 9051 §7.3.5). A keyword stays defined when
	// no message has it any more.
	Keywords []string
	Counts
}

// Counts are a mailbox's numbers for STATUS (RFC 9051 §6.3.11), kept in the
// same transaction as every change to its messages. There is no \Recent
// count: IMAP4rev2 dropped it (RFC 9051 Appendix E).
type Counts struct {
	Messages int64 // MESSAGES, also EXISTS.
	Unseen   int64 // UNSEEN: messages without \Seen.
	Deleted  int64 // DELETED: messages with \Deleted (RFC 9051 §6.3.11).
	Size     int64 // SIZE: sum of the messages' sizes (RFC 8438).
}

// add counts m n times (n is 1 or -1).
func (c *Counts) add(m Message, n int64) {
	c.Messages += n
	c.Size += n * m.Size
	if !m.Seen {
		c.Unseen += n
	}
	if m.Deleted {
		c.Deleted += n
	}
}

// subscription is a name in the subscription list (RFC 9051 §6.3.7); the
// mailbox need not exist.
type subscription struct {
	Name string
}

// NormalizeMailboxName returns the store's spelling of a mailbox name
// (Inbox for any case of INBOX as first level), or ErrBadName for a name
// that is empty, not UTF-8, longer than 1000 bytes, has control characters,
// the LIST wildcards % and *, or an empty hierarchy level.
func NormalizeMailboxName(name string) (string, error) {
	if first, _, _ := strings.Cut(name, Separator); strings.EqualFold(first, Inbox) {
		name = Inbox + name[len(first):]
	}
	switch {
	case name == "":
		return "", fmt.Errorf("%w: empty mailbox name", ErrBadName)
	case len(name) > maxNameLen:
		return "", fmt.Errorf("%w: mailbox name longer than %d bytes", ErrBadName, maxNameLen)
	case !utf8.ValidString(name):
		return "", fmt.Errorf("%w: mailbox name not UTF-8", ErrBadName)
	case strings.ContainsFunc(name, unicode.IsControl):
		return "", fmt.Errorf("%w: control character in mailbox name", ErrBadName)
	case strings.ContainsAny(name, "%*"):
		return "", fmt.Errorf("%w: %% or * in mailbox name", ErrBadName)
	case slices.Contains(strings.Split(name, Separator), ""):
		return "", fmt.Errorf("%w: empty hierarchy level in mailbox name %q", ErrBadName, name)
	}
	return name, nil
}

// parents returns the names above name, top first: "a/b/c" → "a", "a/b".
func parents(name string) []string {
	var l []string
	for i := range len(name) {
		if name[i] == Separator[0] {
			l = append(l, name[:i])
		}
	}
	return l
}

func mailboxByName(tx *bstore.Tx, name string) (Mailbox, error) {
	mb, err := bstore.QueryTx[Mailbox](tx).FilterNonzero(Mailbox{Name: name}).Get()
	if err == bstore.ErrAbsent {
		return mb, fmt.Errorf("%w: %s", ErrNoMailbox, name)
	}
	return mb, err
}

func mailboxByID(tx *bstore.Tx, id int64) (Mailbox, error) {
	mb := Mailbox{ID: id}
	err := tx.Get(&mb)
	if err == bstore.ErrAbsent {
		return mb, fmt.Errorf("%w: id %d", ErrNoMailbox, id)
	}
	return mb, err
}

// Mailboxes returns all mailboxes, by name.
func (a *Account) Mailboxes(ctx context.Context) ([]Mailbox, error) {
	l, err := bstore.QueryDB[Mailbox](ctx, a.db).SortAsc("Name").List()
	if err != nil {
		return nil, fmt.Errorf("store: list mailboxes of %s: %w", a.name, err)
	}
	return l, nil
}

// Mailbox returns the named mailbox, or ErrNoMailbox.
func (a *Account) Mailbox(ctx context.Context, name string) (Mailbox, error) {
	name, err := NormalizeMailboxName(name)
	if err != nil {
		return Mailbox{}, err
	}
	var mb Mailbox
	err = a.db.Read(ctx, func(tx *bstore.Tx) error {
		mb, err = mailboxByName(tx, name)
		return err
	})
	if err != nil {
		return Mailbox{}, fmt.Errorf("store: mailbox of %s: %w", a.name, err)
	}
	return mb, nil
}

// MailboxBySpecialUse returns the mailbox with the special use, the first
// by name if several have it, or ErrNoMailbox: e.g. Junk for quarantined
// deliveries, whatever the user named it.
func (a *Account) MailboxBySpecialUse(ctx context.Context, use SpecialUse) (Mailbox, error) {
	mb, err := bstore.QueryDB[Mailbox](ctx, a.db).FilterNonzero(Mailbox{SpecialUse: use}).SortAsc("Name").Limit(1).Get()
	if err == bstore.ErrAbsent {
		return Mailbox{}, fmt.Errorf("%w: none with special use %s in %s", ErrNoMailbox, use, a.name)
	} else if err != nil {
		return Mailbox{}, fmt.Errorf("store: mailbox of %s: %w", a.name, err)
	}
	return mb, nil
}

// CreateMailbox creates a mailbox, and those above it that are missing
// (RFC 9051 §6.3.4); a trailing separator is ignored. use is "" or a
// SpecialUse constant. It fails with ErrMailboxExists if the mailbox exists.
func (a *Account) CreateMailbox(ctx context.Context, name string, use SpecialUse) (Mailbox, error) {
	name, err := NormalizeMailboxName(strings.TrimSuffix(name, Separator))
	if err != nil {
		return Mailbox{}, err
	}
	switch use {
	case "", Archive, Drafts, Junk, Sent, Trash:
	default:
		return Mailbox{}, fmt.Errorf("%w: special use %q not supported (RFC 6154 USEATTR)", ErrNotAllowed, use)
	}
	var mb Mailbox
	err = a.write(ctx, nil, func(c *change) error {
		if _, err := mailboxByName(c.tx, name); err == nil {
			return fmt.Errorf("%w: %s", ErrMailboxExists, name)
		} else if !errors.Is(err, ErrNoMailbox) {
			return err
		}
		mb, err = a.createTx(c, name, use)
		return err
	})
	if err != nil {
		return Mailbox{}, fmt.Errorf("store: create mailbox %s in %s: %w", name, a.name, err)
	}
	return mb, nil
}

// createTx creates mailbox name, which does not exist, and its missing
// parents.
func (a *Account) createTx(c *change, name string, use SpecialUse) (Mailbox, error) {
	for _, p := range parents(name) {
		if _, err := mailboxByName(c.tx, p); err == nil {
			continue
		} else if !errors.Is(err, ErrNoMailbox) {
			return Mailbox{}, err
		}
		if _, err := a.insertMailbox(c, p, ""); err != nil {
			return Mailbox{}, err
		}
	}
	return a.insertMailbox(c, name, use)
}

func (a *Account) insertMailbox(c *change, name string, use SpecialUse) (Mailbox, error) {
	meta := accountMeta{ID: 1}
	if err := c.tx.Get(&meta); err != nil {
		return Mailbox{}, err
	}
	mb := Mailbox{Name: name, SpecialUse: use, UIDValidity: meta.UIDValidityNext, UIDNext: 1}
	meta.UIDValidityNext++
	if err := c.tx.Update(&meta); err != nil {
		return Mailbox{}, err
	}
	if err := c.tx.Insert(&mb); err != nil {
		return Mailbox{}, err
	}
	c.emit(Event{Kind: MailboxCreated, MailboxID: mb.ID, Mailbox: mb.Name})
	return mb, nil
}

// DeleteMailbox deletes a mailbox and its messages (RFC 9051 §6.3.5). Its
// subscription stays (RFC 9051 §6.3.9). Deleting Inbox, or a mailbox with
// children, fails with ErrNotAllowed: the store does not keep \Noselect
// placeholders, so children must be deleted first (a deviation RFC 9051
// §6.3.5 leaves to servers).
func (a *Account) DeleteMailbox(ctx context.Context, name string) error {
	name, err := NormalizeMailboxName(name)
	if err != nil {
		return err
	}
	if name == Inbox {
		return fmt.Errorf("%w: Inbox cannot be deleted", ErrNotAllowed)
	}
	err = a.write(ctx, nil, func(c *change) error {
		mb, err := mailboxByName(c.tx, name)
		if err != nil {
			return err
		}
		children, err := bstore.QueryTx[Mailbox](c.tx).FilterFn(func(m Mailbox) bool {
			return strings.HasPrefix(m.Name, name+Separator)
		}).Exists()
		if err != nil {
			return err
		} else if children {
			return fmt.Errorf("%w: mailbox %s has children, delete them first", ErrNotAllowed, name)
		}
		var ids []int64
		if err := bstore.QueryTx[Message](c.tx).FilterNonzero(Message{MailboxID: mb.ID}).IDs(&ids); err != nil {
			return err
		}
		if _, err := bstore.QueryTx[Message](c.tx).FilterNonzero(Message{MailboxID: mb.ID}).Delete(); err != nil {
			return err
		}
		for _, id := range ids {
			c.remove = append(c.remove, a.msgPath(id))
		}
		if _, err := blockQuery(c.tx, mb.ID).Delete(); err != nil {
			return err
		}
		if err := c.tx.Delete(&mb); err != nil {
			return err
		}
		c.emit(Event{Kind: MailboxDeleted, MailboxID: mb.ID, Mailbox: mb.Name})
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: delete mailbox %s in %s: %w", name, a.name, err)
	}
	return nil
}

// RenameMailbox renames a mailbox and its children, creating missing
// mailboxes above the new name, and moves their subscriptions along (RFC
// 9051 §6.3.6). Messages keep their UIDs and the mailboxes their
// UIDVALIDITY. Renaming Inbox instead moves all its messages to a new
// mailbox of the new name, leaving Inbox empty and its children in place,
// as RFC 9051 §6.3.6 prescribes. The new name must not exist
// (ErrMailboxExists) nor be below the old one (ErrNotAllowed).
func (a *Account) RenameMailbox(ctx context.Context, from, to string) error {
	from, err := NormalizeMailboxName(from)
	if err != nil {
		return err
	}
	to, err = NormalizeMailboxName(strings.TrimSuffix(to, Separator))
	if err != nil {
		return err
	}
	err = a.write(ctx, nil, func(c *change) error {
		mb, err := mailboxByName(c.tx, from)
		if err != nil {
			return err
		}
		if _, err := mailboxByName(c.tx, to); err == nil {
			return fmt.Errorf("%w: %s", ErrMailboxExists, to)
		} else if !errors.Is(err, ErrNoMailbox) {
			return err
		}
		if from == Inbox {
			dest, err := a.createTx(c, to, "")
			if err != nil {
				return err
			}
			msgs, err := bstore.QueryTx[Message](c.tx).FilterNonzero(Message{MailboxID: mb.ID}).SortAsc("UID").List()
			if err != nil {
				return err
			}
			_, err = a.moveTx(c, mb, msgs, dest)
			return err
		}
		if strings.HasPrefix(to, from+Separator) {
			return fmt.Errorf("%w: cannot rename %s below itself", ErrNotAllowed, from)
		}
		for _, p := range parents(to) {
			if _, err := mailboxByName(c.tx, p); errors.Is(err, ErrNoMailbox) {
				if _, err := a.insertMailbox(c, p, ""); err != nil {
					return err
				}
			} else if err != nil {
				return err
			}
		}
		renamed := func(name string) (string, bool) {
			if name == from {
				return to, true
			} else if rest, ok := strings.CutPrefix(name, from+Separator); ok {
				return to + Separator + rest, true
			}
			return "", false
		}
		boxes, err := bstore.QueryTx[Mailbox](c.tx).List()
		if err != nil {
			return err
		}
		for _, b := range boxes {
			newName, ok := renamed(b.Name)
			if !ok {
				continue
			}
			old := b.Name
			b.Name = newName
			if err := c.tx.Update(&b); errors.Is(err, bstore.ErrUnique) {
				return fmt.Errorf("%w: %s", ErrMailboxExists, newName)
			} else if err != nil {
				return err
			}
			c.emit(Event{Kind: MailboxRenamed, MailboxID: b.ID, Mailbox: newName, OldName: old})
		}
		subs, err := bstore.QueryTx[subscription](c.tx).List()
		if err != nil {
			return err
		}
		for _, s := range subs {
			if newName, ok := renamed(s.Name); ok {
				if err := c.tx.Delete(&s); err != nil {
					return err
				}
				if err := c.tx.Insert(&subscription{Name: newName}); err != nil && !errors.Is(err, bstore.ErrUnique) {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: rename mailbox %s to %s in %s: %w", from, to, a.name, err)
	}
	return nil
}

// SubscribeMailbox adds name to the subscription list (RFC 9051 §6.3.7);
// the mailbox need not exist. Subscribing twice is no error.
func (a *Account) SubscribeMailbox(ctx context.Context, name string) error {
	name, err := NormalizeMailboxName(name)
	if err != nil {
		return err
	}
	err = a.db.Write(ctx, func(tx *bstore.Tx) error {
		err := tx.Insert(&subscription{Name: name})
		if errors.Is(err, bstore.ErrUnique) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: subscribe %s in %s: %w", name, a.name, err)
	}
	return nil
}

// UnsubscribeMailbox removes name from the subscription list (RFC 9051
// §6.3.8). Removing a name not in it is no error.
func (a *Account) UnsubscribeMailbox(ctx context.Context, name string) error {
	name, err := NormalizeMailboxName(name)
	if err != nil {
		return err
	}
	err = a.db.Write(ctx, func(tx *bstore.Tx) error {
		err := tx.Delete(&subscription{Name: name})
		if err == bstore.ErrAbsent {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("store: unsubscribe %s in %s: %w", name, a.name, err)
	}
	return nil
}

// Subscriptions returns the subscribed names, sorted, including names of
// mailboxes that do not exist (LIST \NonExistent, RFC 9051 §7.3.1).
func (a *Account) Subscriptions(ctx context.Context) ([]string, error) {
	var names []string
	err := bstore.QueryDB[subscription](ctx, a.db).ForEach(func(s subscription) error {
		names = append(names, s.Name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: subscriptions of %s: %w", a.name, err)
	}
	slices.Sort(names)
	return names, nil
}
