package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mjl-/bstore"

	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// Suppression is an address an account's submissions may not be sent to:
// it does not exist or refuses mail, as a permanent failure said, or the
// operator put it there (mta suppression add).
type Suppression struct {
	Key     string // Account, NUL, SuppressionKey of the address.
	Account string `bstore:"nonzero,index"`
	Address string `bstore:"nonzero"` // As added.
	Reason  string // The failure's reply, or the operator's words.
	Auto    bool   // Added by a delivery failure.
	Created time.Time
}

// ErrBadAddress is returned for an address that does not parse.
var ErrBadAddress = errors.New("store: not an email address")

// SuppressionKey is how suppressed addresses compare: the domain in any
// form and case, the localpart in NFC and exactly, less a "+tag" (a
// localpart separator is ignored).
func SuppressionKey(addr string) (string, error) {
	a, err := mailaddr.ParseAddress(addr)
	if err != nil || a.Literal != "" || a.Domain.Unicode == "" {
		return "", fmt.Errorf("%w: %q", ErrBadAddress, addr)
	}
	local := a.Localpart
	if i := strings.IndexByte(local, '+'); i > 0 {
		local = local[:i]
	}
	return local + "@" + a.Domain.Unicode, nil
}

func suppressionKey(account, addr string) (string, error) {
	k, err := SuppressionKey(addr)
	if err != nil {
		return "", err
	}
	return account + "\x00" + k, nil
}

// AddSuppression puts addr on account's list, unless it is there already;
// it reports whether it added it.
func (s *Store) AddSuppression(ctx context.Context, account, addr, reason string, auto bool, now time.Time) (bool, error) {
	key, err := suppressionKey(account, addr)
	if err != nil {
		return false, err
	}
	added := false
	err = s.db.Write(ctx, func(tx *bstore.Tx) error {
		if err := tx.Get(&Suppression{Key: key}); err == nil {
			return nil
		} else if !errors.Is(err, bstore.ErrAbsent) {
			return err
		}
		added = true
		return tx.Insert(&Suppression{Key: key, Account: account, Address: addr, Reason: reason, Auto: auto, Created: now})
	})
	if err != nil {
		return false, fmt.Errorf("store: add suppression: %w", err)
	}
	return added, nil
}

// Suppressed returns the entry of account's list that addr matches, or
// nil.
func (s *Store) Suppressed(ctx context.Context, account, addr string) (*Suppression, error) {
	key, err := suppressionKey(account, addr)
	if err != nil {
		return nil, nil // No address, no entry: the caller refuses it otherwise.
	}
	sup := Suppression{Key: key}
	err = s.db.Get(ctx, &sup)
	if errors.Is(err, bstore.ErrAbsent) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("store: read suppression: %w", err)
	}
	return &sup, nil
}

// Suppressions returns account's list, or every account's if it is empty,
// by account and address.
func (s *Store) Suppressions(ctx context.Context, account string) ([]Suppression, error) {
	q := bstore.QueryDB[Suppression](ctx, s.db)
	if account != "" {
		q.FilterNonzero(Suppression{Account: account})
	}
	l, err := q.SortAsc("Key").List()
	if err != nil {
		return nil, fmt.Errorf("store: list suppressions: %w", err)
	}
	return l, nil
}

// RemoveSuppression takes addr off account's list, or fails with
// ErrNotFound.
func (s *Store) RemoveSuppression(ctx context.Context, account, addr string) error {
	key, err := suppressionKey(account, addr)
	if err != nil {
		return err
	}
	err = s.db.Delete(ctx, &Suppression{Key: key})
	if errors.Is(err, bstore.ErrAbsent) {
		return fmt.Errorf("%w: %s is not on the suppression list of %s", ErrNotFound, addr, account)
	} else if err != nil {
		return fmt.Errorf("store: remove suppression: %w", err)
	}
	return nil
}
