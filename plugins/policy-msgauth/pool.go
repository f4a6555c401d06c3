package policymsgauth

import (
	"sync"
	"sync/atomic"
)

// pool runs functions on goroutines that live on, as the gRPC stream
// workers do (see sdk.Serve): a lookup goroutine started per message would
// grow its stack by copying (runtime.morestack) every time, which cost
// policy-msgauth about a twelfth of its CPU. A function finding no idle
// goroutine gets a new one, so a busy pool never makes a check wait.
type pool struct {
	work chan func()
	idle atomic.Int32 // Goroutines that will take work next, unclaimed.
}

// newPool starts a pool of n goroutines.
func newPool(n int) *pool {
	p := &pool{work: make(chan func())}
	for range n {
		go func() {
			for {
				p.idle.Add(1)
				(<-p.work)()
			}
		}()
	}
	return p
}

// Go runs f as wg.Go would, on an idle goroutine of p if there is one. A
// caller claims one before it sends, so the send waits at most for that
// goroutine to reach its receive, never for one that is busy.
func (p *pool) Go(wg *sync.WaitGroup, f func()) {
	wg.Add(1)
	g := func() {
		defer wg.Done()
		f()
	}
	for {
		n := p.idle.Load()
		if n == 0 {
			go g()
			return
		}
		if p.idle.CompareAndSwap(n, n-1) {
			p.work <- g
			return
		}
	}
}
