// Package hostlink joins package sdk, which implements both sides of the
// plugin RPC, to sdk/hostrpc, which exposes the host's side: the go-plugin
// types stay out of what plugin authors import.
package hostlink

import "github.com/hashicorp/go-plugin"

// Handshake is shared by the core and every plugin. It is not a security
// measure: it keeps a plugin binary from being run by mistake.
// ProtocolVersion is sdk.ProtocolVersion.
const ProtocolVersion = 1

var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "SWITCHYARD_PLUGIN",
	MagicCookieValue: "4b1c7d0e-switchyard-mta-plugin",
}

// PluginName is the key of the one go-plugin plugin a binary serves.
const PluginName = "switchyard"

// NewGRPCPlugin returns the go-plugin glue serving impl, an *sdk.Plugin
// (nil in the host); its client side dispenses the sdk's client. Package
// sdk sets it in its init, which has run wherever sdk/hostrpc is imported.
var NewGRPCPlugin func(impl any) plugin.Plugin
