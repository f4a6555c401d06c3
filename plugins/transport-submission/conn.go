package transportsubmission

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/smtpclient"
)

// conn is one connection to the smarthost, ready for mail transactions:
// greeted, TLS started and authenticated as configured.
type conn struct {
	*smtpclient.Client
	tls      sdk.TLSUse
	remoteIP string
	unbind   func() bool // Set by bind.
}

// setupError is a failure to make a connection ready, with what it means
// for the recipients: a temporary failure whatever the reply, since none is
// about the message.
type setupError struct {
	stage sdk.Stage // Of the reply; zero without one.
	code  int
	enh   string
	text  string
}

func (e *setupError) Error() string { return e.text }

// dial connects to the smarthost of s and authenticates if configured. The
// connection is bound to ctx (see bind). Errors are *setupError.
func dial(ctx context.Context, s *settings) (*conn, error) {
	sc, err := smtpclient.Dial(ctx, s.addr, &s.client)
	if err != nil {
		return nil, setupFailure(err, s, "")
	}
	c := &conn{Client: sc}
	c.bind(ctx)
	// Any failure, 535 (bad credentials) included, is temporary for the
	// recipients: the operator must fix the configuration, and the mail
	// stays queued meanwhile.
	if _, err := sc.Login(s.clientCert, s.username, s.password, s.mechanisms); err != nil {
		offered, _ := sc.Extension("AUTH")
		c.close()
		return nil, setupFailure(err, s, offered)
	}
	if a, ok := sc.RemoteAddr().(*net.TCPAddr); ok {
		c.remoteIP = a.IP.String()
	}
	if cs, ok := sc.TLSConnectionState(); ok {
		c.tls = sdk.TLSUse{
			Verification: s.verification,
			Version:      strings.ReplaceAll(tls.VersionName(cs.Version), " ", ""),
			Cipher:       tls.CipherSuiteName(cs.CipherSuite),
		}
	}
	return c, nil
}

// setupFailure describes an error of smtpclient.Dial or Authenticate for
// the recipients; offered is the smarthost's AUTH offer.
func setupFailure(err error, s *settings, offered string) *setupError {
	var re *smtpclient.ReplyError
	var cve *tls.CertificateVerificationError
	switch {
	case errors.As(err, &re) && re.Command == "greeting":
		return &setupError{sdk.StageConnect, re.Reply.Code, re.Reply.EnhancedCode, "smarthost greeted with " + re.Reply.String()}
	case errors.As(err, &re):
		return &setupError{sdk.StageHelo, re.Reply.Code, re.Reply.EnhancedCode, fmt.Sprintf("smarthost refused %s: %s", re.Command, re.Reply)}
	case errors.Is(err, smtpclient.ErrDial):
		return &setupError{0, 0, "4.4.1", err.Error()}
	case errors.As(err, &cve):
		return &setupError{0, 0, "4.7.5", fmt.Sprintf("TLS with %s: %v", s.host, err)} // Cryptographic failure (RFC 3463 §3.8).
	case errors.Is(err, smtpclient.ErrNoSTARTTLS):
		// RFC 3207 §4: TLS is required, so it never goes on in plaintext.
		return &setupError{0, 0, "4.7.10", "smarthost does not offer STARTTLS; not sending in plaintext"}
	case errors.Is(err, smtpclient.ErrNoAUTH):
		return &setupError{0, 0, "4.7.0", "smarthost does not offer AUTH; not sending unauthenticated"}
	case errors.Is(err, smtpclient.ErrNoMechanism):
		want := s.mechanisms
		if len(want) == 0 {
			want = smtpclient.Mechanisms()
		}
		return &setupError{0, 0, "4.7.0", fmt.Sprintf("smarthost offers AUTH %s, none of %s", offered, strings.Join(want, " "))}
	case errors.Is(err, smtpclient.ErrSASL):
		return &setupError{0, 0, "4.7.0", err.Error()}
	}
	return &setupError{0, 0, "4.4.2", err.Error()}
}

// bind closes the connection when ctx is done, ending any exchange at once.
func (c *conn) bind(ctx context.Context) { c.unbind = c.Bind(ctx) }

// close closes the connection without QUIT.
func (c *conn) close() {
	c.Close()
	if c.unbind != nil {
		c.unbind()
	}
}

// quit says QUIT, briefly, and closes the connection.
func (c *conn) quit() { c.Quit() }
