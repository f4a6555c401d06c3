package store

import "sync"

// EventKind says what changed.
type EventKind int

const (
	MessagesAdded    EventKind = iota + 1 // UIDs added to the mailbox, ascending.
	MessagesExpunged                      // UIDs removed from the mailbox, ascending.
	FlagsChanged                          // Flags: new flags of the messages that changed.
	MailboxKeywords                       // Keywords: the mailbox's keywords, grown.
	MailboxCreated
	MailboxDeleted // With its messages; no MessagesExpunged is sent.
	MailboxRenamed // Mailbox is the new name, OldName the old.
)

// Event is one change, as committed. The events of one change share a
// ModSeq, and watchers receive changes in commit order. Events are shared
// between watchers: treat their slices as read-only.
type Event struct {
	Kind      EventKind
	ModSeq    int64 // The account's ModSeq after the change.
	MailboxID int64
	Mailbox   string // The mailbox's name (after the change).
	OldName   string // MailboxRenamed.
	UIDs      []UID
	Flags     []MessageFlags
	Keywords  []string

	origin *Watcher // The watcher of the session that made the change, if any.
}

// Watcher receives an account's events, for IMAP IDLE and for sessions to
// learn of each other's changes. Events queue without bound until taken by
// Events: a watcher must be drained or closed.
type Watcher struct {
	a         *Account
	mailboxID int64 // Only this mailbox's events; 0: all. Guarded by a.wmu.

	mu     sync.Mutex
	events []Event
	notify chan struct{}
}

// Watch returns a new watcher of all of the account's changes from now on;
// the caller must Close it.
func (a *Account) Watch() *Watcher {
	return a.watch(0)
}

func (a *Account) watch(mailboxID int64) *Watcher {
	w := &Watcher{a: a, mailboxID: mailboxID, notify: make(chan struct{}, 1)}
	a.wmu.Lock()
	a.watchers[w] = struct{}{}
	a.wmu.Unlock()
	return w
}

// Notify returns a channel that receives a value when events are waiting.
// A value may be received with none waiting: call Events, then wait again.
func (w *Watcher) Notify() <-chan struct{} { return w.notify }

// Events takes the waiting events, oldest first.
func (w *Watcher) Events() []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.events
	w.events = nil
	return l
}

// Close stops the watcher; waiting events are dropped.
func (w *Watcher) Close() {
	w.a.wmu.Lock()
	delete(w.a.watchers, w)
	w.a.wmu.Unlock()
	w.mu.Lock()
	w.events = nil
	w.mu.Unlock()
}

// broadcast queues the events of one committed change for all watchers.
// The caller holds a.wmu.
func (a *Account) broadcast(events []Event) {
	if len(events) == 0 {
		return
	}
	for w := range a.watchers {
		w.mu.Lock()
		n := len(w.events)
		for _, e := range events {
			if w.mailboxID == 0 || e.MailboxID == w.mailboxID {
				w.events = append(w.events, e)
			}
		}
		added := len(w.events) > n
		w.mu.Unlock()
		if added {
			select {
			case w.notify <- struct{}{}:
			default: // A notification is already waiting.
			}
		}
	}
}
