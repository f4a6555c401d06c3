package transportsubmission

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/smtpclient"
)

// transport relays messages to the smarthost of each configured instance.
type transport struct {
	log *slog.Logger

	mu        sync.Mutex
	instances map[string]*instance // By instance name.
}

var (
	_ sdk.Transport  = (*transport)(nil)
	_ sdk.Configurer = (*transport)(nil)
)

func newTransport(log *slog.Logger) *transport {
	return &transport{log: log, instances: map[string]*instance{}}
}

// instance is one [transports.NAME] with its connections.
type instance struct {
	name string
	s    *settings
	pool *pool
	log  *slog.Logger
}

// Configure validates an instance table and, unless c.CheckOnly, puts it in
// force: an instance configured again gets a new pool, and the old one's
// connections are closed once their deliveries end.
func (t *transport) Configure(ctx context.Context, c *sdk.Configuration) error {
	if c.Kind != sdk.KindTransport {
		return sdk.ConfigErrors{{Msg: "transport-submission takes configuration only as a transport"}}
	}
	s, err := parseConfig(c)
	if err != nil {
		return err
	}
	log := t.log.With(slog.String("instance", c.Instance))
	if s.client.TLSConfig != nil && s.client.TLSConfig.InsecureSkipVerify {
		log.Warn("insecure_skip_verify: smarthost certificate not verified; for testing only", slog.String("host", s.host))
	}
	if c.CheckOnly {
		return nil
	}
	in := &instance{name: c.Instance, s: s, pool: newPool(s.maxConns, s.idleTimeout), log: log}
	t.mu.Lock()
	old := t.instances[c.Instance]
	t.instances[c.Instance] = in
	t.mu.Unlock()
	if old != nil {
		old.pool.close()
	}
	return nil
}

// Deliver relays req to the smarthost of req.Instance. Its error is for
// failures that are not about the message: an unknown instance, a wait for
// a connection slot cut short by ctx, or the message stream failing.
func (t *transport) Deliver(ctx context.Context, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	t.mu.Lock()
	in := t.instances[req.Instance]
	t.mu.Unlock()
	if in == nil {
		return nil, fmt.Errorf("transport-submission: instance %q is not configured", req.Instance)
	}
	return in.deliver(ctx, req)
}

// delivery is the state of one delivery attempt.
type delivery struct {
	ctx  context.Context
	req  *sdk.DeliverRequest
	res  *sdk.DeliverResult
	done []bool // Whether the result of a recipient is decided.
}

// errNeeds8BitMIME is the message having 8-bit data for a server without
// 8BITMIME.
var errNeeds8BitMIME = errors.New("message has 8-bit data")

func (in *instance) deliver(ctx context.Context, req *sdk.DeliverRequest) (res *sdk.DeliverResult, err error) {
	start := time.Now()
	d := &delivery{ctx: ctx, req: req, res: sdk.ResultAll(req, sdk.StatusTemporary, 0, "", ""), done: make([]bool, len(req.Recipients))}
	for i := range d.res.Recipients {
		d.res.Recipients[i].RemoteHost = in.s.host
	}
	reused := false
	defer func() {
		in.logResult(req, res, err, reused, time.Since(start))
	}()

	if !in.precheck(d) {
		return d.res, nil
	}
	if err := in.pool.acquire(ctx); err != nil {
		return nil, fmt.Errorf("waiting for a connection to %s: %w", in.s.addr, err)
	}
	defer in.pool.release()

	c, reused, err := in.connect(ctx)
	if err != nil {
		d.failSetup(err)
		return d.res, nil
	}
	for i := range d.res.Recipients {
		d.res.Recipients[i].RemoteIP = c.remoteIP
		d.res.Recipients[i].TLS = c.tls
	}
	keep, err := d.transact(c)
	if c.unbind() && keep {
		in.pool.put(c)
	} else {
		c.close()
	}
	if err != nil {
		return nil, err
	}
	return d.res, nil
}

