package smtpd

import (
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/switchyard-mta/switchyard/core/authlimit"
	"github.com/switchyard-mta/switchyard/core/config"
)

// Parallel guesses from one address get no more password checks than
// sequential ones: 60 connections sending a wrong AUTH PLAIN at once get
// at most MaxFailures 535 replies, the rest 421.
func TestAuthLimitParallel(t *testing.T) {
	limit := authlimit.New()
	limit.Delay, limit.MaxDelay = time.Millisecond, time.Millisecond
	ts := startServer(t, config.KindSubmissions, func(c *Config) { c.AuthLimit = limit })
	const n = 60
	clients := make([]*smtp.Client, n)
	for i := range clients {
		c, err := smtp.DialTLS(ts.addr, clientTLS(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Hello("client.example"); err != nil {
			t.Fatal(err)
		}
		clients[i] = c
	}
	codes := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, c := range clients {
		wg.Go(func() {
			<-start
			codes[i], _ = code(c.Auth(sasl.NewPlainClient("", "alice", "wrong")))
		})
	}
	close(start)
	wg.Wait()
	count := map[int]int{}
	for _, c := range codes {
		count[c]++
	}
	if count[535] > limit.MaxFailures || count[535]+count[421] != n {
		t.Fatalf("replies %v: want at most %d 535 and the rest 421", count, limit.MaxFailures)
	}
}
