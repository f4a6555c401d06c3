package smtpclient

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// quitLog records the sessions a cache ended.
type quitLog struct {
	mu    sync.Mutex
	ended []string
	ch    chan string
}

func newQuitLog() *quitLog { return &quitLog{ch: make(chan string, 16)} }

func (q *quitLog) quit(s string) {
	q.mu.Lock()
	q.ended = append(q.ended, s)
	q.mu.Unlock()
	q.ch <- s
}

func (q *quitLog) wait(t *testing.T, want string) {
	t.Helper()
	select {
	case s := <-q.ch:
		if s != want {
			t.Fatalf("ended %q, want %q", s, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%q not ended", want)
	}
}

func TestCacheTakeByKey(t *testing.T) {
	q := newQuitLog()
	c := NewCache(10, time.Minute, q.quit)
	defer c.Close()
	c.Put("a", "a1")
	c.Put("b", "b1")
	c.Put("a", "a2")
	if s, ok := c.Take("a"); !ok || s != "a2" {
		t.Fatalf("Take(a) = %q, %v; want the most recently used, a2", s, ok)
	}
	if s, ok := c.Take("a"); !ok || s != "a1" {
		t.Fatalf("Take(a) = %q, %v; want a1", s, ok)
	}
	if s, ok := c.Take("a"); ok {
		t.Fatalf("Take(a) = %q from an empty key", s)
	}
	if s, ok := c.Take("b"); !ok || s != "b1" {
		t.Fatalf("Take(b) = %q, %v", s, ok)
	}
	if c.Len() != 0 {
		t.Fatalf("Len = %d after taking all", c.Len())
	}
}

func TestCacheIdleTimeout(t *testing.T) {
	q := newQuitLog()
	c := NewCache(10, 50*time.Millisecond, q.quit)
	defer c.Close()
	c.Put("a", "a1")
	q.wait(t, "a1")
	if s, ok := c.Take("a"); ok {
		t.Fatalf("Take = %q after the idle timeout", s)
	}
	// One taken before its timeout is not ended by the timer.
	c.Put("a", "a2")
	if _, ok := c.Take("a"); !ok {
		t.Fatal("a2 not taken")
	}
	time.Sleep(150 * time.Millisecond)
	q.mu.Lock()
	defer q.mu.Unlock()
	if slices.Contains(q.ended, "a2") {
		t.Fatal("a taken session was ended by its idle timer")
	}
}

func TestCacheFullEndsIdleLongest(t *testing.T) {
	q := newQuitLog()
	c := NewCache(2, time.Minute, q.quit)
	defer c.Close()
	c.Put("a", "a1")
	c.Put("b", "b1")
	c.Put("c", "c1")
	q.wait(t, "a1")
	if c.Len() != 2 {
		t.Fatalf("Len = %d, want 2", c.Len())
	}
	if _, ok := c.Take("a"); ok {
		t.Fatal("the evicted session was taken")
	}
	for _, k := range []string{"b", "c"} {
		if _, ok := c.Take(k); !ok {
			t.Fatalf("%s not kept", k)
		}
	}
}

func TestCacheClose(t *testing.T) {
	q := newQuitLog()
	c := NewCache(10, time.Minute, q.quit)
	c.Put("a", "a1")
	c.Close()
	q.wait(t, "a1")
	c.Put("a", "a2")
	q.wait(t, "a2")
	if _, ok := c.Take("a"); ok {
		t.Fatal("a closed cache kept a session")
	}
	// A cache of no room keeps nothing.
	z := NewCache(0, time.Minute, q.quit)
	z.Put("a", "z1")
	q.wait(t, "z1")
}
