package smtpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/core/authlimit"
	"github.com/switchyard-mta/switchyard/core/clientconn"
	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/guard"
	"github.com/switchyard-mta/switchyard/core/sasl"
	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// Replies. Causes are logged, never sent.
var (
	// RFC 4954 §6: a submission server refuses mail before AUTH.
	errAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	// RFC 6409 §6.1: the sender must be one the account may use.
	errSenderNotOwned = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender address not owned by you"}
	// REQUIRETLS is a promise to relay over TLS only, which makes no sense
	// from a client not using it; go-smtp advertises it only with TLS
	// (RFC 8689 §2). 5.7.10: encryption needed (RFC 5248).
	errRequireTLSPlain = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 10}, Message: "REQUIRETLS needs a TLS session"}
	errLocalDelivery   = &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Local delivery not available"}
	// RFC 5321 §3.6.2, RFC 3463 X.1.1: no such mailbox.
	errNoSuchUser = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	// RFC 5321 §4.2.2 452, RFC 3463 X.2.2: mailbox full, try later.
	errOverQuota = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"}
	// RFC 5321 §3.6 and §7.1: not an open relay. 5.7.1: not authorized.
	errRelayDenied = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Relaying denied"}
	errInternal    = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Internal error, try again later"}
)

// session is one SMTP session: from EHLO until STARTTLS, which starts a new
// one (RFC 3207 §4.2), or the end of the connection.
type session struct {
	srv   *Server
	sc    *smtp.Conn
	conn  *clientconn.Conn
	log   *slog.Logger
	relay bool // The client is in the listener's relay networks.

	account string // After successful AUTH, or by client key.
	// preauthTemp: the client's certificate could not be checked for a
	// known key (its plugin down); MAIL without AUTH is told to retry.
	preauthTemp bool
	exchange    atomic.Pointer[sasl.Exchange]     // A plugin's AUTH exchange in progress.
	attempt     atomic.Pointer[authlimit.Attempt] // The exchange's, counted by core/authlimit.

	// What the policy checks added: for the connection (connect stage),
	// the session (helo) and the transaction (mail, rcpt).
	connPolicy  *connPolicy
	heloHeaders []string
	heloMark    mark
	txHeaders   []string
	txMark      mark

	// The transaction, from MAIL on.
	start      time.Time
	from       string
	opts       sdk.DeliverOptions
	size       int64     // MAIL FROM SIZE=, 0 if not given.
	release    time.Time // MAIL FROM HOLDFOR= or HOLDUNTIL= (RFC 4865); zero if not given.
	recipients []sdk.Recipient
	targets    [][]target // Per recipient: the local accounts it goes to; none if remote.
}

var _ smtp.AuthSession = (*session)(nil)

func (s *Server) newSession(sc *smtp.Conn) (_ smtp.Session, err error) {
	defer panicReply(&err, errInternal)
	defer guard.Recover(s.log, "smtp session", &err)
	c, ok := clientconn.Of(sc.Conn())
	if !ok {
		s.log.Error("session on a connection not from Serve", slog.String("remote", sc.Conn().RemoteAddr().String()))
		return nil, errInternal
	}
	if g, ok := c.Conn.(*greetingConn); ok {
		g.lift() // Under implicit TLS, HELO or EHLO is the first line seen.
	}
	// go-smtp echoes the name in its reply; when refused, it forgets it.
	if err := checkHelo(sc.Hostname()); err != nil {
		c.Log.Info("greeting refused", slog.String("helo", sc.Hostname()), slog.Int("code", err.Code))
		return nil, err
	}
	relay := slices.ContainsFunc(s.cfg.Listener.RelayPrefixes, func(p netip.Prefix) bool { return p.Contains(c.IP) })
	c.Log.Debug("session started", slog.Bool("relay", relay))
	sess := &session{srv: s, sc: sc, conn: c, log: c.Log, relay: relay}
	sess.preAuth()
	cp := &connPolicy{}
	if g, ok := c.Conn.(*greetingConn); ok {
		cp = &g.policy
	}
	if err := sess.policyConnect(cp); err != nil {
		return nil, err
	}
	if s.cfg.Policies.Wants(sdk.StageHelo) {
		if err, _ := sess.runPolicy(sess.checkRequest(sdk.StageHelo), nil); err != nil {
			c.Log.Info("greeting refused by policy", slog.String("helo", sc.Hostname()), slog.Int("code", err.Code))
			return nil, err
		}
	}
	return sess, nil
}

