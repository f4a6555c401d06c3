package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of the CPU times in /proc/PID/stat (USER_HZ,
// 100 on Linux).
const clockTick = 10 * time.Millisecond

// processCPU returns the CPU time (user and system) used so far by process
// pid and by each of its children (the plugins of an mta serve), by command
// name; nil where /proc cannot be read.
func processCPU(pid int) map[string]time.Duration {
	if pid == 0 {
		return nil
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	cpu := map[string]time.Duration{}
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // The process ended.
		}
		// pid (comm) state ppid ... utime stime: comm may hold spaces.
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		self, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
		fields := strings.Fields(s[end+1:])
		if len(fields) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		if self != pid && ppid != pid {
			continue
		}
		utime, _ := strconv.ParseInt(fields[11], 10, 64)
		stime, _ := strconv.ParseInt(fields[12], 10, 64)
		cpu[s[open+1:end]] += time.Duration(utime+stime) * clockTick
	}
	if len(cpu) == 0 {
		return nil
	}
	return cpu
}

// cpuPerMessage formats the CPU each process used between before and
// after, per message of n, most first: "mta 310µs, transport-submi 95µs".
func cpuPerMessage(before, after map[string]time.Duration, n int) string {
	type use struct {
		name string
		d    time.Duration
	}
	var l []use
	var total time.Duration
	for name, d := range after {
		if d -= before[name]; d > 0 {
			l = append(l, use{name, d / time.Duration(n)})
			total += d
		}
	}
	if len(l) == 0 {
		return ""
	}
	sort.Slice(l, func(i, j int) bool { return l[i].d > l[j].d })
	parts := make([]string, len(l))
	for i, u := range l {
		parts[i] = fmt.Sprintf("%s %dµs", u.name, u.d.Microseconds())
	}
	return fmt.Sprintf("CPU per message %dµs: %s", (total / time.Duration(n)).Microseconds(), strings.Join(parts, ", "))
}
