package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// TestConfigCheck: `mta config check` exits 0 for a valid file, and 2 with
// every error naming the file, the line and the key, for errors of the core's
// schema and those the plugin finds in its own tables.
func TestConfigCheck(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	valid := fmt.Sprintf(`hostname = "mail.example.org"
data_dir = "data"
[tls]
self_signed = true
[limits]
max_recipients = 100
[[listeners]]
name = "submission"
kind = "submission"
address = %q
[plugins.transport-submission]
path = %q
[transports.smarthost]
plugin = "transport-submission"
[transports.smarthost.config]
host = "127.0.0.1"
port = 2525
tls = "none"
[[routes]]
transport = "smarthost"
[domains."example.org"]
[accounts.alice]
domain = "example.org"
addresses = ["alice@example.org"]
`, mtatest.FreeAddr(), bin.Plugins["transport-submission"])

	for _, tc := range []struct {
		name     string
		old, new string // new replaces old in the valid file.
		at       string // The line the error must name.
		want     string // Key path and message start; empty: valid.
	}{
		{"valid", "", "", "", ""},
		{"unknown-key", `data_dir = "data"`, "data_dir = \"data\"\nbogus = 1", "bogus = 1", "bogus: unknown key"},
		{"unknown-nested-key", "max_recipients = 100", "max_recipients = 100\nmax_reciepients = 5", "max_reciepients = 5", "limits.max_reciepients: unknown key"},
		{"type-error", "max_recipients = 100", `max_recipients = "ten"`, `max_recipients = "ten"`, "limits.max_recipients: wrong type"},
		{"dangling-transport", `transport = "smarthost"`, `transport = "nosuch"`, `transport = "nosuch"`, `routes[0].transport: unknown transport "nosuch"`},
		{"unknown-plugin", `plugin = "transport-submission"`, `plugin = "transport-nosuch"`, `plugin = "transport-nosuch"`, `transports.smarthost.plugin: unknown plugin "transport-nosuch"`},
		{"plugin-rejects-value", `tls = "none"`, `tls = "ssl"`, `tls = "ssl"`, "transports.smarthost.config.tls: "},
		{"plugin-rejects-key", `tls = "none"`, "tls = \"none\"\nfrobnicate = true", "frobnicate = true", "transports.smarthost.config.frobnicate: unknown key"},
		{"plugin-rejects-port", "port = 2525", "port = 99999", "port = 99999", "transports.smarthost.config.port: "},
		{"mechanism-not-served", "max_recipients = 100", "max_recipients = 100\n[auth]\nmechanisms = [\"CRAM-MD5\"]", `mechanisms = ["CRAM-MD5"]`, "auth.mechanisms[0]: "},
		{"plugin-missing", `path = "` + bin.Plugins["transport-submission"] + `"`, `path = "/nonexistent/transport"`, `path = "/nonexistent/transport"`, "plugins.transport-submission.path: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := valid
			if tc.old != "" {
				if strings.Count(cfg, tc.old) != 1 {
					t.Fatalf("%q not once in the valid configuration", tc.old)
				}
				cfg = strings.Replace(cfg, tc.old, tc.new, 1)
			}
			path := filepath.Join(t.TempDir(), "mta.toml")
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := runMTA(t, "", "config", "check", "-config", path)
			if tc.want == "" {
				if code != 0 || strings.TrimSpace(stdout) != path+": ok" {
					t.Fatalf("valid configuration: exit %d\n%s%s", code, stdout, stderr)
				}
				return
			}
			if code != 2 {
				t.Fatalf("exit %d, want 2\n%s%s", code, stdout, stderr)
			}
			line := slices.Index(strings.Split(cfg, "\n"), tc.at) + 1
			want := fmt.Sprintf("%s:%d: %s", path, line, tc.want)
			if line == 0 || !strings.Contains(stderr, want) {
				t.Errorf("stderr does not contain %q:\n%s", want, stderr)
			}
			if n := strings.Count(stderr, path+":"); n != 1 {
				t.Errorf("%d errors reported, want 1:\n%s", n, stderr)
			}
		})
	}

	// Errors of the core's schema and of a plugin's table in one run.
	cfg := strings.Replace(strings.Replace(valid, "max_recipients = 100", "max_recipients = 0", 1), `tls = "none"`, `tls = "ssl"`, 1)
	path := filepath.Join(t.TempDir(), "mta.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runMTA(t, "", "config", "check", "-config", path)
	for _, want := range []string{
		fmt.Sprintf("%s:%d: limits.max_recipients: must be positive", path, lineOf(cfg, "max_recipients = 0")),
		fmt.Sprintf("%s:%d: transports.smarthost.config.tls: ", path, lineOf(cfg, `tls = "ssl"`)),
	} {
		if code != 2 || !strings.Contains(stderr, want) {
			t.Errorf("exit %d, want 2 and %q:\n%s%s", code, want, stdout, stderr)
		}
	}
}
