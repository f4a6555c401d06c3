package sdk

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// ProtocolVersion is the plugin protocol version this sdk speaks
// (sdk/proto/switchyard/plugin/v1).
const ProtocolVersion = 1

// Handshake is shared by the core and every plugin. It is not a security
// measure: it keeps a plugin binary from being run by mistake.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "SWITCHYARD_PLUGIN",
	MagicCookieValue: "4b1c7d0e-switchyard-mta-plugin",
}

// pluginName is the key of the one go-plugin plugin a binary serves.
const pluginName = "switchyard"

// Plugin is what a plugin binary serves. Set the kinds it offers.
type Plugin struct {
	Name    string
	Version string

	Transport Transport // Nil if not a transport.

	Mechanisms []string  // SASL names served by Mechanism, e.g. "SCRAM-SHA-256".
	Mechanism  Mechanism // May also implement Deriver and PreAuther.

	Policy  *PolicyInfo // Stages and body needs of Checker.
	Checker Checker

	// Configurer takes the plugin-wide table [plugins.NAME.config]. Optional.
	Configurer Configurer
}

// Description is what a plugin announced in Describe.
type Description struct {
	Name       string
	Version    string
	Transport  bool
	Mechanisms []string
	Policy     *PolicyInfo
}

// PluginSets returns the go-plugin plugin sets by protocol version, for
// plugin.ClientConfig.VersionedPlugins in the host. impl is nil in the host.
func PluginSets(impl *Plugin) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		ProtocolVersion: {pluginName: &grpcPlugin{impl: impl}},
	}
}

// Dispense returns the client of a started go-plugin client.
func Dispense(c plugin.ClientProtocol) (*Client, error) {
	raw, err := c.Dispense(pluginName)
	if err != nil {
		return nil, err
	}
	return raw.(*Client), nil
}

// grpcPlugin is the go-plugin glue: a server in the plugin, a client in the host.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl *Plugin // Plugin process only.
}

func (p *grpcPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	registerServers(s, p.impl, broker)
	return nil
}

func (p *grpcPlugin) GRPCClient(ctx context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return newClient(conn, broker), nil
}
