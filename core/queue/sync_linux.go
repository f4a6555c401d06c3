package queue

import (
	"os"
	"syscall"
)

// datasync writes f's data to stable storage with the metadata needed to
// read it back, such as its size, but not the rest, such as its times
// (fdatasync(2)): one journal commit less than fsync on ext4.
func datasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		for {
			if serr = syscall.Fdatasync(int(fd)); serr != syscall.EINTR {
				return
			}
		}
	})
	if err == nil && serr != nil {
		err = &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return err
}
