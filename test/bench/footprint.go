package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// Targets of the idle footprint (issue 13): core and plugins together, and
// each plugin's start.
const (
	footprintTarget = 100 << 20
	pluginStartGoal = 100 * time.Millisecond
)

// footprintBench starts the shipped mta.toml, its listeners on free ports,
// with every first-party plugin (the policy checks too), lets it settle and
// reports the proportional set size (PSS: shared pages counted in part) of
// the core and each plugin, and how long each plugin took to start: all at
// once, as there, and then each alone.
func footprintBench(bin *mtatest.Binaries) error {
	shipped, err := os.ReadFile("mta.toml")
	if err != nil {
		return fmt.Errorf("footprint: %w (run the bench from the repository's top directory)", err)
	}
	dir, err := os.MkdirTemp("", "switchyard-footprint-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	key := filepath.Join(dir, "dkim.pem")
	if out, err := exec.Command(bin.MTA, "dkim", "gen", "localhost", "s1", key).CombinedOutput(); err != nil {
		return fmt.Errorf("footprint: mta dkim gen: %v: %s", err, out)
	}
	cfg, err := footprintConfig(string(shipped), bin, key)
	if err != nil {
		return err
	}
	srv, err := mtatest.StartServer(bin, dir, cfg)
	if err != nil {
		return fmt.Errorf("footprint: %w", err)
	}
	defer srv.Stop()
	time.Sleep(2 * time.Second) // Past start-up's garbage.

	procs := pss(srv.PID())
	var total int64
	var parts []string
	for _, p := range procs {
		total += p.pss
		parts = append(parts, fmt.Sprintf("%s %.1f", p.name, float64(p.pss)/(1<<20)))
	}
	verdict := "within"
	if total > footprintTarget {
		verdict = "over"
	}
	fmt.Printf("\nidle footprint, the shipped mta.toml with every first-party plugin (%d processes)\n", len(procs))
	fmt.Printf("%-48s %5.1f MiB  (×%.2f of the %d MiB target: %s)\n", "PSS, core and plugins", float64(total)/(1<<20), float64(total)/footprintTarget, footprintTarget>>20, verdict)
	fmt.Printf("%-48s %s (MiB)\n", "", strings.Join(parts, ", "))
	starts := pluginStarts(srv.Log())
	if len(starts) == 0 {
		return fmt.Errorf("footprint: no \"plugin started\" lines in the log:\n%s", tail(srv.Log(), 20))
	}
	reportStarts(starts, "all started at once")

	// Each plugin alone.
	solo := make([]pluginStart, len(starts))
	for i, st := range starts {
		d, err := soloStart(bin, st.name, key)
		if err != nil {
			return err
		}
		solo[i] = pluginStart{st.name, d}
	}
	reportStarts(solo, "each alone")
	return nil
}

// reportStarts prints the slowest of starts against the goal, how they
// started, and each.
func reportStarts(starts []pluginStart, how string) {
	var slowest time.Duration
	var parts []string
	for _, s := range starts {
		slowest = max(slowest, s.d)
		parts = append(parts, fmt.Sprintf("%s %v", s.name, s.d.Round(time.Millisecond)))
	}
	verdict := "within"
	if slowest > pluginStartGoal {
		verdict = "over"
	}
	fmt.Printf("%-48s %5v  (×%.2f of the %v target: %s; %s)\n", "plugin start, slowest", slowest.Round(time.Millisecond), float64(slowest)/float64(pluginStartGoal), pluginStartGoal, verdict, how)
	fmt.Printf("%-48s %s\n", "", strings.Join(parts, ", "))
}

// soloStart starts a server with plugin name alone (and what it needs to
// be configured) and returns how long the plugin took to start.
func soloStart(bin *mtatest.Binaries, name, dkimKey string) (time.Duration, error) {
	dir, err := os.MkdirTemp("", "switchyard-solo-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	cfg := fmt.Sprintf(`hostname = "localhost"
data_dir = "data"
[tls]
self_signed = true
[[listeners]]
name = "mx"
kind = "smtp"
address = %q
[plugins.%s]
path = %q
`, mtatest.FreeAddr(), name, bin.Plugins[name])
	switch {
	case name == "transport-submission":
		cfg += "[transports.t]\nplugin = \"transport-submission\"\n[transports.t.config]\nhost = \"127.0.0.1\"\nport = 2525\ntls = \"none\"\n"
	case strings.HasPrefix(name, "transport-"):
		cfg += fmt.Sprintf("[transports.t]\nplugin = %q\n", name)
	case name == "policy-dkimsign":
		cfg += fmt.Sprintf("[policies.p]\nplugin = %q\n[[policies.p.config.keys]]\ndomain = \"localhost\"\nselector = \"s1\"\nkey_file = %q\n", name, dkimKey)
	case strings.HasPrefix(name, "policy-"):
		cfg += fmt.Sprintf("[policies.p]\nplugin = %q\n", name)
	}
	srv, err := mtatest.StartServer(bin, dir, cfg)
	if err != nil {
		return 0, fmt.Errorf("footprint: %s alone: %w", name, err)
	}
	defer srv.Stop()
	starts := pluginStarts(srv.Log())
	if len(starts) != 1 {
		return 0, fmt.Errorf("footprint: %s alone: %d \"plugin started\" lines:\n%s", name, len(starts), tail(srv.Log(), 20))
	}
	return starts[0].d, nil
}

// footprintConfig is the shipped configuration with free listener ports, a
// data directory of its own, the built plugins, and policy-msgauth and
// policy-dkimsign on the mx and submission listeners.
func footprintConfig(shipped string, bin *mtatest.Binaries, dkimKey string) (string, error) {
	var out []string
	listener := ""
	for _, line := range strings.Split(shipped, "\n") {
		t := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(t, "data_dir ="):
			line = `data_dir = "data"`
		case strings.HasPrefix(t, "name =") && listener == "?":
			listener, _ = strconv.Unquote(strings.TrimSpace(strings.TrimPrefix(t, "name =")))
		case t == "[[listeners]]":
			listener = "?"
		case strings.HasPrefix(t, "["):
			listener = ""
		}
		if strings.HasPrefix(t, "address =") && listener != "" {
			line = fmt.Sprintf("address = %q", mtatest.FreeAddr())
			switch listener {
			case "mx":
				line += "\npolicies = [\"msgauth\"]"
			case "submission":
				line += "\npolicies = [\"dkim\"]"
			}
		}
		if v, ok := strings.CutPrefix(t, "path = \"bin/plugins/"); ok {
			name := strings.TrimSuffix(v, "\"")
			p := bin.Plugins[name]
			if p == "" {
				return "", fmt.Errorf("footprint: the shipped mta.toml names plugin %s, which was not built", name)
			}
			line = fmt.Sprintf("path = %q", p)
		}
		out = append(out, line)
	}
	out = append(out, fmt.Sprintf(`
[plugins.policy-msgauth]
path = %q
[policies.msgauth]
plugin = "policy-msgauth"
[plugins.policy-dkimsign]
path = %q
[policies.dkim]
plugin = "policy-dkimsign"
[[policies.dkim.config.keys]]
domain = "localhost"
selector = "s1"
key_file = %q
`, bin.Plugins["policy-msgauth"], bin.Plugins["policy-dkimsign"], dkimKey))
	return strings.Join(out, "\n"), nil
}

type procMem struct {
	name string
	pss  int64 // Bytes.
}

// pss returns the PSS of process pid and of each of its children, by
// /proc/PID/smaps_rollup, the core first.
func pss(pid int) []procMem {
	read := func(p int) (procMem, bool) {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p))
		if err != nil {
			return procMem{}, false
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", p))
		if err != nil {
			return procMem{}, false
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "Pss:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				if err == nil {
					return procMem{strings.TrimSpace(string(comm)), kb << 10}, true
				}
			}
		}
		return procMem{}, false
	}
	var l []procMem
	if m, ok := read(pid); ok {
		l = append(l, m)
	}
	// Each thread lists the children it started.
	var children []string
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		children = append(children, strings.Fields(string(b))...)
	}
	var kids []procMem
	for _, f := range children {
		if c, err := strconv.Atoi(f); err == nil {
			if m, ok := read(c); ok {
				kids = append(kids, m)
			}
		}
	}
	sort.Slice(kids, func(i, j int) bool { return kids[i].name < kids[j].name })
	return append(l, kids...)
}

type pluginStart struct {
	name string
	d    time.Duration
}

var startedLine = regexp.MustCompile(`msg="plugin started".*\bplugin=(\S+).*\bduration=(\S+)`)

// pluginStarts reads each plugin's start time from the core's log.
func pluginStarts(log string) []pluginStart {
	var l []pluginStart
	for _, line := range strings.Split(log, "\n") {
		if m := startedLine.FindStringSubmatch(line); m != nil {
			if d, err := time.ParseDuration(m[2]); err == nil {
				l = append(l, pluginStart{m[1], d})
			}
		}
	}
	sort.Slice(l, func(i, j int) bool { return l[i].name < l[j].name })
	return l
}
