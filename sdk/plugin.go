package sdk

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/switchyard-mta/switchyard/sdk/internal/hostlink"
)

// ProtocolVersion is the plugin protocol version this sdk speaks
// (sdk/proto/switchyard/plugin/v1).
const ProtocolVersion = hostlink.ProtocolVersion

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

// The host's side, sdk/hostrpc, reaches the glue through hostlink.
func init() {
	hostlink.NewGRPCPlugin = func(impl any) plugin.Plugin {
		p, _ := impl.(*Plugin)
		return &grpcPlugin{impl: p}
	}
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
