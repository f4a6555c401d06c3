// Package localdelivery delivers messages to local accounts' Inboxes (core/store):
// at SMTP time, for the listeners before they answer (smtpd.Local), and as
// the queue's built-in local transport (config.LocalTransport), for
// retries and for DSNs to local senders. Router and Deliverer put the
// local transport before the configured routes and the transport plugins.
//
// Final delivery puts a Return-Path with the envelope sender at the top of
// the message (RFC 5321 §4.4), and a Delivered-To per recipient address,
// as Postfix, Exim and qmail do: a client sees whom the message was for,
// and a forwarding loop can be told.
package localdelivery

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/store"
	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// QuarantineField is the header field of a message a policy check
// quarantined (smtpd adds it): delivered to Junk, also when the queue
// retries it. A sender can set it only to demote its own message.
const QuarantineField = "X-Switchyard-Quarantine"

// Local delivers to the Inboxes of the configured accounts.
type Local struct {
	cfg   *config.Config
	store *store.Store
}

// New returns local delivery for cfg's accounts, stored in st.
func New(cfg *config.Config, st *store.Store) *Local {
	return &Local{cfg: cfg, store: st}
}

// Rcpt is an account to deliver a message to, and the recipient addresses
// that led to it, as given in RCPT TO.
type Rcpt struct {
	Account   string
	Addresses []string
	// Junk delivers to the account's Junk mailbox (a policy check
	// quarantined the message), or its Inbox if it has none.
	Junk bool
	// Key names the delivery (store.DeliverOptions.Key): the same key
	// again delivers nothing more.
	Key string
}

// DeliverLocal delivers msg to the Inbox of each account of rcpts, a copy
// each, with the header of header(from, addresses) on top; from is the
// envelope sender, empty for the null reverse-path. It returns one error
// per account, nil where delivered; store.ErrQuota where the account is
// over quota, store.ErrNotFound for an account not in the store.
func (l *Local) DeliverLocal(ctx context.Context, from string, rcpts []Rcpt, msg *io.SectionReader) []error {
	errs := make([]error, len(rcpts))
	for i, r := range rcpts {
		acc, err := l.store.Account(r.Account)
		if err == nil {
			errs[i] = l.deliver(ctx, acc, header(from, r.Addresses), msg, r.Junk, r.Key)
		} else {
			errs[i] = err
		}
	}
	return errs
}

func (l *Local) deliver(ctx context.Context, acc *store.Account, hdr string, msg *io.SectionReader, junk bool, key string) error {
	mailbox := store.Inbox
	if junk {
		if mb, err := acc.MailboxBySpecialUse(ctx, store.Junk); err == nil {
			mailbox = mb.Name
		} else if !errors.Is(err, store.ErrNoMailbox) {
			return err
		}
	}
	in, err := l.store.NewIncoming(io.MultiReader(strings.NewReader(hdr), io.NewSectionReader(msg, 0, msg.Size())))
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = acc.Deliver(ctx, mailbox, in, store.DeliverOptions{Key: key})
	return err
}

// OverQuota implements smtpd.Local: whether account cannot take a message
// of size bytes now.
func (l *Local) OverQuota(ctx context.Context, account string, size int64) bool {
	acc, err := l.store.Account(account)
	if err != nil {
		return false // Delivery will say what is wrong.
	}
	used, limit, err := acc.Quota(ctx)
	return err == nil && limit > 0 && (used >= limit || used+size > limit)
}

// Deliver is the local transport: per recipient, delivered, permanently
// failed for an unknown address, or temporarily failed. Recipients of one
// account get one copy.
func (l *Local) Deliver(ctx context.Context, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	res := &sdk.DeliverResult{Recipients: make([]sdk.RecipientResult, len(req.Recipients))}
	var rcpts []Rcpt
	rcptsOf := map[string][]int{} // Indexes in req.Recipients by account.
	for i, r := range req.Recipients {
		res.Recipients[i] = sdk.RecipientResult{Address: r.Address, RemoteHost: l.cfg.Hostname}
		addr, _ := mailaddr.ParseAddress(r.Address) // Unparsed: zero, no account.
		acc, ok := l.cfg.AccountByAddress(addr)
		if !ok {
			res.Recipients[i].Status = sdk.StatusPermanent
			res.Recipients[i].Code, res.Recipients[i].EnhancedCode, res.Recipients[i].Text = 550, "5.1.1", "no such user here"
			continue
		}
		if _, seen := rcptsOf[acc]; !seen {
			// One copy per queued message and account, however often the
			// queue tries: a crash after the mailbox's commit and before
			// the queue's makes it try again.
			r := Rcpt{Account: acc}
			if req.QueueID != "" {
				r.Key = req.QueueID + "/" + acc
			}
			rcpts = append(rcpts, r)
		}
		rcptsOf[acc] = append(rcptsOf[acc], i)
	}
	if len(rcpts) == 0 {
		return res, nil
	}
	for i := range rcpts {
		for _, k := range rcptsOf[rcpts[i].Account] {
			rcpts[i].Addresses = append(rcpts[i].Addresses, req.Recipients[k].Address)
		}
	}
	msg, err := section(req.Message)
	if err != nil {
		return sdk.ResultAll(req, sdk.StatusTemporary, 451, "4.3.0", "reading message: "+err.Error()), nil
	}
	if quarantined(msg) {
		for i := range rcpts {
			rcpts[i].Junk = true
		}
	}
	for i, err := range l.DeliverLocal(ctx, req.From, rcpts, msg) {
		rr := sdk.RecipientResult{Status: sdk.StatusDelivered, Code: 250, EnhancedCode: "2.0.0", Text: "delivered to " + rcpts[i].Account}
		switch {
		case errors.Is(err, store.ErrQuota):
			rr = sdk.RecipientResult{Status: sdk.StatusTemporary, Code: 452, EnhancedCode: "4.2.2", Text: "mailbox full"}
		case err != nil:
			rr = sdk.RecipientResult{Status: sdk.StatusTemporary, Code: 451, EnhancedCode: "4.3.0", Text: err.Error()}
		}
		for _, k := range rcptsOf[rcpts[i].Account] {
			rr.Address, rr.RemoteHost = req.Recipients[k].Address, l.cfg.Hostname
			res.Recipients[k] = rr
		}
	}
	return res, nil
}

// section returns r, the queue's content, as a section to read once per
// copy; another reader is read into memory.
func section(r io.Reader) (*io.SectionReader, error) {
	if s, ok := r.(*io.SectionReader); ok {
		return s, nil
	}
	b, err := io.ReadAll(r)
	return io.NewSectionReader(bytes.NewReader(b), 0, int64(len(b))), err
}

// quarantined reports whether msg's header section has QuarantineField.
func quarantined(msg *io.SectionReader) bool {
	br := bufio.NewReader(io.NewSectionReader(msg, 0, msg.Size()))
	prefix := []byte(strings.ToLower(QuarantineField) + ":")
	start := true // At the start of a line.
	for {
		line, err := br.ReadSlice('\n')
		if start && len(bytes.TrimRight(line, "\r\n")) == 0 {
			return false // The end of the header section, or of msg.
		}
		if start && len(line) >= len(prefix) && bytes.EqualFold(line[:len(prefix)], prefix) {
			return true
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			start = false // The rest of a long line follows.
		case err != nil:
			return false
		default:
			start = true
		}
	}
}
