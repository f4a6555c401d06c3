package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/switchyard-mta/switchyard/core/certs"
	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// imapAppends is how many messages the APPEND figure appends.
const imapAppends = 1000

// imapBench times the same IMAP commands against a mailbox of n messages
// in Switchyard and in Dovecot (Debian's dovecot-imapd, configured here;
// skipped where it cannot run), both over STARTTLS, and prints each time
// with its ratio to Dovecot's (target: at most ×2, and ahead on APPEND).
// Then the IDLE figures: wake-up latency, and the memory of idleN idle
// sessions (see idleWakeup, idleMemory).
func imapBench(bin *mtatest.Binaries, n, conns, idleN int, msg []byte) error {
	fmt.Printf("\nIMAP: a mailbox of %d messages of %d bytes, Switchyard against Dovecot\n", n, len(msg))
	dv, err := startDovecot(n, msg)
	if err != nil {
		fmt.Printf("%-48s skipped: %v\n", "dovecot", err)
		return nil
	}
	defer dv.stop()

	dir, err := os.MkdirTemp("", "switchyard-bench-imap-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	mx, imapAddr := mtatest.FreeAddr(), mtatest.FreeAddr()
	srv, err := mtatest.StartServer(bin, dir, configHead+fmt.Sprintf(`[[listeners]]
name = "mx"
kind = "smtp"
address = %q
[[listeners]]
name = "imap"
kind = "imap"
address = %q
[domains."example.org"]
[accounts.bench]
domain = "example.org"
addresses = ["bench@example.org"]
`, mx, imapAddr))
	if err != nil {
		return err
	}
	defer srv.Stop()
	start := time.Now()
	l := load{addr: mx, from: "app@" + benchDomain, to: "bench@example.org", n: n, conns: conns, msg: msg}
	if _, err := l.send(); err != nil {
		return fmt.Errorf("filling the Switchyard mailbox: %w", err)
	}
	fmt.Printf("%-48s %v (delivered over SMTP; Dovecot's Maildir written directly)\n", "mailbox filled", time.Since(start).Round(time.Millisecond))

	sw, err := imapTimes(imapAddr, "bench@example.org", srv.Passwords["bench"], n, msg)
	if err != nil {
		return fmt.Errorf("switchyard: %w", err)
	}
	ref, err := imapTimes(dv.addr, "bench", "bench", n, msg)
	if err != nil {
		return fmt.Errorf("dovecot: %w\n%s", err, dv.log())
	}
	swSrv := imapServer{addr: imapAddr, login: "bench@example.org", pass: srv.Passwords["bench"], pid: srv.PID()}
	dvSrv := imapServer{addr: dv.addr, login: "bench", pass: "bench", pid: dv.cmd.Process.Pid}
	for _, s := range []struct {
		srv  imapServer
		figs *[]figure
	}{{swSrv, &sw}, {dvSrv, &ref}} {
		d, err := idleWakeup(s.srv, msg)
		if err != nil {
			return fmt.Errorf("IDLE wake-up at %s: %w", s.srv.addr, err)
		}
		*s.figs = append(*s.figs, figure{name: "IDLE wake-up after an APPEND (median)", d: d})
	}
	fmt.Printf("%-40s %12s %12s\n", "", "switchyard", "dovecot")
	for i, f := range sw {
		ratio := f.d.Seconds() / ref[i].d.Seconds()
		target, verdict := "×2", "within"
		if f.ahead {
			target = "ahead"
		}
		if ratio > 2 || f.ahead && ratio >= 1 {
			verdict = "over"
		}
		fmt.Printf("%-40s %12v %12v  ×%s of Dovecot's time (target %s: %s)\n", f.name, f.d.Round(time.Microsecond), ref[i].d.Round(time.Microsecond), fmtRatio(ratio), target, verdict)
	}
	if idleN <= 0 {
		return nil
	}
	swMem, err := idleMemory(swSrv, idleN)
	if err != nil {
		return fmt.Errorf("switchyard: %d IDLE sessions: %w", idleN, err)
	}
	name := fmt.Sprintf("memory per IDLE session, %d open", idleN)
	dvMem, err := idleMemory(dvSrv, idleN)
	if err != nil {
		fmt.Printf("%-40s %12s  dovecot: %v\n", name, kib(swMem), err)
		return nil
	}
	ratio := float64(swMem) / float64(dvMem)
	verdict := "within"
	if ratio > 2 {
		verdict = "over"
	}
	fmt.Printf("%-40s %12s %12s  ×%s of Dovecot's PSS (target ×2: %s)\n", name, kib(swMem), kib(dvMem), fmtRatio(ratio), verdict)
	return nil
}

// fmtRatio formats a ratio with two decimals, or two significant digits
// below 0.1.
func fmtRatio(r float64) string {
	if r < 0.1 {
		return fmt.Sprintf("%.2g", r)
	}
	return fmt.Sprintf("%.2f", r)
}

// kib formats a size in bytes as KiB.
func kib(n int64) string { return fmt.Sprintf("%.1f KiB", float64(n)/1024) }

// figure is one timed command.
type figure struct {
	name  string
	d     time.Duration
	ahead bool // The target is to be faster than Dovecot, not within ×2.
}

// imapTimes logs in to addr over STARTTLS, opens INBOX once untimed (a
// server may build its index then), and times the figures.
func imapTimes(addr, login, pass string, n int, msg []byte) ([]figure, error) {
	c, err := imapclient.DialStartTLS(addr, &imapclient.Options{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Login(login, pass).Wait(); err != nil {
		return nil, err
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		return nil, err
	}
	if err := c.Unselect().Wait(); err != nil {
		return nil, err
	}
	all := imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}
	nomatch := "zqxj-nomatch"
	steps := []struct {
		name  string
		ahead bool
		f     func() error
	}{
		{"SELECT INBOX", false, func() error {
			d, err := c.Select("INBOX", nil).Wait()
			if err == nil && int(d.NumMessages) != n {
				err = fmt.Errorf("%d messages, want %d", d.NumMessages, n)
			}
			return err
		}},
		{"FETCH 1:* (FLAGS UID)", false, func() error {
			msgs, err := c.Fetch(all, &imap.FetchOptions{Flags: true, UID: true}).Collect()
			if err == nil && len(msgs) != n {
				err = fmt.Errorf("%d messages fetched, want %d", len(msgs), n)
			}
			return err
		}},
		{"FETCH 1:* (ENVELOPE)", false, func() error {
			msgs, err := c.Fetch(all, &imap.FetchOptions{Envelope: true}).Collect()
			if err == nil && len(msgs) != n {
				err = fmt.Errorf("%d messages fetched, want %d", len(msgs), n)
			}
			return err
		}},
		{"UID SEARCH SUBJECT (no match)", false, func() error {
			_, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: nomatch}}}, nil).Wait()
			return err
		}},
		{"SEARCH TEXT (no match)", false, func() error {
			_, err := c.Search(&imap.SearchCriteria{Text: []string{nomatch}}, nil).Wait()
			return err
		}},
		{fmt.Sprintf("APPEND of %d messages, one at a time", imapAppends), true, func() error {
			for range imapAppends {
				a := c.Append("INBOX", int64(len(msg)), nil)
				if _, err := a.Write(msg); err != nil {
					return err
				}
				if err := a.Close(); err != nil {
					return err
				}
				if _, err := a.Wait(); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	var figs []figure
	for _, s := range steps {
		start := time.Now()
		if err := s.f(); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		figs = append(figs, figure{s.name, time.Since(start), s.ahead})
	}
	return figs, c.Logout().Wait()
}

// dovecot is a Dovecot serving IMAP on loopback from a directory of its own.
type dovecot struct {
	dir  string
	addr string
	cmd  *exec.Cmd
}

// startDovecot configures and starts Dovecot with user "bench" (password
// "bench") whose INBOX holds n copies of msg, written as Maildir files. It
// needs root, for Dovecot's own users dovecot and dovenull.
func startDovecot(n int, msg []byte) (*dovecot, error) {
	bin, err := exec.LookPath("dovecot")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/dovecot"); err != nil {
			return nil, fmt.Errorf("no dovecot (Debian: dovecot-imapd)")
		}
	}
	if os.Getuid() != 0 {
		return nil, fmt.Errorf("dovecot runs its users only when started as root")
	}
	mailUser, err := user.Lookup("dovecot")
	if err != nil {
		return nil, err
	}
	if _, err := user.Lookup("dovenull"); err != nil {
		return nil, err
	}
	uid, _ := strconv.Atoi(mailUser.Uid)
	gid, _ := strconv.Atoi(mailUser.Gid)
	dir, err := os.MkdirTemp("", "switchyard-bench-dovecot-")
	if err != nil {
		return nil, err
	}
	os.Chmod(dir, 0o755)
	d := &dovecot{dir: dir, addr: mtatest.FreeAddr()}
	fail := func(err error) (*dovecot, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	cur := filepath.Join(dir, "mail", "bench", "cur")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, "mail", "bench", sub), 0o700); err != nil {
			return fail(err)
		}
	}
	now := time.Now().Unix()
	for i := range n {
		if err := os.WriteFile(filepath.Join(cur, fmt.Sprintf("%d.M%dP1.bench,S=%d:2,", now, i, len(msg))), msg, 0o600); err != nil {
			return fail(err)
		}
	}
	if err := filepath.Walk(filepath.Join(dir, "mail"), func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	}); err != nil {
		return fail(err)
	}
	// The core's own self-signed certificate, made in dir.
	if _, _, err := certs.Load("", "", true, dir, "localhost"); err != nil {
		return fail(err)
	}
	certFile, keyFile := certs.SelfSignedPaths(dir)
	host, port, _ := strings.Cut(d.addr, ":")
	conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