// precheck fails the delivery for what needs no connection to know. It
// reports whether to go on.
func (in *instance) precheck(d *delivery) bool {
	if d.req.Options.RequireTLS && in.s.verification != sdk.VerifyPKIX {
		// RFC 8689 §4.2.1: only to a server whose certificate was verified.
		d.failPending(noReply, sdk.StatusPermanent, 0, "5.7.10", "REQUIRETLS: the smarthost connection is not TLS with a verified certificate (tls or insecure_skip_verify)")
		return false
	}
	if !smtpclient.ValidPath(d.req.From) {
		d.failPending(noReply, sdk.StatusPermanent, 0, "5.1.7", "sender address cannot be sent in SMTP")
		return false
	}
	for i, r := range d.req.Recipients {
		if !smtpclient.ValidPath(r.Address) || r.Address == "" {
			d.set(i, noReply, sdk.StatusPermanent, 0, "5.1.3", "recipient address cannot be sent in SMTP")
		}
	}
	return !d.allDone()
}

// connect returns an idle connection that answers RSET, as Postfix does
// before reusing a cached connection, or else a new one. The connection is
// bound to ctx.
func (in *instance) connect(ctx context.Context) (c *conn, reused bool, err error) {
	for c := in.pool.take(); c != nil; c = in.pool.take() {
		c.bind(ctx)
		r, err := c.Reset()
		if err == nil && r.Code == 250 {
			return c, true, nil
		}
		// Closed by the server while idle, most likely: not the message's
		// fault, so try the next one.
		c.close()
	}
	c, err = dial(ctx, in.s)
	return c, false, err
}

// transact runs the mail transaction (RFC 5321 §3.3) for the recipients not
// yet decided. keep says whether c can be reused. An error is the message
// stream failing.
func (d *delivery) transact(c *conn) (keep bool, err error) {
	req := d.req
	if !d.supported(c) {
		return true, nil
	}
	o := &req.Options
	r, err := c.Mail(req.From, &smtpclient.MailOptions{
		Size:       req.Size,
		Body:       o.Body,
		SMTPUTF8:   o.SMTPUTF8,
		RequireTLS: o.RequireTLS,
		DSNReturn:  o.DSNReturn,
		EnvelopeID: o.EnvelopeID,
	})
	if err != nil {
		d.failConn("MAIL FROM", err)
		return false, nil
	}
	if !r.Positive() {
		d.failReply(r, "MAIL FROM", sdk.StageMail)
		return true, nil
	}
	accepted := 0
	for i, rc := range req.Recipients {
		if d.done[i] {
			continue
		}
		r, err := c.Rcpt(rc.Address, &smtpclient.RcptOptions{Notify: rc.Notify, ORcpt: rc.ORcpt})
		if err != nil {
			d.failConn("RCPT TO", err)
			return false, nil
		}
		if r.Positive() {
			accepted++
		} else {
			d.set(i, sdk.StageRcpt, status(r), r.Code, r.EnhancedCode, r.Text)
		}
	}
	if accepted == 0 {
		r, err := c.Reset()
		return err == nil && r.Code == 250, nil
	}

	var msg io.Reader = strings.NewReader("")
	if req.Message != nil {
		msg = req.Message
	}
	src := &sourceReader{r: msg}
	if _, ok := c.Extension("8BITMIME"); !ok && strings.EqualFold(req.Options.Body, "8BITMIME") {
		// RFC 6152 §3: 8-bit data goes only to a server with 8BITMIME.
		// A message declared 8BITMIME is often 7-bit: send it as such, and
		// if it is not, abort the transaction by closing the connection
		// (RFC 5321 §3.3: the server must then discard it).
		src.sevenBit = true
	}
	if isBinary(req) {
		r, err = c.Bdat(src)
	} else {
		r, err = c.Data()
		if err != nil {
			d.failConn("DATA", err)
			return false, nil
		}
		if r.Code != 354 {
			d.failReply(r, "DATA", sdk.StageData)
			return true, nil
		}
		r, err = c.WriteData(src)
	}
	var serr *sourceError
	switch {
	case errors.Is(err, errNeeds8BitMIME):
		d.failPending(noReply, sdk.StatusPermanent, 0, "5.6.3", "message has 8-bit data and the smarthost does not offer 8BITMIME (RFC 6152 §3); it is not converted")
		return false, nil
	case errors.As(err, &serr):
		return false, fmt.Errorf("reading message: %w", serr.err)
	case err != nil:
		d.failConn("message data", err)
		return false, nil
	}
	d.failReply(r, "end of data", sdk.StageData)
	return true, nil
}

