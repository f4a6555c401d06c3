package imapd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/core/authlimit"
	"github.com/switchyard-mta/switchyard/core/config"
)

// Parallel guesses from one address get no more password checks than
// sequential ones: 60 connections sending a wrong LOGIN at once get at most
// MaxFailures NO [AUTHENTICATIONFAILED], the rest NO [UNAVAILABLE].
func TestAuthLimitParallel(t *testing.T) {
	limit := authlimit.New()
	limit.Delay, limit.MaxDelay = time.Millisecond, time.Millisecond
	ts := startServer(t, config.KindIMAPS, func(c *Config) { c.AuthLimit = limit })
	const n = 60
	conns := make([]*raw, n)
	for i := range conns {
		conns[i], _ = ts.dialRaw(t)
	}
	results := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, r := range conns {
		wg.Go(func() {
			<-start
			// Not r.cmd: t.Fatal is for the test's goroutine.
			r.nc.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := fmt.Fprintf(r.nc, "a LOGIN alice wrong\r\n"); err != nil {
				results[i] = err.Error()
				return
			}
			for {
				l, err := r.r.ReadString('\n')
				if err != nil {
					results[i] = err.Error()
					return
				}
				if res, ok := strings.CutPrefix(l, "a "); ok {
					results[i], _, _ = strings.Cut(res, "]")
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	count := map[string]int{}
	for _, r := range results {
		count[r]++
	}
	failed, refused := count["NO [AUTHENTICATIONFAILED"], count["NO [UNAVAILABLE"]
	if failed > limit.MaxFailures || failed+refused != n {
		t.Fatalf("replies %v: want at most %d AUTHENTICATIONFAILED and the rest UNAVAILABLE", count, limit.MaxFailures)
	}
}

// panickingLogin is fakeAccounts whose lookup of "boom" panics.
type panickingLogin struct{ fakeAccounts }

func (a panickingLogin) AccountByLogin(login string) (string, bool) {
	if login == "boom" {
		panic("login bug")
	}
	return a.fakeAccounts.AccountByLogin(login)
}

// A LOGIN that panics ends the connection, and its attempt is abandoned:
// the client's next one does not wait for it (core/authflow).
func TestAuthLimitPanic(t *testing.T) {
	limit := authlimit.New()
	limit.MaxFailures = 1
	ts := startServer(t, config.KindIMAPS, func(c *Config) { c.AuthLimit = limit; c.Accounts = panickingLogin{} })
	ts.errorsLogged = true // The panic's.
	r, _ := ts.dialRaw(t)
	r.write("a LOGIN boom secret")
	r.nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(r.r); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection not closed after the panic: %v", err)
	}
	r, _ = ts.dialRaw(t)
	// A leaked attempt would hold this one past r.cmd's 5 s read deadline.
	if _, res := r.cmd("LOGIN alice secret"); !strings.HasPrefix(res, "OK") {
		t.Fatalf("LOGIN after the panic: %q", res)
	}
}