// panicReply, deferred before guard.Recover in a go-smtp callback, turns
// the error of a recovered panic into reply: go-smtp would send any other
// error's text to the client. go-smtp's own recovery would answer 421 and
// close the connection, uncounted; this fails only the command, with 4xx.
func panicReply(errp *error, reply *smtp.SMTPError) {
	if errors.Is(*errp, guard.ErrPanic) {
		*errp = reply
	}
}

// hangUp ends the connection after the next reply and ends reading from the
// client now, so that a go-smtp read waiting for it fails.
func (s *session) hangUp() {
	s.conn.HangupAfterReply()
	if cr, ok := s.conn.Conn.(interface{ CloseRead() error }); ok {
		cr.CloseRead()
	}
}

// isTLS reports whether the session runs over TLS.
func (s *session) isTLS() bool {
	_, ok := s.sc.TLSConnectionState()
	return ok
}

func (s *session) Reset() {
	defer guard.Recover(s.log, "smtp session", nil)
	s.start = time.Time{}
	s.from = ""
	s.opts = sdk.DeliverOptions{}
	s.size = 0
	s.release = time.Time{}
	s.recipients = nil
	s.targets = nil
	s.txHeaders = nil
	s.txMark = mark{}
	// A HELO or EHLO again: go-smtp resets, then echoes the name, without
	// asking. One with a NUL or CR is refused here, and the connection
	// ended before that echo (go-smtp holds its lock: no s.sc.Close).
	if err := checkHelo(s.sc.Hostname()); err != nil {
		s.log.Info("greeting refused, closing", slog.String("helo", s.sc.Hostname()), slog.Int("code", err.Code))
		fmt.Fprintf(s.sc.Conn(), "%d %d.%d.%d %s\r\n", err.Code, err.EnhancedCode[0], err.EnhancedCode[1], err.EnhancedCode[2], err.Message)
		s.conn.Close()
	}
}

func (s *session) Logout() (err error) {
	defer panicReply(&err, errInternal)
	defer guard.Recover(s.log, "smtp session", &err)
	s.endExchange()
	return nil
}

func (s *session) Mail(from string, opts *smtp.MailOptions) (err error) {
	defer panicReply(&err, errInternal)
	defer guard.Recover(s.log, "smtp session", &err)
	s.Reset()
	if err := s.checkMail(from, opts); err != nil {
		s.log.Info("sender refused", slog.String("account", s.account), slog.String("from", from), slog.Int("code", err.Code))
		return err
	}
	s.from, s.size, s.release = from, opts.Size, opts.HoldUntil
	if s.srv.cfg.Policies.Wants(sdk.StageMail) {
		if err, _ := s.runPolicy(s.checkRequest(sdk.StageMail), nil); err != nil {
			s.log.Info("sender refused by policy", slog.String("account", s.account), slog.String("from", from), slog.Int("code", err.Code))
			s.Reset()
			return err
		}
	}
	s.start = time.Now()
	s.opts = sdk.DeliverOptions{
		SMTPUTF8:   opts.UTF8,
		Body:       string(opts.Body),
		RequireTLS: opts.RequireTLS,
		EnvelopeID: opts.EnvelopeID,
		DSNReturn:  string(opts.Return),
	}
	return nil
}

func (s *session) checkMail(from string, opts *smtp.MailOptions) *smtp.SMTPError {
	addr, err := checkAddress(from, true, opts.UTF8)
	if err != nil {
		return err
	}
	if s.srv.submission() {
		if s.account == "" && s.preauthTemp {
			return errAuthTemp
		} else if s.account == "" {
			return errAuthRequired
		}
		// The null reverse-path is for bounces (RFC 5321 §4.5.5), which
		// users do not submit.
		if from == "" || !s.srv.cfg.Accounts.MayUseAddress(s.account, addr) {
			return errSenderNotOwned
		}
	}
	if opts.RequireTLS && !s.isTLS() {
		return errRequireTLSPlain
	}
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) (err error) {
	defer panicReply(&err, errInternal)
	defer guard.Recover(s.log, "smtp session", &err)
	if to == "postmaster" {
		// RCPT TO:<Postmaster> (RFC 5321 §4.1.1.3), as go-smtp passes it.
		if to = s.srv.cfg.Accounts.PostmasterAddress(); to == "" {
			return errNoPostmaster
		}
	}
	addr, serr := s.checkRcptSyntax(to, opts)
	if err := serr; err != nil {
		s.log.Info("recipient refused", slog.String("account", s.account), slog.String("from", s.from), slog.String("rcpt", to), slog.Int("code", err.Code))
		return err
	}
	targets, serr := s.checkRcpt(addr)
	if err := serr; err != nil {
		s.log.Info("recipient refused", slog.String("account", s.account), slog.String("from", s.from), slog.String("rcpt", to), slog.Int("code", err.Code))
		return err
	}
	if err := s.checkSuppressed(to); err != nil {
		s.log.Info("recipient refused", slog.String("account", s.account), slog.String("from", s.from), slog.String("rcpt", to), slog.Int("code", err.Code), slog.String("reason", "suppressed"))
		return err
	}
	r := sdk.Recipient{Address: to}
	if s.srv.cfg.Policies.Wants(sdk.StageRcpt) {
		req := s.checkRequest(sdk.StageRcpt)
		req.Recipients = append(req.Recipients, to)
		if err, _ := s.runPolicy(req, nil); err != nil {
			s.log.Info("recipient refused by policy", slog.String("account", s.account), slog.String("from", s.from), slog.String("rcpt", to), slog.Int("code", err.Code))
			return err
		}
	}
	for _, n := range opts.Notify {
		r.Notify = append(r.Notify, string(n))
	}
	if opts.OriginalRecipient != "" {
		r.ORcpt = string(opts.OriginalRecipientType) + ";" + opts.OriginalRecipient
	}
	s.recipients = append(s.recipients, r)
	s.targets = append(s.targets, targets)
	return nil
}