// supported fails every recipient if the message needs an extension the
// server does not offer, and reports whether to go on.
func (d *delivery) supported(c *conn) bool {
	opts := d.req.Options
	if opts.SMTPUTF8 {
		if _, ok := c.Extension("SMTPUTF8"); !ok {
			// RFC 6531 §3.2: not to a server without SMTPUTF8; no downgrade.
			enh := "5.6.9" // UTF-8 header message cannot be transferred (RFC 6531 §3.5).
			if !isASCII(d.req.From) || !d.asciiRecipients() {
				enh = "5.6.7" // Non-ASCII addresses not permitted.
			}
			d.failPending(noReply, sdk.StatusPermanent, 0, enh, "message requires SMTPUTF8, which the smarthost does not offer")
			return false
		}
	}
	if opts.RequireTLS {
		if _, ok := c.Extension("REQUIRETLS"); !ok {
			d.failPending(noReply, sdk.StatusPermanent, 0, "5.7.30", "message requires REQUIRETLS, which the smarthost does not offer (RFC 8689 §5)")
			return false
		}
	}
	if isBinary(d.req) {
		_, binary := c.Extension("BINARYMIME")
		_, chunking := c.Extension("CHUNKING")
		if !binary || !chunking {
			// RFC 3030 §3: no conversion here, so a non-delivery report.
			d.failPending(noReply, sdk.StatusPermanent, 0, "5.6.3", "message is BINARYMIME, which the smarthost does not offer with CHUNKING (RFC 3030 §3)")
			return false
		}
	}
	if v, ok := c.Extension("SIZE"); ok {
		if limit, err := strconv.ParseInt(v, 10, 64); err == nil && limit > 0 && d.req.Size > limit {
			d.failPending(noReply, sdk.StatusPermanent, 0, "5.3.4", fmt.Sprintf("message of %d bytes exceeds the smarthost's limit of %d (RFC 1870 §6.1)", d.req.Size, limit))
			return false
		}
	}
	return true
}

func (d *delivery) asciiRecipients() bool {
	for _, r := range d.req.Recipients {
		if !isASCII(r.Address) {
			return false
		}
	}
	return true
}

func isBinary(req *sdk.DeliverRequest) bool { return strings.EqualFold(req.Options.Body, "BINARYMIME") }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// status is what a reply to MAIL, RCPT or DATA means for the recipients it
// concerns (RFC 5321 §4.2.1).
func status(r smtpclient.Reply) sdk.Status {
	switch {
	case r.Positive():
		return sdk.StatusDelivered
	case r.Code == 530:
		// Authentication required (RFC 4954 §6): our configuration, not the
		// message, is at fault; keep the mail queued until it is fixed.
		return sdk.StatusTemporary
	case r.Code/100 == 5:
		return sdk.StatusPermanent
	}
	return sdk.StatusTemporary
}

// noReply is the stage of a result no reply decided.
const noReply sdk.Stage = 0

// set decides the result of recipient i, by a reply at stage or noReply.
func (d *delivery) set(i int, stage sdk.Stage, st sdk.Status, code int, enh, text string) {
	r := &d.res.Recipients[i]
	r.Stage, r.Status, r.Code, r.EnhancedCode, r.Text = stage, st, code, enh, text
	d.done[i] = true
}

func (d *delivery) allDone() bool {
	for _, done := range d.done {
		if !done {
			return false
		}
	}
	return true
}

// failPending decides every recipient not yet decided.
func (d *delivery) failPending(stage sdk.Stage, st sdk.Status, code int, enh, text string) {
	for i, done := range d.done {
		if !done {
			d.set(i, stage, st, code, enh, text)
		}
	}
}

