// Package mtatest runs the real Switchyard binaries in tests and benchmarks:
// it builds bin/mta and every plugin once, starts `mta serve` on a generated
// configuration with loopback listeners, and offers an SMTP sink and client
// helpers to talk to it.
package mtatest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
)

// Binaries are the built executables.
type Binaries struct {
	MTA     string
	Plugins map[string]string // By directory name under plugins/, examples/ or test/plugins/.
}

var (
	buildOnce sync.Once
	built     *Binaries
	buildErr  error
)

// Build builds bin/mta and all plugins into a temporary directory, once per
// process.
func Build() (*Binaries, error) {
	buildOnce.Do(func() { built, buildErr = build() })
	return built, buildErr
}

// Root returns the module's root directory.
func Root() (string, error) {
	out, err := exec.Command(goBin(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the module")
	}
	return filepath.Dir(mod), nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// goBin is the go command: go test puts the GOROOT/bin of the go that
// runs it first in the PATH of the tests.
func goBin() string {
	return "go"
}

func build() (*Binaries, error) {
	root, err := Root()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "switchyard-bin-")
	if err != nil {
		return nil, err
	}
	b := &Binaries{MTA: filepath.Join(dir, "mta"), Plugins: map[string]string{}}
	// Output path → the package, built in dir (the root, or the
	// directory of an example in a module of its own).
	type pkg struct{ dir, path string }
	firstParty := filepath.Join(dir, "plugins", "switchyard-plugins")
	pkgs := map[string]pkg{b.MTA: {root, "./cmd/mta"}, firstParty: {root, "./cmd/switchyard-plugins"}}
	// The shipped plugins (links to their one binary), the examples, and
	// those only the tests use.
	if err := os.MkdirAll(filepath.Join(dir, "plugins"), 0o755); err != nil {
		return nil, err
	}
	for _, src := range []string{"plugins", "examples", "test/plugins"} {
		entries, err := os.ReadDir(filepath.Join(root, src))
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			p := filepath.Join(dir, "plugins", e.Name())
			b.Plugins[e.Name()] = p
			if src == "plugins" {
				if err := os.Symlink("switchyard-plugins", p); err != nil {
					return nil, err
				}
				continue
			}
			pkgs[p] = pkg{root, "./" + src + "/" + e.Name()}
			if own := filepath.Join(root, src, e.Name()); fileExists(filepath.Join(own, "go.mod")) {
				pkgs[p] = pkg{own, "."}
			}
		}
	}
	for out, pkg := range pkgs {
		cmd := exec.Command(goBin(), "build", "-o", out, pkg.path)
		cmd.Dir = pkg.dir
		if o, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %v\n%s", pkg.path, err, o)
		}
	}
	return b, nil
}

// handedOut are the addresses FreeAddr returned in this process.
var handedOut = struct {
	sync.Mutex
	addrs map[string]bool
}{addrs: map[string]bool{}}

// FreeAddr returns a loopback address with a port that was free a moment
// ago, and that it has not returned before in this process: the kernel
// may give a port just closed to the next listener, so that one
// configuration would get it twice.
func FreeAddr() string {
	handedOut.Lock()
	defer handedOut.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if !handedOut.addrs[addr] {
			handedOut.addrs[addr] = true
			return addr
		}
	}
}

// Server is a running `mta serve`.
type Server struct {
	Bin        *Binaries
	Dir        string // Holds mta.toml and the data directory.
	ConfigPath string
	Passwords  map[string]string // Generated at first start, by account.
	Listeners  map[string]string // Address by listener name, as printed.

	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
}

// StartServer writes config to dir/mta.toml and serves it. The
// configuration should have data_dir = "data".
func StartServer(bin *Binaries, dir, config string) (*Server, error) {
	s := &Server{Bin: bin, Dir: dir, ConfigPath: filepath.Join(dir, "mta.toml"), Passwords: map[string]string{}}
	if err := os.WriteFile(s.ConfigPath, []byte(config), 0o600); err != nil {
		return nil, err
	}
	return s, s.Start()
}

var (
	listenerLine = regexp.MustCompile(`^(\S+)\s+(smtp|submission|submissions|imap|imaps|unix)\s+(\S+)$`)
	passwordLine = regexp.MustCompile(`^account (\S+): generated password (\S+)`)
)

// Start starts the server process and waits until it listens.
func (s *Server) Start() error {
	ready, err := s.launch()
	if err != nil {
		return err
	}
	select {
	case <-ready:
		return nil
	case <-s.done:
		return fmt.Errorf("mta serve exited: %v\nstdout:\n%s\nstderr:\n%s", s.cmd.ProcessState, s.stdout, s.stderr)
	case <-time.After(30 * time.Second):
		s.Kill()
		return fmt.Errorf("mta serve did not start in 30s\nstderr:\n%s", s.stderr)
	}
}

