package queue

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestWorkers: deliveries one after another reuse an idle worker; at once,
// each gets one; all end when the context does.
func TestWorkers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := runtime.NumGoroutine()
	w := newWorkers()
	for range 50 {
		done := make(chan struct{})
		w.run(ctx, func() { close(done) })
		<-done
		time.Sleep(time.Millisecond) // Back to waiting for work.
	}
	if n := runtime.NumGoroutine() - base; n > 2 {
		t.Errorf("%d goroutines for 50 deliveries one after another, want 1", n)
	}
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for range 10 {
		wg.Add(1)
		w.run(ctx, func() { defer wg.Done(); <-gate })
	}
	if n := runtime.NumGoroutine() - base; n < 10 {
		t.Errorf("%d goroutines for 10 deliveries at once", n)
	}
	close(gate)
	wg.Wait()
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine() - base; n > 0 {
		t.Errorf("%d workers left after the context ended", n)
	}
}
