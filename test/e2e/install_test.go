package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// TestMakeInstall: `make install` into a DESTDIR puts mta, the plugins, a
// sample configuration naming the installed plugins, and a systemd unit
// running the installed mta; the sample passes `mta config check` once its
// listeners are moved to loopback ports and it gets a certificate.
func TestMakeInstall(t *testing.T) {
	t.Parallel()
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Skip("make not installed")
	}
	root, err := mtatest.Root()
	if err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	cmd := exec.Command(makeBin, "-C", root, "install", "DESTDIR="+dest, "PREFIX=/opt/sy", "SYSCONFDIR=/opt/sy/etc", "STATEDIR=/opt/sy/var")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{"/opt/sy/bin/mta", "/opt/sy/lib/switchyard/plugins/transport-direct", "/opt/sy/lib/switchyard/plugins/auth-scram"} {
		if fi, err := os.Stat(dest + f); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("%s not installed as an executable: %v", f, err)
		}
	}
	unit, err := os.ReadFile(dest + "/opt/sy/lib/systemd/system/switchyard.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/opt/sy/bin/mta serve -config /opt/sy/etc/mta.toml") || regexp.MustCompile(`@[A-Z]+@`).Match(unit) {
		t.Errorf("unit file:\n%s", unit)
	}

	sample, err := os.ReadFile(dest + "/opt/sy/etc/mta.toml.sample")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(sample)
	if regexp.MustCompile(`@[A-Z]+@`).MatchString(cfg) {
		t.Fatalf("placeholders left in the sample:\n%s", cfg)
	}
	// Run it from the staging tree, on loopback, with a certificate.
	cfg = strings.ReplaceAll(cfg, `"/opt/sy/`, `"`+dest+`/opt/sy/`)
	for _, port := range []string{":25", ":587", ":465", ":143", ":993"} {
		cfg = strings.Replace(cfg, fmt.Sprintf("address = %q", port), fmt.Sprintf("address = %q", mtatest.FreeAddr()), 1)
	}
	i, j := strings.Index(cfg, "[tls]"), strings.Index(cfg, "[limits]")
	cfg = cfg[:i] + "[tls]\nself_signed = true\n\n" + cfg[j:]
	path := filepath.Join(t.TempDir(), "mta.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if stdout, stderr, code := runMTA(t, "", "config", "check", "-config", path); code != 0 {
		t.Fatalf("config check of the sample: exit %d\n%s%s\n%s", code, stdout, stderr, cfg)
	}
}
