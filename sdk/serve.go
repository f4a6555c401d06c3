package sdk

import (
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// Serve serves p to the core that started this process and returns when the
// core is done with it. Call it from main. Run outside the core, it prints a
// short explanation and exits with status 1.
func Serve(p *Plugin) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: PluginSets(p),
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       p.Name,
			Level:      hclog.Warn,
			JSONFormat: true,
		}),
	})
}
