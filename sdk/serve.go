package sdk

import (
	"os"
	"runtime"
	"runtime/debug"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

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
		GRPCServer:       newGRPCServer,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       p.Name,
			Level:      hclog.Warn,
			JSONFormat: true,
		}),
	})
}

// newGRPCServer is go-plugin's server with stream workers: each call is
// handled on a goroutine that lives on, not on a new one per call, whose
// stack would grow by copying (runtime.morestack) on every call that goes
// deep, as a DKIM verification does. Calls beyond the workers get a
// goroutine of their own, as without them.
func newGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	workers := uint32(max(16, 4*runtime.GOMAXPROCS(0)))
	return plugin.DefaultGRPCServer(append(opts, grpc.NumStreamWorkers(workers),
		grpc.InitialWindowSize(StreamWindow), grpc.InitialConnWindowSize(ConnWindow)))
}
