package transportsubmission

import (
	"context"
	"time"

	"github.com/switchyard-mta/switchyard/sdk/smtpclient"
)

// pool holds the connections of one instance to its smarthost: at most
// max at once, busy or idle; the idle ones in a connection cache, reused
// most recently used first and closed with QUIT after idleTimeout. A
// connection serves one delivery at a time.
type pool struct {
	slots chan struct{} // One per delivery holding or dialing a connection.
	idle  *smtpclient.Cache[*conn]
}

func newPool(max int, idleTimeout time.Duration) *pool {
	return &pool{slots: make(chan struct{}, max), idle: smtpclient.NewCache(max, idleTimeout, (*conn).quit)}
}

// acquire waits for a slot. Call release when done with the connection.
func (p *pool) acquire(ctx context.Context) error {
	select {
	case p.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *pool) release() { <-p.slots }

// take returns the most recently used idle connection, or nil.
func (p *pool) take() *conn {
	c, _ := p.idle.Take("")
	return c
}

// put makes c idle, for reuse until the idle timeout. Call it before release.
func (p *pool) put(c *conn) { p.idle.Put("", c) }

// close closes the idle connections with QUIT, and those in use as they are
// put back.
func (p *pool) close() { p.idle.Close() }
