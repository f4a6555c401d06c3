package pluginhost

import "syscall"

// sysProcAttr puts a plugin in a process group of its own, and has the
// kernel SIGKILL it if the core dies without stopping it (kill -9). The
// signal comes when the thread that started the plugin ends; Go ends its
// threads only with the process (none of ours is locked to a goroutine).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
