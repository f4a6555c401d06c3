//go:build !linux

package queue

import "os"

// datasync writes f's data to stable storage.
func datasync(f *os.File) error {
	return f.Sync()
}
