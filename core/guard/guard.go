// Package guard keeps a panic in one unit of work (an SMTP session, a
// delivery, a DSN) from taking the whole server down: deferred Recover turns
// it into that unit's error, logged with its stack and counted.
package guard

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
)

// ErrPanic is the error of a unit of work that panicked. Callers treat it
// as a temporary failure: the unit is tried again, or the client told to.
var ErrPanic = errors.New("internal error")

var panics atomic.Int64

// Panics reports how many panics Recover has caught since the start.
func Panics() int64 { return panics.Load() }

// Recover, deferred, recovers a panic of the calling goroutine, logs it with
// its stack at error level as unit (e.g. "smtp session"), counts it and, if
// errp is not nil, sets *errp to an error wrapping ErrPanic. It must be the
// deferred function itself: `defer guard.Recover(log, "delivery", &err)`.
func Recover(log *slog.Logger, unit string, errp *error) {
	v := recover()
	if v == nil {
		return
	}
	panics.Add(1)
	if log == nil {
		log = slog.Default()
	}
	log.Error("panic recovered", slog.String("unit", unit), slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
	if errp != nil {
		*errp = fmt.Errorf("%s: %w: %v", unit, ErrPanic, v)
	}
}

// Go runs f in a new goroutine under Recover: a panic ends f, not the
// process.
func Go(log *slog.Logger, unit string, f func()) {
	go func() {
		defer Recover(log, unit, nil)
		f()
	}()
}
