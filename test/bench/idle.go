package main

import (
	"crypto/tls"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// idleTrials is how many deliveries the IDLE wake-up figure is the median
// of.
const idleTrials = 21

// imapServer is what the IDLE figures need of a server under test.
type imapServer struct {
	addr, login, pass string
	pid               int // The process whose PSS, with its children's, is the server's memory.
}

func dialIMAP(addr string, opts *imapclient.Options) (*imapclient.Client, error) {
	if opts == nil {
		opts = &imapclient.Options{}
	}
	opts.TLSConfig = &tls.Config{InsecureSkipVerify: true}
	return imapclient.DialStartTLS(addr, opts)
}

// idleWakeup returns the median time from the start of an APPEND in one
// session until the EXISTS it causes reaches another session idling on
// INBOX: the server's own path from a new message to a waiting client.
func idleWakeup(srv imapServer, msg []byte) (time.Duration, error) {
	exists := make(chan struct{}, 64)
	idler, err := dialIMAP(srv.addr, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- struct{}{}
			}
		},
	}})
	if err != nil {
		return 0, err
	}
	defer idler.Close()
	appender, err := dialIMAP(srv.addr, nil)
	if err != nil {
		return 0, err
	}
	defer appender.Close()
	for _, c := range []*imapclient.Client{idler, appender} {
		if err := c.Login(srv.login, srv.pass).Wait(); err != nil {
			return 0, err
		}
	}
	if _, err := idler.Select("INBOX", nil).Wait(); err != nil {
		return 0, err
	}
	var times []time.Duration
	for range idleTrials {
		idle, err := idler.Idle()
		if err != nil {
			return 0, err
		}
		start := time.Now()
		a := appender.Append("INBOX", int64(len(msg)), nil)
		if _, err := a.Write(msg); err != nil {
			return 0, err
		}
		if err := a.Close(); err != nil {
			return 0, err
		}
		select {
		case <-exists:
			times = append(times, time.Since(start))
		case <-time.After(10 * time.Second):
			return 0, fmt.Errorf("no EXISTS within 10s of an APPEND")
		}
		if _, err := a.Wait(); err != nil {
			return 0, err
		}
		if err := idle.Close(); err != nil {
			return 0, err
		}
		if err := idle.Wait(); err != nil {
			return 0, err
		}
		for len(exists) > 0 {
			<-exists
		}
	}
	slices.Sort(times)
	return times[len(times)/2], nil
}

// idleMemory opens n sessions that log in, select INBOX and IDLE, and
// returns the growth of the server's memory (PSS) divided by n.
func idleMemory(srv imapServer, n int) (int64, error) {
	before := totalPSS(srv.pid)
	var (
		mu       sync.Mutex
		clients  []*imapclient.Client
		idles    []*imapclient.IdleCommand
		firstErr error
		wg       sync.WaitGroup
	)
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	open := make(chan struct{}, n)
	for range n {
		open <- struct{}{}
	}
	close(open)
	for range 50 {
		wg.Go(func() {
			for range open {
				c, err := dialIMAP(srv.addr, nil)
				if err == nil {
					mu.Lock()
					clients = append(clients, c)
					mu.Unlock()
					err = c.Login(srv.login, srv.pass).Wait()
				}
				if err == nil {
					_, err = c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
				}
				var idle *imapclient.IdleCommand
				if err == nil {
					idle, err = c.Idle()
				}
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				} else if err == nil {
					idles = append(idles, idle)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, fmt.Errorf("after %d sessions: %w", len(idles), firstErr)
	}
	time.Sleep(time.Second) // Let the server settle: buffers freed, processes started.
	after := totalPSS(srv.pid)
	return (after - before) / int64(n), nil
}

// totalPSS is the PSS of pid and its children.
func totalPSS(pid int) int64 {
	var sum int64
	for _, m := range pss(pid) {
		sum += m.pss
	}
	return sum
}
