package main

import (
	"context"
	"sync"
	"time"
)

// pool holds the connections of one instance to its smarthost, as Postfix's
// connection cache does: at most max at once, busy or idle; an idle one is
// reused most recently used first, and closed with QUIT after idleTimeout.
// A connection serves one delivery at a time.
type pool struct {
	slots       chan struct{} // One per delivery holding or dialing a connection.
	idleTimeout time.Duration

	mu     sync.Mutex
	idle   []*idleClient // Most recently used last.
	closed bool
}

type idleClient struct {
	c     *conn
	timer *time.Timer
}

func newPool(max int, idleTimeout time.Duration) *pool {
	return &pool{slots: make(chan struct{}, max), idleTimeout: idleTimeout}
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
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.idle)
	if n == 0 {
		return nil
	}
	ic := p.idle[n-1]
	p.idle = p.idle[:n-1]
	ic.timer.Stop() // If it fired, its func finds ic gone and does nothing.
	return ic.c
}

// put makes c idle, for reuse until the idle timeout. Call it before release.
func (p *pool) put(c *conn) {
	p.mu.Lock()
	if p.closed || len(p.idle) >= cap(p.slots) {
		p.mu.Unlock()
		go c.quit()
		return
	}
	ic := &idleClient{c: c}
	ic.timer = time.AfterFunc(p.idleTimeout, func() {
		if p.remove(ic) {
			c.quit()
		}
	})
	p.idle = append(p.idle, ic)
	p.mu.Unlock()
}

// remove removes ic from the idle connections and reports whether it was there.
func (p *pool) remove(ic *idleClient) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.idle {
		if x == ic {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			return true
		}
	}
	return false
}

// close closes the idle connections with QUIT, and those in use as they are
// put back.
func (p *pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	p.mu.Unlock()
	for _, ic := range idle {
		ic.timer.Stop()
		go ic.c.quit()
	}
}
