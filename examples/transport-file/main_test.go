package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/plugintest"
)

func TestDeliverWritesFile(t *testing.T) {
	ctx := context.Background()
	c := plugintest.Connect(t, &sdk.Plugin{Name: "transport-file", Transport: &transport{dirs: map[string]string{}}}, &plugintest.Host{})
	confDir := t.TempDir()
	if err := c.Configure(ctx, &sdk.Configuration{Kind: sdk.KindTransport, Instance: "x", Table: map[string]any{"dir": "out"}, ConfigDir: confDir}); err != nil {
		t.Fatal(err)
	}
	if err := c.Configure(ctx, &sdk.Configuration{Kind: sdk.KindTransport, Instance: "y", Table: map[string]any{}}); err == nil || !strings.Contains(err.Error(), "dir: required") {
		t.Fatalf("missing dir: got %v", err)
	}
	body := "Subject: hi\r\n\r\nhello\r\n"
	res, err := c.Transport().Deliver(ctx, &sdk.DeliverRequest{Instance: "x", QueueID: "q1", Attempt: 1, From: "a@example.org",
		Recipients: []sdk.Recipient{{Address: "b@example.net"}, {Address: "c@example.net"}}, Message: strings.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Recipients {
		if r.Status != sdk.StatusDelivered {
			t.Fatalf("result %+v", r)
		}
	}
	got, err := os.ReadFile(filepath.Join(confDir, "out", "q1-1.eml"))
	if err != nil {
		t.Fatal(err)
	}
	want := "X-Envelope-From: <a@example.org>\r\nX-Envelope-To: b@example.net, c@example.net\r\n" + body
	if string(got) != want {
		t.Fatalf("file holds %q, want %q", got, want)
	}
}
