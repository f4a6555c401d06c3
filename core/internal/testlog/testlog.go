// Package testlog holds what tests need to read what a server logged while
// its connections run. For tests only: no production package imports it.
package testlog

import (
	"bytes"
	"sync"
)

// Buffer is a log destination safe for concurrent writes; the zero value
// is empty and ready.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
