package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mjl-/bstore"

	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// HoldRule holds newly queued messages that match it: by the sending
// account, the sender's domain and the recipient's domain, each matching
// any when empty. A rule of all three empty holds everything.
type HoldRule struct {
	ID         int64
	Account    string
	FromDomain string // A-labels, lower case.
	ToDomain   string // A-labels, lower case.
	Created    time.Time
}

// holdRules are the rules, read at Open and kept as they change.
type holdRules struct {
	mu    sync.Mutex
	rules []HoldRule
}

// matches reports whether rule r holds the recipient at toDomain of a
// message from account and fromDomain.
func (r HoldRule) matches(account, fromDomain, toDomain string) bool {
	return (r.Account == "" || r.Account == account) &&
		(r.FromDomain == "" || r.FromDomain == fromDomain) &&
		(r.ToDomain == "" || r.ToDomain == toDomain)
}

// holds reports whether a rule holds the recipient at toDomain.
func (h *holdRules) holds(account, fromDomain, toDomain string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.rules {
		if r.matches(account, fromDomain, toDomain) {
			return true
		}
	}
	return false
}

// ruleDomain returns d as a rule compares it, or an error.
func ruleDomain(d string) (string, error) {
	if d == "" {
		return "", nil
	}
	pd, err := mailaddr.ParseDomain(d)
	if err != nil {
		return "", err
	}
	return strings.ToLower(pd.ASCII), nil
}

// AddHoldRule stores a rule, durably; messages queued from then on that
// match it are held. Domains may be given in any form.
func (q *Queue) AddHoldRule(ctx context.Context, account, fromDomain, toDomain string) (HoldRule, error) {
	r := HoldRule{Account: account, Created: time.Now()}
	var err error
	if r.FromDomain, err = ruleDomain(fromDomain); err != nil {
		return HoldRule{}, fmt.Errorf("from domain: %w", err)
	}
	if r.ToDomain, err = ruleDomain(toDomain); err != nil {
		return HoldRule{}, fmt.Errorf("to domain: %w", err)
	}
	if err := q.db.Insert(ctx, &r); err != nil {
		return HoldRule{}, fmt.Errorf("queue: add hold rule: %w", err)
	}
	q.holds.mu.Lock()
	q.holds.rules = append(q.holds.rules, r)
	q.holds.mu.Unlock()
	return r, nil
}

// HoldRules returns the rules, oldest first.
func (q *Queue) HoldRules(ctx context.Context) ([]HoldRule, error) {
	l, err := bstore.QueryDB[HoldRule](ctx, q.db).SortAsc("ID").List()
	if err != nil {
		return nil, fmt.Errorf("queue: list hold rules: %w", err)
	}
	return l, nil
}

// RemoveHoldRule removes rule id, or fails with ErrNotFound. What it held
// stays held.
func (q *Queue) RemoveHoldRule(ctx context.Context, id int64) error {
	err := q.db.Delete(ctx, &HoldRule{ID: id})
	if errors.Is(err, bstore.ErrAbsent) {
		return fmt.Errorf("%w: hold rule %d", ErrNotFound, id)
	} else if err != nil {
		return fmt.Errorf("queue: remove hold rule: %w", err)
	}
	q.holds.mu.Lock()
	defer q.holds.mu.Unlock()
	for i, r := range q.holds.rules {
		if r.ID == id {
			q.holds.rules = append(q.holds.rules[:i], q.holds.rules[i+1:]...)
			break
		}
	}
	return nil
}

// loadHoldRules reads the rules at Open.
func (q *Queue) loadHoldRules(ctx context.Context) error {
	l, err := q.HoldRules(ctx)
	if err != nil {
		return err
	}
	q.holds.rules = l
	return nil
}
