package transportdirect

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/direct/directtest"
	"github.com/switchyard-mta/switchyard/sdk/plugintest"
)

// TestPlugin delivers over the plugin protocol (real gRPC) with DANE,
// MTA-STS and opportunistic TLS, configured by the keys of the issue.
func TestPlugin(t *testing.T) {
	ca := directtest.NewCA(t)
	daneCert := (*directtest.CA)(nil).Issue(t, "mx.dane.test")
	stsCert := ca.Issue(t, "mx.sts.test")
	port, ls := directtest.Listen(t, "127.0.0.2", "127.0.0.3", "127.0.0.4")
	rvDANE := directtest.NewReceiver(t, ls[0], directtest.ReceiverOptions{Cert: &daneCert})
	rvSTS := directtest.NewReceiver(t, ls[1], directtest.ReceiverOptions{Cert: &stsCert})
	rvPlain := directtest.NewReceiver(t, ls[2], directtest.ReceiverOptions{})
	stsPort, sl := directtest.Listen(t, "127.0.0.9")
	ps := directtest.NewPolicyServer(t, sl[0], ca.Issue(t, "mta-sts.sts.test"))
	ps.Set("sts.test", "version: STSv1\nmode: enforce\nmx: mx.sts.test\nmax_age: 86400\n")
	tlsaName := fmt.Sprintf("_%d._tcp.mx.dane.test.", port)
	dns := directtest.NewDNS(t, []string{
		"dane.test. MX 10 mx.dane.test.",
		"mx.dane.test. A 127.0.0.2",
		tlsaName + " TLSA 3 1 1 " + directtest.TLSA311(daneCert),
		"sts.test. MX 10 mx.sts.test.",
		"mx.sts.test. A 127.0.0.3",
		`_mta-sts.sts.test. TXT "v=STSv1; id=1"`,
		"mta-sts.sts.test. A 127.0.0.9",
		"plain.test. A 127.0.0.4",
		"nullmx.test. MX 0 .",
	}, "dane.test.", "mx.dane.test.", tlsaName)

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := plugintest.Connect(t, &sdk.Plugin{Name: "transport-direct", Version: "0.1.0", Transport: newTransport(log)}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conf := func(table map[string]any) error {
		return c.Configure(ctx, &sdk.Configuration{Kind: sdk.KindTransport, Instance: "direct", KeyPath: "transports.direct.config",
			Table: table, Hostname: "sender.test", ConfigDir: dir, DataDir: dataDir})
	}
	for _, tc := range []struct {
		table map[string]any
		key   string
	}{
		{map[string]any{"port": int64(-1)}, "port"},
		{map[string]any{"mta_sts_port": int64(70000)}, "mta_sts_port"},
		{map[string]any{"ca_file": "missing.pem"}, "ca_file"},
		{map[string]any{"idle_timeout": "soon"}, "idle_timeout"},
		{map[string]any{"idle_timeout": "-1s"}, "idle_timeout"},
		{map[string]any{"max_idle": int64(-1)}, "max_idle"},
		{map[string]any{"dns_cache": int64(-1)}, "dns_cache"},
		{map[string]any{"resolver": "127.0.0.1:dns"}, "resolver"},
		{map[string]any{"bogus": true}, "bogus"},
	} {
		err := conf(tc.table)
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("config %v: error %v, want one about %s", tc.table, err, tc.key)
		}
	}
	err := conf(map[string]any{"resolver": dns.Addr, "trust_ad": true, "port": int64(port), "ca_file": "ca.pem", "mta_sts_port": int64(stsPort)})
	if err != nil {
		t.Fatal(err)
	}

	req := &sdk.DeliverRequest{Instance: "direct", QueueID: "q1", Attempt: 1, From: "a@sender.test",
		Recipients: []sdk.Recipient{{Address: "d@dane.test"}, {Address: "s@sts.test"}, {Address: "p@plain.test"}, {Address: "n@nullmx.test"}},
		Message:    strings.NewReader("Subject: hi\r\n\r\nbody\r\n")}
	res, err := c.Transport().Deliver(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		status sdk.Status
		host   string
		ip     string
		verif  sdk.Verification
	}{
		{sdk.StatusDelivered, "mx.dane.test", "127.0.0.2", sdk.VerifyDANE},
		{sdk.StatusDelivered, "mx.sts.test", "127.0.0.3", sdk.VerifyMTASTS},
		{sdk.StatusDelivered, "plain.test", "127.0.0.4", sdk.VerifyNone},
		{sdk.StatusPermanent, "", "", sdk.VerifyNone},
	}
	if len(res.Recipients) != len(want) {
		t.Fatalf("%d results", len(res.Recipients))
	}
	for i, w := range want {
		r := res.Recipients[i]
		if r.Status != w.status || r.RemoteHost != w.host || r.RemoteIP != w.ip || r.TLS.Verification != w.verif {
			t.Errorf("%s: %v %s %s %v (%s), want %v %s %s %v", r.Address, r.Status, r.RemoteHost, r.RemoteIP, r.TLS.Verification, r.Text, w.status, w.host, w.ip, w.verif)
		}
	}
	if r := res.Recipients[3]; r.EnhancedCode != "5.1.10" {
		t.Errorf("null MX: %s, want 5.1.10", r.EnhancedCode)
	}
	for _, rv := range []*directtest.Receiver{rvDANE, rvSTS, rvPlain} {
		if n := len(rv.Messages()); n != 1 {
			t.Errorf("receiver %s got %d messages", rv.Addr, n)
		}
	}
	// RFC 8461 §5.1: the policy is cached in the data directory.
	if _, err := os.Stat(filepath.Join(dataDir, "mta-sts")); err != nil {
		t.Errorf("no MTA-STS cache: %v", err)
	}
	if _, err := c.Transport().Deliver(ctx, &sdk.DeliverRequest{Instance: "other"}); err == nil {
		t.Error("unconfigured instance: no error")
	}
}
