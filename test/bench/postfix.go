package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// postfix is a private Postfix instance (its own configuration and queue
// directories) that relays everything from loopback to a relay host: the
// reference MTA of the benchmark.
type postfix struct {
	dir  string
	Addr string // Its smtpd listener.
}

// startPostfix starts an instance listening on addr relaying to relayHost
// (host:port). It needs Debian's postfix package and root, as Postfix does.
func startPostfix(addr, relayHost string) (*postfix, error) {
	if _, err := exec.LookPath("postfix"); err != nil {
		return nil, errors.New("postfix not installed (apt-get install postfix)")
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("running a Postfix instance needs root")
	}
	dir, err := os.MkdirTemp("", "switchyard-bench-postfix-")
	if err != nil {
		return nil, err
	}
	p := &postfix{dir: dir, Addr: addr}
	etc := filepath.Join(dir, "etc")
	for _, d := range []string{etc, filepath.Join(dir, "spool"), filepath.Join(dir, "lib")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	master, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		return nil, err
	}
	// The stock smtpd service line, moved to our address.
	lines := strings.Split(string(master), "\n")
	found := false
	for i, l := range lines {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "smtp" && f[1] == "inet" {
			lines[i] = addr + strings.TrimPrefix(l, "smtp")
			found = true
		}
	}
	if !found {
		return nil, errors.New("no smtp inet service in /etc/postfix/master.cf")
	}
	if err := os.WriteFile(filepath.Join(etc, "master.cf"), []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(etc, "main.cf"), nil, 0o644); err != nil {
		return nil, err
	}
	settings := []string{
		"compatibility_level=3.6",
		"queue_directory=" + filepath.Join(dir, "spool"),
		"data_directory=" + filepath.Join(dir, "lib"),
		"maillog_file=" + filepath.Join(dir, "maillog"),
		"maillog_file_prefixes=" + dir,
		"inet_interfaces=127.0.0.1",
		"inet_protocols=ipv4",
		"myhostname=postfix.bench.test",
		"mydestination=",
		"relayhost=[" + strings.Replace(relayHost, ":", "]:", 1),
		"mynetworks=127.0.0.0/8",
		"smtpd_relay_restrictions=permit_mynetworks,reject",
		"smtpd_tls_security_level=none",
		"smtp_tls_security_level=none",
		"message_size_limit=52428800",
	}
	steps := [][]string{
		append([]string{"postconf", "-c", etc, "-e"}, settings...),
		{"postconf", "-c", etc, "-F", "*/*/chroot = n"},
		{"chown", "postfix", filepath.Join(dir, "lib")},
		{"postfix", "-c", etc, "check"},
		{"postfix", "-c", etc, "start"},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			p.Stop()
			return nil, fmt.Errorf("%s: %v: %s (log: %s)", strings.Join(s, " "), err, out, p.log())
		}
	}
	return p, nil
}

func (p *postfix) log() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "maillog"))
	return tail(string(b), 10)
}

// Stop stops the instance and removes its directories.
func (p *postfix) Stop() {
	exec.Command("postfix", "-c", filepath.Join(p.dir, "etc"), "stop").Run()
	os.RemoveAll(p.dir)
}