protocols = imap
listen = %[2]s
ssl = yes
ssl_cert = <%[3]s
ssl_key = <%[4]s
auth_mechanisms = plain
mail_location = maildir:%[1]s/mail/%%u
first_valid_uid = %[6]d
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
passdb {
  driver = static
  args = password=bench
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=%[1]s/mail/%%u
}
service imap-login {
  chroot =
  service_count = 0
  client_limit = 10000
  process_min_avail = 2
  vsz_limit = 4G
  inet_listener imap {
    address = %[2]s
    port = %[5]s
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = 0
  }
}
service anvil {
  chroot =
  client_limit = 20000
}
# Room for the IDLE memory figure's sessions: one imap process each, as
# Dovecot runs by default, behind login processes that each serve many.
default_process_limit = 10000
default_client_limit = 20000
protocol imap {
  mail_max_userip_connections = 10000
}
service imap {
  process_limit = 10000
}
service auth {
  client_limit = 20000
}
service stats {
  client_limit = 20000
}
`, dir, host, certFile, keyFile, port, uid)
	confFile := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		return fail(err)
	}
	d.cmd = exec.Command(bin, "-F", "-c", confFile)
	if err := d.cmd.Start(); err != nil {
		return fail(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := imapclient.DialInsecure(d.addr, nil)
		if err == nil {
			c.Close()
			return d, nil
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("dovecot not listening: %v\n%s", err, d.log())
		}
	}
}

func (d *dovecot) log() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "dovecot.log"))
	return tail(string(b), 20)
}

func (d *dovecot) stop() {
	if d.cmd != nil && d.cmd.Process != nil {
		d.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { d.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			d.cmd.Process.Kill()
		}
	}
	os.RemoveAll(d.dir)
}
