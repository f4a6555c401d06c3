package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `mta sendmail -t` submits a message from standard input through the
// server's own submission listener, with SCRAM-SHA-256 chosen as the
// strongest mechanism offered; Bcc recipients get it, the Bcc header not.
func TestSendmail(t *testing.T) {
	bin := binaries(t)
	sink := startSink(t, nil)
	srv := startServer(t, setup{
		Transports: map[string]string{"smarthost": sink.Addr},
		Rest: fmt.Sprintf("[plugins.auth-scram]\npath = %q\n[sendmail]\nusername = \"alice@example.org\"\npassword_file = \"alice.pw\"\n[[routes]]\ntransport = \"smarthost\"\n",
			bin.Plugins["auth-scram"]) + defaultRest,
	})
	if err := os.WriteFile(filepath.Join(srv.Dir, "alice.pw"), []byte(srv.Passwords["alice"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	msg := "To: bob@remote.example\nBcc: carol@remote.example\nSubject: from cron\n\nnightly report\n"
	out, errOut, code := srv.MTA(msg, []string{"sendmail"}, "-t", "-oi")
	if code != 0 {
		t.Fatalf("mta sendmail: exit %d\n%s%s", code, out, errOut)
	}
	if sink.WaitCount(1, waitShort) != 1 {
		t.Fatalf("message did not arrive\n%s", srv.Log())
	}
	got := sink.Messages()[0]
	if got.From != "alice@example.org" || strings.Join(got.Recipients, ",") != "bob@remote.example,carol@remote.example" {
		t.Errorf("envelope: from %q to %v", got.From, got.Recipients)
	}
	for _, want := range []string{"\r\nTo: bob@remote.example\r\n", "\r\nSubject: from cron\r\n\r\nnightly report\r\n", "\r\nFrom: <alice@example.org>\r\n", "\r\nMessage-ID: <"} {
		if !bytes.Contains(got.Data, []byte(want)) {
			t.Errorf("message lacks %q:\n%s", want, got.Data)
		}
	}
	if bytes.Contains(got.Data, []byte("Bcc")) || bytes.Contains(got.Data, []byte("carol")) {
		t.Errorf("Bcc leaked into the message:\n%s", got.Data)
	}
	if !waitFor(waitShort, func() bool {
		return strings.Contains(srv.Log(), "mech=SCRAM-SHA-256 ") && strings.Contains(srv.Log(), "authenticated")
	}) {
		t.Errorf("no SCRAM-SHA-256 login in the log:\n%s", srv.Log())
	}

	// Bad input: exit 2 with a message.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no recipients"},
		{[]string{"-q"}, "unknown option -q"},
	} {
		_, errOut, code := srv.MTA("Subject: x\n\ny\n", []string{"sendmail"}, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("sendmail %q: exit %d, %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}
