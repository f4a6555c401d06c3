package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGuard(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "recorded.txt")
	os.WriteFile(file, []byte("# comment\nrelay_vs_reference 0.20\n"), 0o644)
	if err := guard(file, 0.16); err != nil {
		t.Errorf("×0.16 against ×0.20: %v", err)
	}
	if err := guard(file, 0.14); err == nil || !strings.Contains(err.Error(), "25% below") {
		t.Errorf("×0.14 against ×0.20: %v, want a failure", err)
	}
	os.WriteFile(file, []byte("relay 0.2\n"), 0o644)
	if err := guard(file, 1); err == nil {
		t.Error("no figure: no error")
	}
	if err := guard(filepath.Join(dir, "missing"), 1); err == nil {
		t.Error("no file: no error")
	}
	// The repository's own file has a figure.
	if b, err := os.ReadFile("recorded.txt"); err != nil || !strings.Contains(string(b), "\nrelay_vs_reference ") {
		t.Errorf("recorded.txt: %v", err)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
