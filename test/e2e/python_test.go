package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// pythonClients is the flow of the Python test: smtplib submits a message
// from alice to bob (STARTTLS, AUTH); imaplib, over STARTTLS, finds and
// fetches it in bob's INBOX and appends a message to Sent, and over
// implicit TLS fetches that back. It prints what it saw as JSON.
const pythonClients = `
import base64, imaplib, json, os, smtplib, ssl, sys, time

host = "127.0.0.1"
env = os.environ
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # The server's certificate is self-signed.
msg = open(env["MSG_FILE"], "rb").read()
sent = open(env["SENT_FILE"], "rb").read()
out = {}

with smtplib.SMTP(host, int(env["SUBMISSION_PORT"]), timeout=20) as s:
    s.ehlo("python.test")
    s.starttls(context=ctx)
    s.ehlo("python.test")
    s.login("alice@example.org", env["ALICE_PASSWORD"])
    out["refused"] = sorted(s.sendmail("alice@example.org", ["bob@example.org"], msg))

m = imaplib.IMAP4(host, int(env["IMAP_PORT"]), timeout=20)
out["logindisabled"] = "LOGINDISABLED" in m.capabilities
m.starttls(ssl_context=ctx)
out["login"] = m.login("bob", env["BOB_PASSWORD"])[0]
typ, data = m.select("INBOX")
out["exists"] = int(data[0])
typ, data = m.search(None, "FROM", "alice@example.org", "SUBJECT", "from-python")
nums = data[0].split()
out["found"] = len(nums)
typ, data = m.fetch(nums[0], "(BODY.PEEK[])")
out["body"] = base64.b64encode(data[0][1]).decode()
typ, data = m.append("Sent", r"(\Seen)", imaplib.Time2Internaldate(time.time()), sent)
out["append"] = [typ, data[0].decode()]
out["logout"] = m.logout()[0]

m = imaplib.IMAP4_SSL(host, int(env["IMAPS_PORT"]), ssl_context=ctx, timeout=20)
m.login("bob@example.org", env["BOB_PASSWORD"])
typ, data = m.status("Sent", "(MESSAGES UNSEEN)")
out["status"] = data[0].decode()
m.select("Sent", readonly=True)
typ, data = m.fetch("1", "(FLAGS BODY.PEEK[])")
out["sent_meta"] = data[0][0].decode()
out["sent"] = base64.b64encode(data[0][1]).decode()
m.logout()

json.dump(out, sys.stdout)
`

// Python's smtplib and imaplib (the standard library) against the server.
func TestPythonClients(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	srv := startServer(t, setup{IMAP: true})
	dir := t.TempDir()
	msg := mtatest.MakeMessage("alice@example.org", "bob@example.org", "from-python", 2000)
	sent := mtatest.MakeMessage("bob@example.org", "alice@example.org", "python-sent", 1200)
	script := filepath.Join(dir, "clients.py")
	for name, b := range map[string][]byte{"msg": msg, "sent": sent, "clients.py": []byte(pythonClients)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := func(listener string) string {
		_, p, _ := strings.Cut(srv.Listeners[listener], ":")
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, script)
	cmd.Env = append(os.Environ(),
		"MSG_FILE="+filepath.Join(dir, "msg"), "SENT_FILE="+filepath.Join(dir, "sent"),
		"SUBMISSION_PORT="+port("submission"), "IMAP_PORT="+port("imap"), "IMAPS_PORT="+port("imaps"),
		"ALICE_PASSWORD="+srv.Passwords["alice"], "BOB_PASSWORD="+srv.Passwords["bob"])
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, stderr.String())
	}
	var got struct {
		Refused       []string
		LoginDisabled bool
		Login         string
		Exists        int
		Found         int
		Body          []byte // JSON base64.
		Append        []string
		Logout        string
		Status        string
		SentMeta      string `json:"sent_meta"`
		Sent          []byte
	}
	if err := json.Unmarshal(stdout, &got); err != nil {
		t.Fatalf("python3 printed %q: %v", stdout, err)
	}
	t.Logf("python3: login %s, %d in INBOX, APPEND %v, STATUS %s, FETCH %s", got.Login, got.Exists, got.Append, got.Status, got.SentMeta)
	if len(got.Refused) != 0 {
		t.Errorf("smtplib: recipients refused: %v", got.Refused)
	}
	if !got.LoginDisabled || got.Login != "OK" || got.Logout != "BYE" {
		t.Errorf("imaplib: LOGINDISABLED before STARTTLS %v, LOGIN %q, LOGOUT %q", got.LoginDisabled, got.Login, got.Logout)
	}
	if got.Exists != 1 || got.Found != 1 {
		t.Errorf("imaplib: INBOX EXISTS %d, SEARCH found %d; want 1 and 1", got.Exists, got.Found)
	}
	splitReceived(t, got.Body, msg, 1)
	if len(got.Append) != 2 || got.Append[0] != "OK" || !strings.Contains(got.Append[1], "APPENDUID") {
		t.Errorf("imaplib: APPEND answered %q, want OK [APPENDUID ...]", got.Append)
	}
	if !strings.Contains(got.Status, "MESSAGES 1") || !strings.Contains(got.Status, "UNSEEN 0") {
		t.Errorf("imaplib: STATUS Sent %q, want MESSAGES 1 UNSEEN 0", got.Status)
	}
	if !strings.Contains(got.SentMeta, `\Seen`) || string(got.Sent) != string(sent) {
		t.Errorf("imaplib: Sent holds %s\n%q\nwant \\Seen and\n%q", got.SentMeta, got.Sent, sent)
	}
}
