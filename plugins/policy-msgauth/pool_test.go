package policymsgauth

import (
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPool(t *testing.T) {
	p := newPool(2)

	// Idle goroutines take the work: none is started for it.
	var wg sync.WaitGroup
	ran := map[string]int{} // Calls by goroutine.
	for range 100 {
		for p.idle.Load() < 2 {
			runtime.Gosched() // Until both are back for more.
		}
		p.Go(&wg, func() { ran[goroutine()]++ })
		wg.Wait()
	}
	if len(ran) > 2 {
		t.Errorf("100 calls ran on %d goroutines, not the pool's 2: %v", len(ran), ran)
	}

	// With every goroutine of the pool busy, work still runs at once.
	block := make(chan struct{})
	var busy sync.WaitGroup
	p.Go(&busy, func() { <-block })
	p.Go(&busy, func() { <-block })
	defer close(block)
	done := make(chan struct{})
	go p.Go(new(sync.WaitGroup), func() { close(done) }) // Not on the test's goroutine: it may wait.
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("work waited for a busy pool")
	}
}

// goroutine returns the calling goroutine's ID, from its stack trace.
func goroutine() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := strings.Cut(strings.TrimPrefix(string(buf), "goroutine "), " ")
	return id
}
