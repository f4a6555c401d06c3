// Package plugintest runs a Switchyard plugin in a test: in-process, over the
// same gRPC protocol and go-plugin broker the core uses with a plugin binary.
//
//	c := plugintest.Connect(t, &sdk.Plugin{Name: "x", Transport: myTransport}, &plugintest.Host{})
//	err := c.Configure(ctx, &sdk.Configuration{Kind: sdk.KindTransport, Instance: "t", Table: table})
//	res, err := c.Transport().Deliver(ctx, req)
package plugintest

import (
	"bytes"
	"context"
	"encoding/hex"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-plugin"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/hostrpc"
)

// Connect serves p over real gRPC within the test process and returns the
// client the core would use. If host is not nil, it is served to the plugin
// as the core's Host. Everything is closed when the test ends.
func Connect(t testing.TB, p *sdk.Plugin, host sdk.Host) hostrpc.Client {
	t.Helper()
	gc, gs := plugin.TestPluginGRPCConn(t, false, hostrpc.PluginSets(p)[sdk.ProtocolVersion])
	t.Cleanup(func() {
		// Server first: Close's shutdown RPC would stop it concurrently.
		gs.Stop()
		gc.Close()
	})
	c, err := hostrpc.Dispense(gc)
	if err != nil {
		t.Fatalf("dispense: %v", err)
	}
	if host != nil {
		c.ServeHost(host)
	}
	return c
}

// Host is an sdk.Host backed by maps, for tests. The zero value finds nothing.
type Host struct {
	mu      sync.Mutex
	secrets map[string]*sdk.Credential // By lower-case username + "\x00" + mechanism.
	keys    map[string]*sdk.TLSKey     // By hex SPKI SHA-256.
}

var _ sdk.Host = (*Host)(nil)

// SetSecret makes Secret(username, mechanism) return c.
func (h *Host) SetSecret(username, mechanism string, c sdk.Credential) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.secrets == nil {
		h.secrets = map[string]*sdk.Credential{}
	}
	h.secrets[strings.ToLower(username)+"\x00"+mechanism] = &c
}

// SetTLSPublicKey makes TLSPublicKey(spkiSHA256) return k.
func (h *Host) SetTLSPublicKey(spkiSHA256 []byte, k sdk.TLSKey) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.keys == nil {
		h.keys = map[string]*sdk.TLSKey{}
	}
	h.keys[hex.EncodeToString(spkiSHA256)] = &k
}

func (h *Host) Secret(ctx context.Context, username, mechanism string) (*sdk.Credential, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.secrets[strings.ToLower(username)+"\x00"+mechanism]; ok {
		return c, nil
	}
	return nil, sdk.ErrNotFound
}

func (h *Host) TLSPublicKey(ctx context.Context, spkiSHA256 []byte) (*sdk.TLSKey, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.keys[hex.EncodeToString(spkiSHA256)]; ok {
		return c, nil
	}
	return nil, sdk.ErrNotFound
}

// LogBuffer collects a plugin's log output, written from the goroutines
// of its RPCs, for a test to read.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
