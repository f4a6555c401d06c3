package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSuppressionOffline: mta suppression with no server running opens
// the data directory itself.
func TestSuppressionOffline(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "mta.toml")
	if err := os.WriteFile(conf, []byte("hostname = \"mail.example.org\"\ndata_dir = \"data\"\n[domains.\"example.org\"]\n[accounts.alice]\ndomain = \"example.org\"\naddresses = [\"alice@example.org\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mta := func(argv ...string) (string, int) {
		var out, errOut bytes.Buffer
		code := run(append(argv[:2:2], append([]string{"-config", conf}, argv[2:]...)...), nil, &out, &errOut)
		return out.String() + errOut.String(), code
	}
	if out, code := mta("suppression", "add", "alice", "x@remote.example", "bounced"); code != 0 || !strings.Contains(out, "suppressed") {
		t.Fatalf("add: %d %s", code, out)
	}
	if out, code := mta("suppression", "list"); code != 0 || !strings.Contains(out, "x@remote.example") || !strings.Contains(out, "bounced") {
		t.Errorf("list: %d %s", code, out)
	}
	if out, code := mta("suppression", "rm", "alice", "x@remote.example"); code != 0 {
		t.Errorf("rm: %d %s", code, out)
	}
	if out, code := mta("suppression", "rm", "alice", "x@remote.example"); code != 2 {
		t.Errorf("rm twice: %d %s, want exit 2", code, out)
	}
}