// failReply decides every undecided recipient by the reply r to the named
// stage, which is at. A 2xx reply delivers only at the end of data.
func (d *delivery) failReply(r smtpclient.Reply, stage string, at sdk.Stage) {
	st := status(r)
	text := r.Text
	if stage != "end of data" {
		text = "smarthost replied to " + stage + ": " + r.Text
		if st == sdk.StatusDelivered {
			st = sdk.StatusTemporary
		}
	}
	d.failPending(at, st, r.Code, r.EnhancedCode, text)
}

// failConn fails the undecided recipients temporarily for a connection
// error during stage.
func (d *delivery) failConn(stage string, err error) {
	text := fmt.Sprintf("connection to smarthost failed during %s: %v", stage, err)
	if cerr := d.ctx.Err(); cerr != nil {
		text = fmt.Sprintf("delivery cancelled during %s: %v", stage, cerr)
	}
	d.failPending(noReply, sdk.StatusTemporary, 0, "4.4.2", text)
}

// failSetup fails every recipient for an error of dial or connect:
// temporarily, whatever the reply, since none is about the message.
func (d *delivery) failSetup(err error) {
	var se *setupError
	switch {
	case d.ctx.Err() != nil:
		d.failPending(noReply, sdk.StatusTemporary, 0, "4.4.2", fmt.Sprintf("delivery cancelled: %v", err))
	case errors.As(err, &se):
		d.failPending(se.stage, sdk.StatusTemporary, se.code, se.enh, se.text)
	default:
		d.failPending(noReply, sdk.StatusTemporary, 0, "4.4.2", err.Error())
	}
}

// sourceReader reads the message. Its errors are *sourceError, or
// errNeeds8BitMIME if sevenBit and the message has a byte over 127.
type sourceReader struct {
	r        io.Reader
	sevenBit bool
}

// sourceError is a failure to read the message from the core.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return "reading message: " + e.err.Error() }

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if s.sevenBit {
		for _, b := range p[:n] {
			if b >= 0x80 {
				return 0, errNeeds8BitMIME
			}
		}
	}
	if err != nil && err != io.EOF {
		return n, &sourceError{err}
	}
	return n, err
}

// logResult logs one line for the delivery attempt: at debug level, or as
// a warning for a failure that decided no recipient.
func (in *instance) logResult(req *sdk.DeliverRequest, res *sdk.DeliverResult, err error, reused bool, took time.Duration) {
	if err == nil && !in.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{
		slog.String("queueid", req.QueueID),
		slog.Int("attempt", req.Attempt),
		slog.String("remote", in.s.addr),
		slog.Int("recipients", len(req.Recipients)),
		slog.Bool("reused", reused),
		slog.Duration("duration", took),
	}
	if err != nil {
		attrs = append(attrs, slog.Any("err", err))
		in.log.LogAttrs(context.Background(), slog.LevelWarn, "delivery attempt failed", attrs...)
		return
	}
	var n [3]int
	reason := ""
	for _, r := range res.Recipients {
		n[r.Status]++
		if r.Status != sdk.StatusDelivered && reason == "" {
			reason = fmt.Sprintf("%d %s %s", r.Code, r.EnhancedCode, r.Text)
		}
	}
	attrs = append(attrs,
		slog.Int("delivered", n[sdk.StatusDelivered]),
		slog.Int("temporary", n[sdk.StatusTemporary]),
		slog.Int("permanent", n[sdk.StatusPermanent]),
	)
	if len(res.Recipients) > 0 {
		attrs = append(attrs, slog.String("tls", res.Recipients[0].TLS.Version), slog.String("verification", res.Recipients[0].TLS.Verification.String()))
	}
	if reason != "" {
		attrs = append(attrs, slog.String("reason", reason))
	}
	// The core logs each recipient's result: this line is for debugging.
	in.log.LogAttrs(context.Background(), slog.LevelDebug, "delivery attempt", attrs...)
}
