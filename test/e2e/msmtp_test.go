package e2e

import (
	"bytes"
	"fmt"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/switchyard-mta/switchyard/core/certs"
	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// msmtp (GNU SASL) submits over STARTTLS with CRAM-MD5, PLAIN and LOGIN,
// verifying the server's self-signed certificate as a trust file; each
// message reaches bob's Inbox. A wrong password makes msmtp exit non-zero
// and delivers nothing.
func TestSASLMsmtp(t *testing.T) {
	t.Parallel()
	msmtp, err := exec.LookPath("msmtp")
	if err != nil {
		t.Skip("msmtp not installed (apt-get install msmtp)")
	}
	bin := binaries(t)
	// A certificate for "localhost" names DNS localhost and IP 127.0.0.1
	// (core/certs), so msmtp can verify it.
	srv := startServer(t, setup{Hostname: "localhost", IMAP: true,
		Rest: fmt.Sprintf("[plugins.auth-crammd5]\npath = %q\n", bin.Plugins["auth-crammd5"]) + defaultRest})
	c, err := mtatest.Dial(srv.Listeners["submission"], false, true)
	if err != nil {
		t.Fatal(err)
	}
	if ok, list := c.Extension("AUTH"); !ok || list != "CRAM-MD5 PLAIN LOGIN" {
		t.Fatalf("AUTH %q, want CRAM-MD5 PLAIN LOGIN", list)
	}
	c.Close()

	dir := t.TempDir()
	// -C replaces ~/.msmtprc; everything else is on the command line.
	conf := filepath.Join(dir, "msmtprc")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	trust, _ := certs.SelfSignedPaths(filepath.Join(srv.Dir, "data"))
	_, port, _ := strings.Cut(srv.Listeners["submission"], ":")
	run := func(mech, password, subject string) (string, error) {
		pwFile := filepath.Join(dir, "pw-"+subject)
		if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(msmtp, "-C", conf, "--host=localhost", "--port="+port,
			"--tls=on", "--tls-starttls=on", "--tls-trust-file="+trust,
			"--auth="+mech, "--user=alice@example.org", "--passwordeval=cat '"+pwFile+"'",
			"--timeout=20", "-f", "alice@example.org", "bob@example.org")
		cmd.Stdin = strings.NewReader("From: alice@example.org\nTo: bob@example.org\nSubject: " + subject + "\n\nsent with msmtp --auth=" + mech + "\n")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	var want []string
	for _, mech := range []string{"cram-md5", "plain", "login"} {
		subject := "msmtp-" + mech
		if out, err := run(mech, srv.Passwords["alice"], subject); err != nil {
			t.Errorf("msmtp --auth=%s: %v\n%s", mech, err, out)
		} else {
			want = append(want, subject)
		}
		out, err := run(mech, srv.Passwords["alice"]+"x", subject+"-wrong")
		if err == nil {
			t.Errorf("msmtp --auth=%s with a wrong password: exit 0\n%s", mech, out)
		} else if !strings.Contains(out, "authentication failed (method "+strings.ToUpper(mech)+")") || !strings.Contains(out, "535 5.7.8") {
			t.Errorf("msmtp --auth=%s with a wrong password: %v, want authentication failed with 535 5.7.8\n%s", mech, err, out)
		}
	}

	// The server saw each mechanism succeed once and fail once. (The
	// login of a failure is logged only if the plugin reports it.)
	for _, mech := range []string{"cram-md5", "plain", "login"} {
		m := regexp.QuoteMeta(strings.ToUpper(mech))
		for _, line := range []string{
			`msg=authenticated listener=submission .*mech=` + m + ` login=alice@example\.org account=alice`,
			`msg="authentication failed" listener=submission .*mech=` + m + ` login=\S* reason=`,
		} {
			re := regexp.MustCompile(`(?m)^.*` + line)
			if !waitFor(waitShort, func() bool { return len(re.FindAllString(srv.Log(), -1)) == 1 }) {
				t.Errorf("server log: want one line %s", re)
			}
		}
	}

	// The right passwords delivered, the wrong ones nothing.
	cb := imapLogin(t, srv, "imaps", "bob@example.org", srv.Passwords["bob"], nil)
	var got []string
	if n := selectMailbox(t, cb, "INBOX", true).NumMessages; n > 0 {
		var all imap.SeqSet
		all.AddRange(1, n)
		msgs, err := cb.Fetch(all, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{wholeBody(true)}}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			pm, err := mail.ReadMessage(bytes.NewReader(m.FindBodySection(wholeBody(true))))
			if err != nil {
				t.Fatalf("message in Inbox: %v", err)
			}
			got = append(got, pm.Header.Get("Subject"))
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("bob's Inbox holds %v, want %v", got, want)
	}
}
