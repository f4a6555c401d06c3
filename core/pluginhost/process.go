package pluginhost

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/switchyard-mta/switchyard/sdk"
)

// Bounds of a plugin process's life outside its calls.
var (
	// startGrace is how much longer than startTimeout go-plugin may take
	// to start a process before its process group is killed.
	startGrace = 5 * time.Second
	// stopTimeout bounds a stop: go-plugin's graceful exit (2 s) and the
	// reaping of the process; then the process group is killed.
	stopTimeout = 3 * time.Second
)

// process is one plugin process as go-plugin runs it, in a process group
// of its own, so that a child the plugin leaves behind dies with it: such a
// child holding the plugin's stdout would otherwise keep go-plugin waiting
// for ever (it reads the pipe to its end before reaping the process).
type process struct {
	gp *plugin.Client
	// killGroup SIGKILLs the process group while the process runs: it
	// cancels the context of the exec.Cmd, whose Cancel does the kill.
	killGroup context.CancelFunc
	pid       int // Once started.
}

// newProcess prepares cc to run path with args in a process group of its
// own, told the core's log level (if set), and returns the go-plugin
// client.
func newProcess(cc *plugin.ClientConfig, path string, args []string, logLevel string) *process {
	kctx, kill := context.WithCancel(context.Background())
	cmd := exec.CommandContext(kctx, path, args...)
	if logLevel != "" {
		cmd.Env = append(os.Environ(), sdk.LogLevelEnv+"="+logLevel)
	}
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error {
		// Setpgid made the process the leader of a group of its pid.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cc.Cmd = cmd
	return &process{gp: plugin.NewClient(cc), killGroup: kill}
}

// start starts the process and does go-plugin's handshake; the process
// group is killed if that takes past startTimeout+startGrace or ctx ends
// first, so start always returns.
func (pr *process) start(ctx context.Context) (plugin.ClientProtocol, error) {
	type result struct {
		rpc plugin.ClientProtocol
		err error
	}
	done := make(chan result, 1)
	go func() {
		rpc, err := pr.gp.Client()
		done <- result{rpc, err}
	}()
	timer := time.NewTimer(startTimeout + startGrace)
	defer timer.Stop()
	var res result
	select {
	case res = <-done:
	case <-timer.C:
		pr.killGroup()
		res = <-done
		if res.err == nil {
			res.err = errors.New("start timed out")
		}
	case <-ctx.Done():
		pr.killGroup()
		res = <-done
		if res.err == nil {
			res.err = ctx.Err()
		}
	}
	if res.err != nil {
		// No handshake, so no graceful exit to wait for: go-plugin has
		// killed the process, and a child of it may hold its output.
		pr.killGroup()
		return nil, res.err
	}
	pr.pid, _ = strconv.Atoi(pr.gp.ID()) // The id of a command is its pid.
	return res.rpc, nil
}

// stop ends the process, gracefully if it exits within stopTimeout, and
// then kills what is left of its process group. It reports whether the
// process group had to be killed. It returns within 2*stopTimeout: if a
// process that left the group (setsid) still holds the plugin's output
// then, go-plugin is left waiting for it in the background.
func (pr *process) stop() (killed bool) {
	done := make(chan struct{})
	go func() {
		pr.gp.Kill()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(stopTimeout):
		pr.killGroup()
		killed = true
		select {
		case <-done:
		case <-time.After(stopTimeout):
		}
	}
	pr.killGroup() // Releases the context; a no-op once the process is reaped.
	if pr.pid > 0 {
		// Children the plugin left, with their pipes closed, outlive it.
		syscall.Kill(-pr.pid, syscall.SIGKILL)
	}
	return killed
}