// checkSuppressed refuses a submission's recipient on the account's
// suppression list.
func (s *session) checkSuppressed(to string) *smtp.SMTPError {
	sl := s.srv.cfg.Suppressions
	if sl == nil || s.account == "" || !s.srv.submission() {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.srv.ctx, queueTimeout)
	defer cancel()
	sup, err := sl.Suppressed(ctx, s.account, to)
	switch {
	case err != nil:
		s.log.Error("reading the suppression list", slog.Any("err", err))
		return errInternal
	case sup != nil:
		// RFC 3463 X.7.1: delivery not authorized.
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "<" + to + "> is on the account's suppression list"}
	}
	return nil
}

// checkRcptSyntax checks what go-smtp's parser lets through, and parses
// the address.
func (s *session) checkRcptSyntax(to string, opts *smtp.RcptOptions) (mailaddr.Address, *smtp.SMTPError) {
	addr, err := checkAddress(to, false, s.opts.SMTPUTF8)
	if err != nil {
		return mailaddr.Address{}, err
	}
	if to == "" {
		return mailaddr.Address{}, errRcptSyntax // RFC 5321 §4.1.1.3: no null forward-path.
	}
	if opts.OriginalRecipient != "" {
		return addr, checkORcpt(opts.OriginalRecipient)
	}
	return addr, nil
}

// target is a local account a recipient goes to: itself, or a member of
// the alias it is.
type target struct {
	account string
	member  string // The member's address, for an alias; "" otherwise.
}

// errNotMember refuses mail to a members-only alias (RFC 3463 X.7.1).
var errNotMember = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Only members may send to this address"}

// checkRcpt returns the local accounts of a recipient at a local domain
// (several for an alias), or none for a remote one that may be relayed.
func (s *session) checkRcpt(to mailaddr.Address) ([]target, *smtp.SMTPError) {
	accounts := s.srv.cfg.Accounts
	if !accounts.IsLocalDomain(to.Domain) {
		if s.account == "" && !s.relay {
			return nil, errRelayDenied
		}
		return nil, nil
	}
	local := s.srv.cfg.Local
	if local == nil {
		return nil, errLocalDelivery
	}
	ctx, cancel := context.WithTimeout(s.srv.ctx, queueTimeout)
	defer cancel()
	if al := accounts.AliasOf(to); al != nil {
		if !al.PostPublic && !s.isMember(al) {
			return nil, errNotMember
		}
		// Accepted if a member can take it.
		var ts []target
		for i, acc := range al.Accounts {
			if !local.OverQuota(ctx, acc, s.size) {
				ts = append(ts, target{acc, al.Members[i]})
			}
		}
		if len(ts) == 0 {
			return nil, errOverQuota
		}
		return ts, nil
	}
	account, ok := accounts.AccountByAddress(to)
	if !ok {
		return nil, errNoSuchUser
	}
	if local.OverQuota(ctx, account, s.size) {
		return nil, errOverQuota
	}
	return []target{{account: account}}, nil
}

// isMember reports whether the sender is a member of al: logged in as one
// of its accounts, or with MAIL FROM one of its addresses.
func (s *session) isMember(al *config.Alias) bool {
	if s.account != "" && slices.Contains(al.Accounts, s.account) {
		return true
	}
	return slices.ContainsFunc(al.Members, func(m string) bool { return strings.EqualFold(m, s.from) })
}
