package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/core/certs"
)

// neomutt, Debian's build (its SASL library picks the strongest mechanism
// offered), sends through submission with its defaults and the plugins the
// shipped mta.toml loads: nothing set but the server, the login and the
// trusted certificate. With SCRAM-SHA-256-PLUS offered by default it picked
// that over TLS 1.3, could not bind (no tls-exporter), and failed.
func TestNeomuttDefaults(t *testing.T) {
	t.Parallel()
	neomutt, err := exec.LookPath("neomutt")
	if err != nil {
		t.Skip("neomutt not installed (apt-get install neomutt)")
	}
	bin := binaries(t)
	srv := startServer(t, setup{Hostname: "localhost", IMAP: true, Rest: fmt.Sprintf("[plugins.auth-scram]\npath = %q\n[plugins.auth-crammd5]\npath = %q\n",
		bin.Plugins["auth-scram"], bin.Plugins["auth-crammd5"]) + defaultRest})

	home := t.TempDir()
	trust, _ := certs.SelfSignedPaths(filepath.Join(srv.Dir, "data"))
	_, port, _ := strings.Cut(srv.Listeners["submission"], ":")
	rc := fmt.Sprintf(`set smtp_url = "smtp://alice@localhost:%s/"
set smtp_pass = "%s"
set ssl_starttls = yes
set ssl_force_tls = yes
set certificate_file = "%s"
set from = "alice@example.org"
set use_from = yes
set record = ""
set copy = no
`, port, srv.Passwords["alice"], trust)
	muttrc := filepath.Join(home, "muttrc")
	if err := os.WriteFile(muttrc, []byte(rc), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(neomutt, "-n", "-F", muttrc, "-s", "sent with neomutt", "--", "bob@example.org")
	cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin", "TERM=dumb", "LANG=C.UTF-8"}
	cmd.Dir = home
	cmd.Stdin = strings.NewReader("Hello from neomutt.\n")
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("neomutt hung:\n%s\nserver log:\n%s", out, srv.Log())
	}
	if err != nil {
		t.Fatalf("neomutt: %v\n%s\nserver log:\n%s", err, out, srv.Log())
	}
	if !waitFor(waitShort, func() bool { return strings.Contains(srv.Log(), "msg=authenticated listener=submission") }) {
		t.Fatalf("no authenticated submission in the server log:\n%s", srv.Log())
	}
	cb := imapLogin(t, srv, "imaps", "bob@example.org", srv.Passwords["bob"], nil)
	if !waitFor(waitShort, func() bool { return selectMailbox(t, cb, "INBOX", true).NumMessages == 1 }) {
		t.Fatalf("bob's INBOX does not hold the message; server log:\n%s", srv.Log())
	}
}
