package queue

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// goroutineID is the calling goroutine's number, from its stack trace.
func goroutineID() string {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	id, _, _ := bytes.Cut(bytes.TrimPrefix(b, []byte("goroutine ")), []byte(" "))
	return string(id)
}

// TestWorkers: deliveries one after another reuse an idle worker; at once,
// each gets one; all end when the context does.
func TestWorkers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := newWorkers()
	var mu sync.Mutex
	ran := map[string]bool{} // Goroutines that ran deliveries.
	record := func() {
		mu.Lock()
		ran[goroutineID()] = true
		mu.Unlock()
	}
	for range 50 {
		done := make(chan struct{})
		w.run(ctx, func() { record(); close(done) })
		<-done
		time.Sleep(time.Millisecond) // Back to waiting for work.
	}
	if len(ran) > 2 {
		t.Errorf("%d goroutines ran 50 deliveries one after another, want 1", len(ran))
	}
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for range 10 {
		wg.Add(1)
		w.run(ctx, func() { defer wg.Done(); record(); <-gate })
	}
	close(gate)
	wg.Wait()
	if len(ran) < 10 {
		t.Errorf("%d goroutines ran 10 deliveries at once", len(ran))
	}
	cancel()
	alive := func() int {
		b := make([]byte, 1<<20)
		b = b[:runtime.Stack(b, true)]
		n := 0
		for id := range ran {
			if bytes.Contains(b, fmt.Appendf(nil, "goroutine %s [", id)) {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := alive(); n > 0 {
		t.Errorf("%d workers left after the context ended", n)
	}
}
