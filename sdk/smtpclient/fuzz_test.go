package smtpclient

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// pipeDialer hands out the client end of a pipe whose server end sends
// script and reads whatever the client writes.
type pipeDialer struct{ script []byte }

func (p pipeDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	client, server := net.Pipe()
	go io.Copy(io.Discard, server)
	go func() {
		server.Write(p.script)
		server.Close()
	}()
	return client, nil
}

// FuzzSession plays a hostile server: whatever it sends as greeting, EHLO
// reply and replies, a session set up with it and sent a transaction, a
// RSET and a QUIT returns replies of valid codes and single-line text, or
// errors; never a panic or a hang.
func FuzzSession(f *testing.F) {
	f.Add([]byte("220 mx.test ESMTP\r\n250-mx.test\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250 PIPELINING\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n250 2.0.0 queued\r\n250 ok\r\n221 bye\r\n"))
	f.Add([]byte("220 x\r\n250 x\r\n421 4.4.2 idle\r\n250 ok\r\n"))
	f.Add([]byte("220-a\r\n220-b\r\n220 c\r\n502 no\r\n250 helo\r\n550-5.1.1 no\r\n550-5.1.1 such\r\n550 5.1.1 user\r\n"))
	f.Add([]byte("220 x\n250-X\n2500\n"))
	f.Add([]byte("220 x\r\n250 x\r\n" + strings.Repeat("250-", 300) + "\r\n"))
	f.Fuzz(func(t *testing.T, script []byte) {
		cfg := &Config{EHLO: "client.test", Dialer: pipeDialer{script}, Timeouts: Timeouts{Connect: time.Second, Command: time.Second, DataEnd: time.Second, Quit: time.Second}}
		c, err := Dial(context.Background(), "mx.test:25", cfg)
		if err != nil {
			return
		}
		defer c.Close()
		for k, v := range c.Extensions() {
			if k != strings.ToUpper(k) || strings.ContainsAny(k+v, "\r\n") {
				t.Fatalf("extension %q %q", k, v)
			}
		}
		steps := []func() (Reply, error){
			func() (Reply, error) { return c.Mail("a@example.org", &MailOptions{Size: 10}) },
			func() (Reply, error) { return c.Rcpt("b@example.org", nil) },
			func() (Reply, error) { return c.Data() },
			func() (Reply, error) { return c.WriteData(strings.NewReader("Subject: x\r\n\r\n.body\r\n")) },
			c.Reset,
		}
		for _, step := range steps {
			r, err := step()
			if err != nil {
				return
			}
			if r.Code < 200 || r.Code > 599 || strings.ContainsAny(r.Text+r.EnhancedCode, "\r\n") {
				t.Fatalf("reply %+v", r)
			}
			if r.EnhancedCode != "" && !isEnhancedCode(r.EnhancedCode, r.Code) {
				t.Fatalf("enhanced code %q for %d", r.EnhancedCode, r.Code)
			}
		}
		c.Quit()
	})
}
