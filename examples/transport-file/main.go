// Command transport-file is an example Switchyard transport plugin, written
// as a third party would: it imports only the sdk. It "delivers" each message
// by writing it, with an envelope header, to a file in a directory — handy to
// inspect what a server would send.
//
//	[plugins.transport-file]
//	path = "bin/examples/transport-file"
//	[transports.capture]
//	plugin = "transport-file"
//	[transports.capture.config]
//	dir = "captured"        # relative to mta.toml
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/switchyard-mta/switchyard/sdk"
)

type config struct {
	Dir string `toml:"dir"` // Where messages are written; relative to the config file.
}

// transport writes messages to per-instance directories.
type transport struct {
	mu   sync.Mutex
	dirs map[string]string // By instance.
}

func (t *transport) Configure(ctx context.Context, c *sdk.Configuration) error {
	var cfg config
	if err := c.Decode(&cfg); err != nil {
		return err
	}
	if cfg.Dir == "" {
		return sdk.ConfigErrors{{Key: "dir", Msg: "required"}}
	}
	dir := cfg.Dir
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(c.ConfigDir, dir)
	}
	if c.CheckOnly {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return sdk.ConfigErrors{{Key: "dir", Msg: err.Error()}}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dirs[c.Instance] = dir
	return nil
}

func (t *transport) Deliver(ctx context.Context, req *sdk.DeliverRequest) (*sdk.DeliverResult, error) {
	t.mu.Lock()
	dir, ok := t.dirs[req.Instance]
	t.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("instance %q not configured", req.Instance)
	}
	rcpts := make([]string, len(req.Recipients))
	for i, r := range req.Recipients {
		rcpts[i] = r.Address
	}
	name := filepath.Join(dir, fmt.Sprintf("%s-%d.eml", req.QueueID, req.Attempt))
	err := writeFile(name, fmt.Sprintf("X-Envelope-From: <%s>\r\nX-Envelope-To: %s\r\n", req.From, strings.Join(rcpts, ", ")), req.Message)
	if err != nil {
		// A full disk is temporary: the core retries later.
		return sdk.ResultAll(req, sdk.StatusTemporary, 0, "4.3.0", err.Error()), nil
	}
	return sdk.ResultAll(req, sdk.StatusDelivered, 250, "2.0.0", "written to "+name), nil
}

func writeFile(name, header string, msg io.Reader) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	_, err = io.WriteString(f, header)
	if err == nil {
		_, err = io.Copy(f, msg)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
	}
	return err
}

func main() {
	sdk.Serve(&sdk.Plugin{Name: "transport-file", Version: "1.0.0", Transport: &transport{dirs: map[string]string{}}})
}
