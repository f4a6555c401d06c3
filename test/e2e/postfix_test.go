package e2e

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

const (
	smtpSource = "/usr/sbin/smtp-source"
	smtpSink   = "/usr/sbin/smtp-sink"
)

var messageIDRE = regexp.MustCompile(`(?mi)^Message-Id: (<[^>]+>)`)

// TestPostfixRelay: Postfix's smtp-source relays through the MX listener,
// allowed by relay_networks, to Postfix's smtp-sink behind a transport.
func TestPostfixRelay(t *testing.T) {
	for _, p := range []string{smtpSource, smtpSink} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s not installed (apt-get install postfix)", filepath.Base(p))
		}
	}
	t.Parallel()
	const messages = 50

	// smtp-sink writes one file per transaction into dump; as root it runs
	// as nobody, who must be able to write there.
	dump, err := os.MkdirTemp("", "e2e-smtp-sink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dump) })
	if err := os.Chmod(dump, 0o777); err != nil {
		t.Fatal(err)
	}
	sinkAddr := mtatest.FreeAddr()
	args := []string{"-c", "-d", filepath.Join(dump, "%M."), sinkAddr, "100"}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...)
	}
	sink := exec.Command(smtpSink, args...)
	var sinkOut bytes.Buffer
	sink.Stdout, sink.Stderr = &sinkOut, &sinkOut
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sink.Process.Kill()
		sink.Wait()
	})

	srv := startServer(t, setup{
		RelayNetworks: []string{"127.0.0.0/8"},
		Transports:    map[string]string{"smarthost": sinkAddr},
		Rest: defaultRest + `
[[routes]]
transport = "smarthost"
`})
	// smtp-sink listens once it accepts a connection.
	if !waitFor(waitShort, func() bool { return dialable(sinkAddr) }) {
		t.Fatalf("smtp-sink does not listen on %s: %s", sinkAddr, sinkOut.String())
	}

	src := exec.Command(smtpSource, "-s", "5", "-m", "50", "-l", "4096",
		"-f", "a@relay.test", "-t", "b@example.net", srv.Listeners["mx"])
	out, err := src.CombinedOutput()
	if err != nil {
		t.Fatalf("smtp-source: %v\n%s", err, out)
	}

	// Every message has a unique Message-Id; count them in the dumps.
	ids := map[string]bool{}
	waitFor(waitLong, func() bool {
		clear(ids)
		files, _ := filepath.Glob(filepath.Join(dump, "*"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			if m := messageIDRE.FindSubmatch(b); m != nil && bytes.Contains(b, []byte("X-Rcpt-Args: <b@example.net>")) {
				ids[string(m[1])] = true
			}
		}
		return len(ids) >= messages
	})
	if len(ids) != messages {
		t.Fatalf("smtp-sink received %d distinct messages, want %d\nsmtp-source: %s", len(ids), messages, out)
	}
	waitQueueEmpty(t, srv)
	if n := strings.Count(srv.Log(), `msg=delivery `); n < messages {
		t.Errorf("%d delivery attempts logged, want ≥ %d", n, messages)
	}
}

func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
