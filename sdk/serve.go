package sdk

import (
	"os"
	"runtime/debug"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/switchyard-mta/switchyard/sdk/internal/hostlink"
)

// Serve serves p to the core that started this process and returns when the
// core is done with it. Call it from main. Run outside the core, it prints a
// short explanation and exits with status 1.
//
// Unless $GOGC says otherwise, the garbage collector runs at a quarter of
// its default frequency (GOGC=400): a plugin keeps little live memory and
// allocates per call, so at the default it would collect many times a
// second on a busy server, for a heap of a few megabytes more.
func Serve(p *Plugin) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  hostlink.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{ProtocolVersion: {hostlink.PluginName: &grpcPlugin{impl: p}}},
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       p.Name,
			Level:      hclog.Warn,
			JSONFormat: true,
		}),
	})
}
