// Package hostrpc is the host's side of the plugin RPC: what the core, and
// tests such as sdk/plugintest, use to start and talk to plugins. Plugin
// authors do not need it; it holds the go-plugin types so that the sdk
// package they import does not.
package hostrpc

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-plugin"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/internal/hostlink"
)

// Handshake is the go-plugin handshake of every Switchyard plugin.
var Handshake = hostlink.Handshake

// Client is the host's side of one plugin process: it implements the sdk
// interfaces over gRPC, so the core cannot tell it from an in-process
// implementation.
type Client interface {
	// Describe asks the plugin what it serves.
	Describe(ctx context.Context) (*sdk.Description, error)
	// ServeHost serves h to the plugin; call it before Configure.
	ServeHost(h sdk.Host)
	// Configure passes one configuration table to the plugin.
	Configure(ctx context.Context, cfg *sdk.Configuration) error
	// Transport, Mechanism and Checker are the plugin's kinds, as clients.
	Transport() sdk.Transport
	Mechanism() sdk.Mechanism
	Checker() sdk.Checker
}

// PluginSets returns the go-plugin plugin sets by protocol version, for
// plugin.ClientConfig.VersionedPlugins in the host (impl nil) or a test
// server (impl the plugin).
func PluginSets(impl *sdk.Plugin) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		sdk.ProtocolVersion: {hostlink.PluginName: hostlink.NewGRPCPlugin(impl)},
	}
}

// Dispense returns the Client of a started go-plugin client.
func Dispense(c plugin.ClientProtocol) (Client, error) {
	raw, err := c.Dispense(hostlink.PluginName)
	if err != nil {
		return nil, err
	}
	cl, ok := raw.(Client)
	if !ok {
		return nil, fmt.Errorf("hostrpc: dispensed %T, not a plugin client", raw)
	}
	return cl, nil
}
