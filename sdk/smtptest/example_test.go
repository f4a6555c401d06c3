package smtptest_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/switchyard-mta/switchyard/sdk/smtpclient"
	"github.com/switchyard-mta/switchyard/sdk/smtptest"
)

// A server offering STARTTLS and rejecting some recipients, and what it
// recorded of a delivery.
func Example() {
	t := &exampleTB{} // In a test, its *testing.T.
	defer t.cleanup()
	s := smtptest.NewServer(t, smtptest.Options{TLS: smtptest.StartTLS, DSN: true, Reply: smtptest.RejectByName})

	ctx := context.Background()
	c, err := smtpclient.Dial(ctx, s.Addr, &smtpclient.Config{EHLO: "client.example", TLS: smtpclient.TLSStartTLS, TLSConfig: s.ClientConfig()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	c.Mail("a@example.org", nil)
	for _, rcpt := range []string{"b@example.net", "reject@example.net"} {
		r, _ := c.Rcpt(rcpt, nil)
		fmt.Println(rcpt, r.Code, r.EnhancedCode)
	}
	c.Data()
	c.WriteData(strings.NewReader("Subject: hi\r\n\r\nHello\r\n"))

	m := s.Messages()[0]
	fmt.Println(m.From, m.To(), m.TLS != nil, len(m.Data))
	// Output:
	// b@example.net 250 2.0.0
	// reject@example.net 550 5.1.1
	// a@example.org [b@example.net] true 22
}

// exampleTB stands in for a test's *testing.T in examples.
type exampleTB struct {
	testing.TB
	cleanups []func()
}

func (e *exampleTB) Helper()                   {}
func (e *exampleTB) Cleanup(f func())          { e.cleanups = append(e.cleanups, f) }
func (e *exampleTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }

func (e *exampleTB) cleanup() {
	for _, f := range slices.Backward(e.cleanups) {
		f()
	}
}
