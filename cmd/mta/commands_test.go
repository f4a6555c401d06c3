package main

import (
	"strings"
	"testing"

	"github.com/switchyard-mta/switchyard/core/config"
)

func TestServerLogger(t *testing.T) {
	var b strings.Builder
	log := serverLogger(config.Log{Level: "warn", Format: "json"}, &b)
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	if got := b.String(); strings.Contains(got, "hidden") || !strings.Contains(got, `"msg":"shown","k":1`) {
		t.Errorf("got %q", got)
	}
}