// KillDuringStart starts the server process and kills it with SIGKILL
// after d, as a crash during start-up would; it reports whether the server
// was listening by then.
func (s *Server) KillDuringStart(d time.Duration) (listening bool, err error) {
	ready, err := s.launch()
	if err != nil {
		return false, err
	}
	time.Sleep(d)
	s.Kill()
	select {
	case <-ready:
		return true, nil
	default:
		return false, nil
	}
}

// launch starts the server process; ready is closed once it listens.
func (s *Server) launch() (ready chan struct{}, err error) {
	s.stdout, s.stderr = &syncBuffer{}, &syncBuffer{}
	s.Listeners = map[string]string{}
	s.cmd = exec.Command(s.Bin.MTA, "serve", "-config", s.ConfigPath)
	s.cmd.Stderr = s.stderr
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	s.done = make(chan struct{})
	ready = make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			s.stdout.Write([]byte(line + "\n"))
			if m := passwordLine.FindStringSubmatch(line); m != nil {
				s.Passwords[m[1]] = m[2]
			} else if m := listenerLine.FindStringSubmatch(line); m != nil {
				s.Listeners[m[1]] = m[3]
				if m[1] == "control" {
					close(ready)
				}
			}
		}
	}()
	go func() {
		s.cmd.Wait()
		close(s.done)
	}()
	return ready, nil
}

// Stop sends SIGTERM and waits for a graceful exit.
func (s *Server) Stop() error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		if !s.cmd.ProcessState.Success() {
			return fmt.Errorf("mta serve: %v\nstderr:\n%s", s.cmd.ProcessState, s.stderr)
		}
		return nil
	case <-time.After(30 * time.Second):
		s.Kill()
		return errors.New("mta serve did not stop in 30s")
	}
}

// Kill kills the server with SIGKILL, as a crash would, and waits for it.
// Plugin processes it started exit when they notice.
func (s *Server) Kill() {
	s.cmd.Process.Kill()
	<-s.done
}

// PID is the server's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Signal sends sig to the server.
func (s *Server) Signal(sig os.Signal) error { return s.cmd.Process.Signal(sig) }

// Exited reports whether the server process has ended.
func (s *Server) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Log is what the server logged so far.
func (s *Server) Log() string { return s.stderr.String() }

// Output is what the server printed to standard output so far.
func (s *Server) Output() string { return s.stdout.String() }

// MTA runs `mta ARGS... -config FILE` style commands: config is inserted
// after the command words given in words. It returns stdout, stderr and the
// exit status.
func (s *Server) MTA(stdin string, words []string, args ...string) (string, string, int) {
	argv := append(append(append([]string{}, words...), "-config", s.ConfigPath), args...)
	cmd := exec.Command(s.Bin.MTA, argv...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return o.String(), e.String() + err.Error(), -1
		}
		code = ee.ExitCode()
	}
	return o.String(), e.String(), code
}

// PluginPID returns the pid of a running plugin process as `mta plugin list` shows it.
func (s *Server) PluginPID(name string) (int, error) {
	out, errOut, code := s.MTA("", []string{"plugin", "list"})
	if code != 0 {
		return 0, fmt.Errorf("mta plugin list: %d %s", code, errOut)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == name {
			for i, w := range f {
				if w == "running" && i+1 < len(f) {
					var pid int
					if _, err := fmt.Sscan(f[i+1], &pid); err == nil {
						return pid, nil
					}
				}
			}
			return 0, fmt.Errorf("plugin %s not running: %s", name, line)
		}
	}
	return 0, fmt.Errorf("plugin %s not listed:\n%s", name, out)
}

// Dial connects an SMTP client to addr. With implicitTLS the connection is
// TLS from the start; otherwise, with startTLS, STARTTLS is issued. Server
// certificates are not verified (they are self-signed).
func Dial(addr string, implicitTLS, startTLS bool) (*smtp.Client, error) {
	tc := &tls.Config{InsecureSkipVerify: true}
	if implicitTLS {
		return smtp.DialTLS(addr, tc)
	}
	if startTLS {
		return smtp.DialStartTLS(addr, tc)
	}
	return smtp.Dial(addr)
}

// MakeMessage returns a message of about size bytes with CRLF line endings.
func MakeMessage(from, to, subject string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%d.%s@mtatest>\r\nDate: %s\r\n\r\n",
		from, to, subject, time.Now().UnixNano(), subject, time.Now().Format(time.RFC1123Z))
	line := "The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return b.Bytes()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
