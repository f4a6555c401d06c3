package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// queueTarget is how long an operator's look at a large queue may take.
const queueTarget = 2 * time.Second

// queueBench fills a queue with n held messages (a hold rule for every new
// message keeps them there) and times what an operator runs against it
// through the running server: queue list, its JSON, a filter that selects
// one message, and queue show. Each is given against queueTarget. It also
// prints the server's resident memory with the queue full, and after a
// restart, which reads the queue back from disk.
func queueBench(bin *mtatest.Binaries, n, conns int, msg []byte) error {
	dir, err := os.MkdirTemp("", "switchyard-bench-queue-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	mx, sink := mtatest.FreeAddr(), mtatest.FreeAddr() // Nothing listens at sink: nothing is delivered.
	srv, err := mtatest.StartServer(bin, dir, config(mtatest.FreeAddr(), mx, bin.Plugins["transport-submission"], sink))
	if err != nil {
		return err
	}
	defer srv.Stop()
	mta := func(words []string, args ...string) (string, time.Duration, error) {
		start := time.Now()
		out, errOut, code := srv.MTA("", words, args...)
		if code != 0 {
			return "", 0, fmt.Errorf("mta %s %s: exit %d: %s", strings.Join(words, " "), strings.Join(args, " "), code, errOut)
		}
		return out, time.Since(start), nil
	}
	if _, _, err := mta([]string{"queue", "holdrule", "add"}); err != nil {
		return err
	}
	// The first and the last twentieth are timed apart: the enqueue rate
	// into the full queue, as a ratio to the rate into the empty one.
	part := n / 20
	var fill time.Duration
	var rates []float64
	for _, k := range []int{part, n - 2*part, part} {
		if k == 0 {
			continue
		}
		l := load{addr: mx, from: "app@" + benchDomain, to: "sink@example.net", n: k, conns: conns, msg: msg}
		d, err := l.send()
		if err != nil {
			return fmt.Errorf("filling the queue: %w", err)
		}
		fill += d
		rates = append(rates, float64(k)/d.Seconds())
	}
	fmt.Printf("\nqueue of %d held messages, filled at %.0f msg/s; server resident %s\n", n, float64(n)/fill.Seconds(), rss(srv.PID()))
	if part > 0 {
		verdict := "within"
		if rates[2] < 0.9*rates[0] {
			verdict = "under"
		}
		fmt.Printf("%-48s %7.0f msg/s  (×%.2f of %.0f msg/s into the empty queue; target ×0.90: %s)\n",
			fmt.Sprintf("enqueue, the last %d", part), rates[2], rates[2]/rates[0], rates[0], verdict)
	}

	out, d, err := mta([]string{"queue", "list"})
	if err != nil {
		return err
	}
	// A header line, then one line per message (each has one recipient).
	if lines := strings.Count(out, "\n"); lines != n+1 {
		return fmt.Errorf("queue list printed %d lines for %d messages", lines, n)
	}
	report("mta queue list", d)
	id := strings.Fields(strings.Split(out, "\n")[n/2+1])[0]
	if _, d, err = mta([]string{"queue", "list"}, "-json"); err != nil {
		return err
	}
	report("mta queue list -json", d)
	if out, d, err = mta([]string{"queue", "list"}, "-id", id); err != nil {
		return err
	} else if strings.Count(out, "\n") != 2 {
		return fmt.Errorf("queue list -id %s:\n%s", id, out)
	}
	report("mta queue list -id ID", d)
	if out, d, err = mta([]string{"queue", "show"}, id); err != nil {
		return err
	} else if !strings.Contains(out, id) {
		return fmt.Errorf("queue show %s:\n%s", id, out)
	}
	report("mta queue show ID", d)

	if err := srv.Stop(); err != nil {
		return err
	}
	start := time.Now()
	if err := srv.Start(); err != nil {
		return err
	}
	fmt.Printf("restart with the queue full: serving after %v; server resident %s\n", time.Since(start).Round(time.Millisecond), rss(srv.PID()))
	return nil
}

// report prints what took d against queueTarget.
func report(what string, d time.Duration) {
	verdict := "within"
	if d > queueTarget {
		verdict = "OVER"
	}
	fmt.Printf("%-48s %8v  (×%.2f of the %v target: %s)\n", what, d.Round(time.Millisecond), d.Seconds()/queueTarget.Seconds(), queueTarget, verdict)
}

// rss is the resident memory of process pid, from /proc; "?" where that
// cannot be read.
func rss(pid int) string {
	mib := statusMiB(pid, "VmRSS:")
	if mib == 0 {
		return "?"
	}
	return fmt.Sprintf("%.0f MiB", mib)
}
