package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Every directory under plugins/ is in the binary, by its name.
func TestEveryPlugin(t *testing.T) {
	entries, err := os.ReadDir("../../plugins")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		n++
		if plugins[e.Name()] == nil {
			t.Errorf("plugins/%s is not in the binary", e.Name())
		}
	}
	if n != len(plugins) {
		t.Errorf("%d plugins in the binary, %d directories", len(plugins), n)
	}
}

// The binary built and run by each plugin's name, as a link or as its
// argument, is that plugin, which refuses to run outside a core (go-plugin
// exits 1); by another name it exits 2 with the list.
func TestRun(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "switchyard-plugins")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	exit := func(cmd *exec.Cmd) (int, string) {
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
		}
		return ee.ExitCode(), string(out)
	}
	for name := range plugins {
		link := filepath.Join(dir, name)
		if err := os.Symlink("switchyard-plugins", link); err != nil {
			t.Fatal(err)
		}
		for _, cmd := range []*exec.Cmd{exec.Command(link), exec.Command(bin, name)} {
			if code, out := exit(cmd); code != 1 || !strings.Contains(out, "This binary is a plugin") {
				t.Errorf("%v outside a core: exit %d\n%s", cmd.Args, code, out)
			}
		}
	}
	if code, out := exit(exec.Command(bin, "no-such-plugin")); code != 2 || !strings.Contains(out, "transport-direct") {
		t.Errorf("by an unknown name: exit %d\n%s", code, out)
	}
}
