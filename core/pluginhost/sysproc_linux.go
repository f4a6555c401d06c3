package pluginhost

import "syscall"

// sysProcAttr puts a plugin in a process group of its own, and has the
// kernel SIGKILL it if the core dies without stopping it (kill -9).
// Pdeathsig reaches the plugin process only, not its children, and comes
// when the OS thread that forked it ends, not the core: Go ends a thread
// before the process only when a goroutine locked to it (LockOSThread)
// returns without unlocking, which the core does not do; a plugin killed so
// would be restarted by its supervisor.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
