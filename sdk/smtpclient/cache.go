package smtpclient

import (
	"sync"
	"time"
)

// Cache keeps idle sessions for reuse, as Postfix's connection cache does:
// under a key that says what a session must be to be reused (its server
// and how it was protected), the most recently used first. Each is ended
// after the idle timeout; when the cache is full, the one idle longest
// makes room. Sessions are ended with the quit function given to
// NewCache, on a goroutine of their own. A Cache is safe for concurrent
// use.
type Cache[S any] struct {
	max         int
	idleTimeout time.Duration
	quit        func(S)

	mu     sync.Mutex
	idle   []*cached[S] // Idle longest first.
	closed bool
}

type cached[S any] struct {
	key   string
	s     S
	timer *time.Timer
}

// NewCache returns a cache of at most max sessions, each kept for
// idleTimeout, ended with quit.
func NewCache[S any](max int, idleTimeout time.Duration, quit func(S)) *Cache[S] {
	return &Cache[S]{max: max, idleTimeout: idleTimeout, quit: quit}
}

// Take removes the most recently used idle session of key from the cache
// and returns it; false if there is none.
func (c *Cache[S]) Take(key string) (s S, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.idle) - 1; i >= 0; i-- {
		if e := c.idle[i]; e.key == key {
			c.idle = append(c.idle[:i], c.idle[i+1:]...)
			e.timer.Stop() // If it fired, its func finds e gone and does nothing.
			return e.s, true
		}
	}
	return s, false
}

// Put makes s an idle session of key, to be taken until the idle timeout.
// A closed cache, or one of no room, ends s at once.
func (c *Cache[S]) Put(key string, s S) {
	c.mu.Lock()
	if c.closed || c.max <= 0 {
		c.mu.Unlock()
		go c.quit(s)
		return
	}
	if len(c.idle) >= c.max {
		old := c.idle[0]
		c.idle = append(c.idle[:0], c.idle[1:]...)
		old.timer.Stop()
		go c.quit(old.s)
	}
	e := &cached[S]{key: key, s: s}
	e.timer = time.AfterFunc(c.idleTimeout, func() {
		if c.remove(e) {
			c.quit(e.s)
		}
	})
	c.idle = append(c.idle, e)
	c.mu.Unlock()
}

// Len returns the number of idle sessions.
func (c *Cache[S]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.idle)
}

// remove removes e from the idle sessions and reports whether it was there.
func (c *Cache[S]) remove(e *cached[S]) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.idle {
		if x == e {
			c.idle = append(c.idle[:i], c.idle[i+1:]...)
			return true
		}
	}
	return false
}

// Close ends the idle sessions, and any put later.
func (c *Cache[S]) Close() {
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.closed = true
	c.mu.Unlock()
	for _, e := range idle {
		e.timer.Stop()
		go c.quit(e.s)
	}
}
