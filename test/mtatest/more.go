package mtatest

import (
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
)

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
