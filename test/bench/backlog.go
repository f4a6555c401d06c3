package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchyard-mta/switchyard/core/queue"
	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// Targets of the queue at scale (the "Queue at scale"): a backlog
// of deferred messages must not cost memory, start-up time, enqueue rate,
// files in one directory or disk beyond these.
const (
	downDomain          = "down.test" // Routed to an address where nothing listens until the drain.
	backlogDueTarget    = 10 * time.Second
	backlogRSSTarget    = 300 // MiB.
	backlogEnqueueRatio = 0.90
	backlogDirTarget    = 10_000
	backlogDiskRatio    = 1.3
	// backlogDrainRatio is "at the relay rate" less the spread of a single
	// run's rate.
	backlogDrainRatio = 0.90
	backlogFillers    = 128 // Goroutines adding at once, as that many sessions would.
)

// backlogBench serves a queue of n messages of msg: all but k = min(1000,
// n/10) deferred 1 to 25 hours to downDomain, which is down, the k due at
// once to a sink. Through SMTP a million would take most of the bench's
// time, so the queue is written directly with the queue package while no
// server runs. It reports the time until the server listens (against
// queueTarget) and until the k are delivered, the core's memory with the
// queue full and at the end, the rate of m = min(20000, n/5) messages sent
// through SMTP to downDomain against the same into an empty queue, the most
// files in one directory and the disk use of the queue, and, once
// downDomain is back, how fast the m drain from `mta queue reschedule` on,
// against relayRate (the relay run's msg/s; 0 if it did not run).
func backlogBench(bin *mtatest.Binaries, n, conns int, msg []byte, relayRate float64) error {
	k, m := min(1000, n/10), min(20_000, n/5)
	if m == 0 {
		return fmt.Errorf("backlog: %d messages are too few", n)
	}
	dueSink, err := mtatest.StartSink(false, nil)
	if err != nil {
		return err
	}
	defer dueSink.Close()
	down := mtatest.FreeAddr()
	rcpt := "backlog@" + downDomain // The m sent through SMTP, for the drain's filter.
	enqueue := func(srv *mtatest.Server) (float64, error) {
		l := load{addr: srv.Listeners["mx"], from: "app@" + benchDomain, to: rcpt, n: m, conns: conns, msg: msg}
		d, err := l.send()
		if err != nil {
			return 0, fmt.Errorf("backlog: enqueue: %w", err)
		}
		return float64(m) / d.Seconds(), nil
	}

	// The references: a server of the same configuration on an empty
	// queue, restarted (the first start makes the data directory), then
	// the m into it.
	emptyDir, err := os.MkdirTemp("", "switchyard-bench-backlog-empty-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(emptyDir)
	srv, err := mtatest.StartServer(bin, emptyDir, backlogConfig(bin, dueSink.Addr, down))
	if err != nil {
		return err
	}
	defer srv.Stop()
	if err := srv.Stop(); err != nil {
		return err
	}
	start := time.Now()
	if err := srv.Start(); err != nil {
		return err
	}
	emptyListen := time.Since(start)
	emptyRate, err := enqueue(srv)
	if err != nil {
		return err
	}
	emptyRSS := statusMiB(srv.PID(), "VmRSS:")
	if err := srv.Stop(); err != nil {
		return err
	}
	os.RemoveAll(emptyDir)

	dir, err := os.MkdirTemp("", "switchyard-bench-backlog-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if srv, err = mtatest.StartServer(bin, dir, backlogConfig(bin, dueSink.Addr, down)); err != nil {
		return err
	}
	defer srv.Stop()
	if err := srv.Stop(); err != nil {
		return err
	}
	qdir := filepath.Join(dir, "data", "queue") // As core/server opens it, data_dir being "data".
	fill, err := fillBacklog(qdir, n, k, msg)
	if err != nil {
		return err
	}
	fmt.Printf("\nbacklog: %d messages of %d bytes, %d deferred 1 to 25 hours to %s (down), %d due to the sink;\n"+
		"written into the queue directly at %.0f msg/s (%v)\n", n, len(msg), n-k, downDomain, k, float64(n)/fill.Seconds(), fill.Round(time.Millisecond))

	start = time.Now()
	if err := srv.Start(); err != nil {
		return err
	}
	listen := time.Since(start)
	if got := dueSink.WaitCount(k, 5*time.Minute); got < k {
		return fmt.Errorf("backlog: the sink got %d of the %d due messages\n%s", got, k, tail(srv.Log(), 20))
	}
	due := time.Since(start)
	report(fmt.Sprintf("mta serve listening, %d queued", n), listen)
	fmt.Printf("%-48s listening after %v on the empty queue\n", "", emptyListen.Round(time.Millisecond))
	fmt.Printf("%-48s %8v  (×%.2f of the %v target: %s)\n", fmt.Sprintf("the %d due delivered, from the start", k),
		due.Round(time.Millisecond), due.Seconds()/backlogDueTarget.Seconds(), backlogDueTarget, verdict(due <= backlogDueTarget, "OVER"))
	reportRSS("core RSS, the queue full", srv.PID(), emptyRSS)

	fullRate, err := enqueue(srv)
	if err != nil {
		return err
	}
	fmt.Printf("%-48s %7.0f msg/s  (×%.2f of %.0f msg/s into the empty queue; target ×%.2f: %s)\n", fmt.Sprintf("enqueue, %d into the full queue", m),
		fullRate, fullRate/emptyRate, emptyRate, backlogEnqueueRatio, verdict(fullRate >= backlogEnqueueRatio*emptyRate, "under"))
	// Rescheduling a message while its first attempt runs would leave it
	// to that attempt's backoff: the drain waits until none runs.
	if err := waitAttempts(srv, rcpt); err != nil {
		return err
	}

	most, mostDir, used, err := queueFiles(qdir)
	if err != nil {
		return err
	}
	rel, _ := filepath.Rel(dir, mostDir)
	fmt.Printf("%-48s %7d  (%s; ×%.2f of the %d target: %s)\n", "files in one directory, most", most, rel,
		float64(most)/backlogDirTarget, backlogDirTarget, verdict(most <= backlogDirTarget, "OVER"))
	content := float64((n + m) * len(msg))
	fmt.Printf("%-48s %5.0f MiB  (×%.2f of the %.0f MiB of %d messages; target ×%.2f: %s)\n", "disk use of the queue", float64(used)/(1<<20),
		float64(used)/content, content/(1<<20), n+m, backlogDiskRatio, verdict(float64(used) <= backlogDiskRatio*content, "OVER"))

	// The destination comes back, and the operator makes the m due.
	back, err := mtatest.StartSinkAt(down, false, nil)
	if err != nil {
		return err
	}
	defer back.Close()
	start = time.Now()
	if out, errOut, code := srv.MTA("", []string{"queue", "reschedule"}, "-to", rcpt); code != 0 {
		return fmt.Errorf("backlog: mta queue reschedule: exit %d: %s%s", code, out, errOut)
	}
	resched := time.Since(start)
	if got := back.WaitCount(m, 5*time.Minute); got < m {
		return fmt.Errorf("backlog: the destination back got %d of %d\n%s", got, m, tail(srv.Log(), 20))
	}
	drain := time.Since(start)
	rate := float64(m) / drain.Seconds()
	against := "no relay rate in this run"
	if relayRate > 0 {
		against = fmt.Sprintf("×%.2f of the relay's %.0f msg/s; target ×%.2f: %s", rate/relayRate, relayRate, backlogDrainRatio, verdict(rate >= backlogDrainRatio*relayRate, "under"))
	}
	fmt.Printf("%-48s %7.0f msg/s  (%v, the reschedule %v; %s)\n", fmt.Sprintf("drain, %d to the destination back", m), rate,
		drain.Round(time.Millisecond), resched.Round(time.Millisecond), against)
	reportRSS("core RSS, at the end", srv.PID(), emptyRSS)
	return killDuringStart(srv, listen)
}

// killDuringStart kills srv with SIGKILL at points spread over twice a
// start (listen: how long one took), as its queue opens and its loader
// reads the messages due, then starts it and checks that the queue holds
// as many messages as before.
func killDuringStart(srv *mtatest.Server, listen time.Duration) error {
	queued := func() (int, error) {
		// A filter that matches nothing prints the count of all.
		out, errOut, code := srv.MTA("", []string{"queue", "list"}, "-id", "1")
		var n int
		if code != 0 {
			return 0, fmt.Errorf("backlog: mta queue list: exit %d: %s%s", code, out, errOut)
		} else if _, err := fmt.Sscanf(out, "no queued message matches (%d queued)", &n); err != nil {
			return 0, fmt.Errorf("backlog: mta queue list printed %q", out)
		}
		return n, nil
	}
	before, err := queued()
	if err != nil {
		return err
	}
	const kills = 8
	for i := range kills {
		srv.Kill()
		if _, err := srv.KillDuringStart(2 * listen * time.Duration(i) / kills); err != nil {
			return err
		}
	}
	if err := srv.Start(); err != nil {
		return err
	}
	after, err := queued()
	if err != nil {
		return err
	}
	fmt.Printf("%-48s %7d  (%d before; %s)\n", fmt.Sprintf("queued after kill -9 during start ×%d", kills), after, before, verdict(after == before, "LOST"))
	if after != before {
		return fmt.Errorf("backlog: %d messages queued after the kills, %d before", after, before)
	}
	return srv.Stop()
}

// backlogConfig serves inbound SMTP from loopback; downDomain goes to
// down, everything else to sink.
func backlogConfig(bin *mtatest.Binaries, sink, down string) string {
	port := func(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
	transport := func(name, addr string) string {
		return fmt.Sprintf("[transports.%s]\nplugin = \"transport-submission\"\n[transports.%s.config]\nhost = \"127.0.0.1\"\nport = %s\ntls = \"none\"\nmax_connections = 32\n", name, name, port(addr))
	}
	return configHead + fmt.Sprintf(`%s[plugins.transport-submission]
path = %q
%s%s[[routes]]
to_domains = [%q]
transport = "down"
[[routes]]
transport = "sink"
`, mxListener(mtatest.FreeAddr()), bin.Plugins["transport-submission"], transport("sink", sink), transport("down", down), downDomain)
}

// fillBacklog adds n messages of msg to the queue in dir, from
// backlogFillers goroutines: k of them, spread over the IDs, due at once to
// the sink, the others deferred, their release spread over 1 to 25 hours.
// It returns how long that took.
func fillBacklog(dir string, n, k int, msg []byte) (time.Duration, error) {
	ctx := context.Background()
	q, err := queue.Open(ctx, dir, queue.Options{}) // Not started: nothing is delivered.
	if err != nil {
		return 0, err
	}
	step := n / max(k, 1)
	now := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, backlogFillers)
	start := time.Now()
	for range backlogFillers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				env := queue.Envelope{From: "app@" + benchDomain, Recipients: []sdk.Recipient{{Address: "deferred@" + downDomain}},
					ReleaseAt: now.Add(time.Hour + time.Duration(i)*(24*time.Hour/time.Duration(n)))}
				if i%step == 0 && i/step < k {
					env = queue.Envelope{From: "app@" + benchDomain, Recipients: []sdk.Recipient{{Address: "due@example.net"}}}
				}
				s := q.NewSpool()
				if _, err := s.Write(msg); err != nil {
					s.Discard()
					errs <- err
					return
				}
				if _, err := q.Add(ctx, env, s); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	err = <-errs
	if cerr := q.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("backlog: filling the queue: %w", err)
	}
	return d, nil
}

