// Package rules checks the rule of the house: what plugin authors build on,
// sdk/, never imports core/, and plugins and examples import only sdk/
// (DESIGN.md). A test, so that `make test` fails the day it is broken.
package rules

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/switchyard-mta/switchyard"

func TestNoCoreImports(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	// Deps is transitive; test imports are listed apart and checked too.
	cmd := exec.Command(goTool, "list", "-f", "{{.ImportPath}} {{join .Deps \" \"}} {{join .TestImports \" \"}} {{join .XTestImports \" \"}}",
		"./sdk/...", "./plugins/...", "./examples/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		checked++
		for _, dep := range fields[1:] {
			if dep == module+"/core" || strings.HasPrefix(dep, module+"/core/") {
				t.Errorf("%s imports %s: sdk/, plugins/ and examples/ may import only sdk/ of this module", fields[0], dep)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("go list named only %d packages:\n%s", checked, out)
	}
}
