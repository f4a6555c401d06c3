package policydkimsign

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// verifyScript verifies each DKIM-Signature of the message in argv[1] with
// dkimpy, taking key records from the JSON object in argv[2] (name →
// record), and prints one line per signature: "ok" or "fail" and why.
const verifyScript = `
import json, sys, dkim
msg = open(sys.argv[1], 'rb').read()
records = json.load(open(sys.argv[2]))
def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode('ascii')
    r = records.get(name.rstrip('.').lower())
    return r.encode('ascii') if r is not None else None
d = dkim.DKIM(msg)
for idx in range(int(sys.argv[3])):
    try:
        ok = d.verify(idx=idx, dnsfunc=dnsfunc)
        print('ok' if ok else 'fail: verify returned false')
    except Exception as e:
        print('fail: %r' % e)
`

// dkimpy returns a python3 that has dkimpy (Debian's python3-dkim), and
// whether it verifies ed25519 (with PyNaCl), or skips the test.
func dkimpy(t *testing.T) (string, bool) {
	var candidates []string
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "/usr/bin/python3") // Debian's, where apt installs python3-dkim.
	for _, py := range candidates {
		if exec.Command(py, "-c", "import dkim").Run() == nil {
			return py, exec.Command(py, "-c", "import nacl.signing").Run() == nil
		}
	}
	t.Skip("dkimpy not installed (Debian: apt-get install python3-dkim): signatures not checked by an independent verifier")
	return "", false
}

// An independent verifier, dkimpy, verifies what the plugin signs: ed25519
// and RSA, dual signatures, a parent domain's keys, expiration; and fails
// a changed body.
func TestDKIMPy(t *testing.T) {
	py, ed25519OK := dkimpy(t)
	dir := t.TempDir()
	keys := standardKeys(t, dir)
	f := setup(t, dir, keys, map[int]map[string]any{1: {"expiration": "720h"}})
	records := map[string]string{}
	for _, k := range keys {
		records[k.selector+"._domainkey."+k.domain] = k.record
	}
	recordsFile := filepath.Join(dir, "records.json")
	b, _ := json.Marshal(records)
	os.WriteFile(recordsFile, b, 0o600)

	run := func(signed string, n int) []string {
		t.Helper()
		msgFile := filepath.Join(dir, "msg.eml")
		os.WriteFile(msgFile, []byte(signed), 0o600)
		out, err := exec.Command(py, "-c", verifyScript, msgFile, recordsFile, strconv.Itoa(n)).CombinedOutput()
		if err != nil {
			t.Fatalf("dkimpy: %v\n%s", err, out)
		}
		return strings.Split(strings.TrimSpace(string(out)), "\n")
	}
	for _, tc := range []struct {
		name string
		msg  string
	}{
		{"dual", message},
		{"subdomain", fromAt("Bob <bob@mail.example.org>")},
		{"rsa only", fromAt("bob@rsa.example")},
		{"header only", "From: alice@example.org\r\nSubject: x\r\n"},
	} {
		sigs := f.sign(tc.msg)
		res := run(strings.Join(sigs, "")+tc.msg, len(sigs))
		t.Logf("%s: dkimpy: %q", tc.name, res)
		if len(res) != len(sigs) {
			t.Fatalf("%s: dkimpy: %d results for %d signatures", tc.name, len(res), len(sigs))
		}
		for i, r := range res {
			if strings.Contains(sigs[i], "a=ed25519-sha256") && !ed25519OK {
				t.Logf("%s: signature %d: ed25519 not checked: PyNaCl missing (%s)", tc.name, i, r)
				continue
			}
			if r != "ok" {
				t.Errorf("%s: dkimpy: signature %d: %s\n%s%s", tc.name, i, r, sigs[i], tc.msg)
			}
		}
		changed := strings.Replace(tc.msg, "Subject: x", "Subject: y", 1)
		changed = strings.Replace(changed, "Hi Bob", "Hi Eve", 1)
		for i, r := range run(strings.Join(sigs, "")+changed, len(sigs)) {
			if r == "ok" {
				t.Errorf("%s: changed message: dkimpy: signature %d verifies", tc.name, i)
			}
		}
	}
}
