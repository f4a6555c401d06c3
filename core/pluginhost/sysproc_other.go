//go:build unix && !linux

package pluginhost

import "syscall"

// sysProcAttr puts a plugin in a process group of its own.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
