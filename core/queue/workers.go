package queue

import (
	"context"
	"time"
)

// workerIdle is how long a delivery worker waits for another delivery
// before it ends.
const workerIdle = 30 * time.Second

// workers run deliveries on goroutines that live on between them. A
// delivery goes deep (a gRPC stream to the transport, protobuf), and the
// stack of a new goroutine for each would grow by copying
// (runtime.morestack) every time. There are never more workers than
// deliveries ever ran at once (Options.MaxParallel bounds them).
type workers struct {
	work chan func() // Unbuffered: a send succeeds only to an idle worker.
}

func newWorkers() workers { return workers{work: make(chan func())} }

// run runs f on an idle worker, or on a new one if none is idle. Workers
// end when idle for workerIdle, or when ctx is done.
func (w workers) run(ctx context.Context, f func()) {
	select {
	case w.work <- f:
	default:
		go w.loop(ctx, f)
	}
}

func (w workers) loop(ctx context.Context, f func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		f()
		idle.Reset(workerIdle)
		select {
		case f = <-w.work:
		case <-idle.C:
			return
		case <-ctx.Done():
			return
		}
	}
}
