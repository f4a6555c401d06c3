package smtpclient

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"testing"
)

// Replies of sinkServer.
var (
	sinkGreeting = []byte("220 sink\r\n")
	sinkEHLO     = []byte("250-sink\r\n250-SIZE 100000000\r\n250-8BITMIME\r\n250 DSN\r\n")
	sinkOK       = []byte("250 2.1.0 ok\r\n")
	sinkGoAhead  = []byte("354 go ahead\r\n")
	sinkQueued   = []byte("250 2.0.0 queued\r\n")
)

// sinkServer answers every command at once and allocates little, so that
// allocations measured are the client's.
func sinkServer(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				c.Write(sinkGreeting)
				data := false
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						return
					}
					switch {
					case data:
						if bytes.Equal(line, []byte(".\r\n")) {
							data = false
							c.Write(sinkQueued)
						}
					case bytes.HasPrefix(line, []byte("EHLO")):
						c.Write(sinkEHLO)
					case bytes.HasPrefix(line, []byte("DATA")):
						data = true
						c.Write(sinkGoAhead)
					default:
						c.Write(sinkOK)
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// BenchmarkTransaction is the per-message path of a relay on a reused
// connection: RSET, MAIL, RCPT, DATA and a 4 KB message.
func BenchmarkTransaction(b *testing.B) {
	c := dial(b, sinkServer(b), &Config{})
	body := strings.Repeat("Line of text that is long enough to be typical.\r\n", 80)
	mopts := &MailOptions{Size: int64(len(body)), Body: "8BITMIME"}
	msg := strings.NewReader(body)
	b.ReportAllocs()
	for b.Loop() {
		if r, err := c.Reset(); err != nil || r.Code != 250 {
			b.Fatal(r, err)
		}
		if r, err := c.Mail("a@example.org", mopts); err != nil || r.Code != 250 {
			b.Fatal(r, err)
		}
		if r, err := c.Rcpt("b@example.net", nil); err != nil || r.Code != 250 {
			b.Fatal(r, err)
		}
		if r, err := c.Data(); err != nil || r.Code != 354 {
			b.Fatal(r, err)
		}
		msg.Reset(body)
		if r, err := c.WriteData(msg); err != nil || r.Code != 250 {
			b.Fatal(r, err)
		}
	}
}