// waitAttempts waits until no message to rcpt is being delivered.
func waitAttempts(srv *mtatest.Server, rcpt string) error {
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(500 * time.Millisecond) {
		out, errOut, code := srv.MTA("", []string{"queue", "list"}, "-to", rcpt, "-state", "delivering", "-json")
		if code != 0 {
			return fmt.Errorf("backlog: mta queue list: exit %d: %s", code, errOut)
		}
		var l []json.RawMessage
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			return fmt.Errorf("backlog: mta queue list -json: %v", err)
		}
		if len(l) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("backlog: %d messages to %s still being delivered after 5 minutes", len(l), rcpt)
		}
	}
}

// queueFiles returns the most entries in one directory under dir, that
// directory, and the disk space all under dir takes, as du counts it
// (allocated blocks, not sizes).
func queueFiles(dir string) (most int, mostDir string, used int64, err error) {
	entries := map[string]int{}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir {
			entries[filepath.Dir(path)]++
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			used += st.Blocks * 512
		}
		return nil
	})
	for d, c := range entries {
		if c > most {
			most, mostDir = c, d
		}
	}
	return most, mostDir, used, err
}

// reportRSS prints the resident memory of core process pid against
// backlogRSSTarget, with that of the server on the empty queue, and how
// much of it is the queue database's pages mapped from the page cache
// (file) rather than the process's own (anon).
func reportRSS(what string, pid int, empty float64) {
	mib := statusMiB(pid, "VmRSS:")
	fmt.Printf("%-48s %5.0f MiB  (empty queue %.0f MiB; ×%.2f of the %d MiB target: %s)\n", what, mib, empty,
		mib/backlogRSSTarget, backlogRSSTarget, verdict(mib <= backlogRSSTarget, "OVER"))
	fmt.Printf("%-48s anon %.0f MiB, file %.0f MiB\n", "", statusMiB(pid, "RssAnon:"), statusMiB(pid, "RssFile:"))
}

// statusMiB is the field of /proc/PID/status in MiB; 0 where it cannot
// be read.
func statusMiB(pid int, field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(v), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}

// verdict is "within" a target when ok, else miss ("OVER" for a bound,
// "under" for a floor), as the other runs print it.
func verdict(ok bool, miss string) string {
	if ok {
		return "within"
	}
	return miss
}
