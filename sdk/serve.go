package sdk

import (
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/switchyard-mta/switchyard/sdk/internal/hostlink"
)

// Serve serves p to the core that started this process and returns when the
// core is done with it. Call it from main. Run outside the core, it prints a
// short explanation and exits with status 1.
func Serve(p *Plugin) {
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
