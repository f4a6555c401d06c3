package mtatest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
)

// Sink is an SMTP server on loopback that accepts what it is sent and
// records it, standing in for a smarthost or a destination MX.
type Sink struct {
	Addr string // host:port

	// Reply, if set, decides the reply to a RCPT TO: nil accepts.
	Reply func(rcpt string) *smtp.SMTPError
	// KeepBodies records message bodies; off for benchmarks.
	KeepBodies bool

	srv      *smtp.Server
	mu       sync.Mutex
	msgs     []Message
	arrived  chan struct{} // Signalled (non-blocking) per message.
	count    atomic.Int64
	conns    atomic.Int64
	rcptSeen sync.Map // Recipient → number of RCPT TO commands seen.
}

// Message is one message a Sink accepted.
type Message struct {
	From       string
	Recipients []string
	Data       []byte // Nil unless KeepBodies.
	MailOpts   smtp.MailOptions
}

// StartSink starts a sink on a free loopback port. Close stops it.
func StartSink(keepBodies bool, reply func(rcpt string) *smtp.SMTPError) (*Sink, error) {
	return StartSinkAt("127.0.0.1:0", keepBodies, reply)
}

// StartSinkAt starts a sink listening on addr, a host:port chosen earlier
// (e.g. by FreeAddr, for a transport configured before the sink exists). It
// retries for a few seconds while the address is still in use.
func StartSinkAt(addr string, keepBodies bool, reply func(rcpt string) *smtp.SMTPError) (*Sink, error) {
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		ln, err = net.Listen("tcp", addr)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	s := &Sink{Addr: ln.Addr().String(), Reply: reply, KeepBodies: keepBodies, arrived: make(chan struct{}, 1)}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		s.conns.Add(1)
		return &sinkSession{sink: s}, nil
	}))
	s.srv.Domain = "sink.test"
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.MaxMessageBytes = 64 << 20
	s.srv.MaxRecipients = 10000
	s.srv.EnableSMTPUTF8 = true
	s.srv.EnableDSN = true
	go s.srv.Serve(ln)
	return s, nil
}

// Close stops the sink.
func (s *Sink) Close() { s.srv.Close() }

// Count is the number of messages accepted so far.
func (s *Sink) Count() int { return int(s.count.Load()) }

// Connections is the number of SMTP connections made to the sink.
func (s *Sink) Connections() int { return int(s.conns.Load()) }

// Attempts is how many times rcpt was given in RCPT TO.
func (s *Sink) Attempts(rcpt string) int {
	v, ok := s.rcptSeen.Load(rcpt)
	if !ok {
		return 0
	}
	return int(v.(*atomic.Int64).Load())
}

// Messages returns a copy of what was accepted.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// WaitCount waits until at least n messages arrived or timeout passed, and
// returns the count.
func (s *Sink) WaitCount(n int, timeout time.Duration) int {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if c := s.Count(); c >= n {
			return c
		}
		select {
		case <-s.arrived:
		case <-deadline.C:
			return s.Count()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type sinkSession struct {
	sink *Sink
	msg  Message
}

func (ss *sinkSession) Mail(from string, opts *smtp.MailOptions) error {
	ss.msg = Message{From: from}
	if opts != nil {
		ss.msg.MailOpts = *opts
	}
	return nil
}

func (ss *sinkSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	v, _ := ss.sink.rcptSeen.LoadOrStore(to, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
	if ss.sink.Reply != nil {
		if e := ss.sink.Reply(to); e != nil {
			return e
		}
	}
	ss.msg.Recipients = append(ss.msg.Recipients, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	if ss.sink.KeepBodies {
		var b bytes.Buffer
		if _, err := io.Copy(&b, r); err != nil {
			return err
		}
		ss.msg.Data = b.Bytes()
	} else if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s := ss.sink
	s.mu.Lock()
	s.msgs = append(s.msgs, ss.msg)
	s.mu.Unlock()
	s.count.Add(1)
	select {
	case s.arrived <- struct{}{}:
	default:
	}
	return nil
}

func (ss *sinkSession) Reset()        { ss.msg = Message{} }
func (ss *sinkSession) Logout() error { return nil }
