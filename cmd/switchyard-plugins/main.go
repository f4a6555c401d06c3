// Command switchyard-plugins is every first-party plugin in one binary:
// run by the name of a plugin (a link named after it, as bin/plugins/NAME
// are, or that name as its first argument), it serves that plugin. The
// plugins are separate processes as ever, written against sdk/ alone; one
// binary lets their processes share its code pages: each process's memory
// (PSS) is about 6 MB instead of 16 with a binary of its own.
package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	authcrammd5 "github.com/switchyard-mta/switchyard/plugins/auth-crammd5"
	authscram "github.com/switchyard-mta/switchyard/plugins/auth-scram"
	authtlsclient "github.com/switchyard-mta/switchyard/plugins/auth-tlsclient"
	policydkimsign "github.com/switchyard-mta/switchyard/plugins/policy-dkimsign"
	policymsgauth "github.com/switchyard-mta/switchyard/plugins/policy-msgauth"
	transportdirect "github.com/switchyard-mta/switchyard/plugins/transport-direct"
	transportsocks "github.com/switchyard-mta/switchyard/plugins/transport-socks"
	transportsubmission "github.com/switchyard-mta/switchyard/plugins/transport-submission"
)

// plugins are the Main functions by plugin name, the name of its directory
// under plugins/.
var plugins = map[string]func(){
	"auth-crammd5":         authcrammd5.Main,
	"auth-scram":           authscram.Main,
	"auth-tlsclient":       authtlsclient.Main,
	"policy-dkimsign":      policydkimsign.Main,
	"policy-msgauth":       policymsgauth.Main,
	"transport-direct":     transportdirect.Main,
	"transport-socks":      transportsocks.Main,
	"transport-submission": transportsubmission.Main,
}

func main() {
	if run, ok := plugins[filepath.Base(os.Args[0])]; ok {
		run()
		return
	}
	if len(os.Args) == 2 {
		if run, ok := plugins[os.Args[1]]; ok {
			run()
			return
		}
	}
	names := slices.Sorted(maps.Keys(plugins))
	fmt.Fprintf(os.Stderr, "switchyard-plugins: run as one of the plugins, by a link of its name or with it as the argument: %s\n", strings.Join(names, ", "))
	os.Exit(2)
}
