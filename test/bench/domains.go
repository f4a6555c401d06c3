package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// The many-destinations run: domains recipient domains, their MX records
// spread over mxHosts host names, all at one loopback receiver.
const (
	destDomains = 1000
	destMX      = 10
	destZone    = "dest.test"
	noReuseZone = "noreuse.test" // Its domains go through an instance that keeps no session.
	// destTarget is the rate to many domains the issue asks for, as a
	// ratio to the rate to one.
	destTarget = 0.6
)

// domainsBench delivers n messages through transport-direct: all to one
// domain, then each to one of destDomains domains in turn, and again
// without session reuse. It prints the rates, the ratio of many domains to
// one, and how many connections the receiver saw (reuse per MX host keeps
// it near the sessions in parallel, not the messages).
func domainsBench(bin *mtatest.Binaries, n, conns int, msg []byte) error {
	sink, err := mtatest.StartSink(false, nil)
	if err != nil {
		return err
	}
	defer sink.Close()
	var zone []string
	for i := range destMX {
		zone = append(zone, fmt.Sprintf("mx%d.%s. 300 IN A 127.0.0.1", i, destZone))
	}
	zone = append(zone, fmt.Sprintf("one.%s. 300 IN MX 10 mx0.%s.", destZone, destZone))
	for i := range destDomains {
		for _, z := range []string{destZone, noReuseZone} {
			zone = append(zone, fmt.Sprintf("d%d.%s. 300 IN MX 10 mx%d.%s.", i, z, i%destMX, destZone))
		}
	}
	z, err := startZone(zone)
	if err != nil {
		return err
	}
	defer z.Close()
	dir, err := os.MkdirTemp("", "switchyard-bench-domains-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	mx := mtatest.FreeAddr()
	srv, err := mtatest.StartServer(bin, dir, domainsConfig(mx, bin.Plugins["transport-direct"], z.Addr, sink.Addr))
	if err != nil {
		return err
	}
	defer srv.Stop()
	logTail := func() string { return tail(srv.Log(), 20) }

	fmt.Printf("\nmany destinations: %d messages through transport-direct, %d sessions in\n", n, conns)
	one := load{addr: mx, from: "app@" + benchDomain, to: "sink@one." + destZone, n: n, conns: conns, msg: msg}
	many := one
	many.toFor = func(i int64) string { return fmt.Sprintf("sink@d%d.%s", i%destDomains, destZone) }
	noReuse := many
	noReuse.toFor = func(i int64) string { return fmt.Sprintf("sink@d%d.%s", i%destDomains, noReuseZone) }
	var rates [3]float64
	for i, r := range []struct {
		name string
		l    load
	}{
		{"transport-direct: one domain", one},
		{fmt.Sprintf("transport-direct: %d domains, %d MX hosts", destDomains, destMX), many},
		{"  the same, sessions not reused", noReuse},
	} {
		before := sink.Connections()
		rate, err := measure(sink, r.l, n, r.name, 0, 0, 0, srv.PID(), logTail)
		if err != nil {
			return err
		}
		rates[i] = rate
		fmt.Printf("%-48s %d connections to the receiver for %d messages\n", "", sink.Connections()-before, n)
	}
	ratio := rates[1] / rates[0]
	verdict := "within"
	if ratio < destTarget {
		verdict = "under"
	}
	fmt.Printf("%-48s ×%.2f of one domain (target ×%.1f: %s); ×%.2f without reuse\n", "many domains", ratio, destTarget, verdict, rates[2]/rates[0])
	return nil
}

// domainsConfig is the configuration of the many-destinations run: every
// domain is routed to transport-direct, which asks resolver and delivers
// to the receiver's port.
func domainsConfig(mx, plugin, resolver, sink string) string {
	port := sink[strings.LastIndexByte(sink, ':')+1:]
	return configHead + fmt.Sprintf(`%s[plugins.transport-direct]
path = %q
[transports.direct]
plugin = "transport-direct"
[transports.direct.config]
resolver = %q
port = %s
[transports.direct-noreuse]
plugin = "transport-direct"
[transports.direct-noreuse.config]
resolver = %q
port = %s
idle_timeout = "0s"
[[routes]]
to_domains = [".%s"]
transport = "direct-noreuse"
[[routes]]
transport = "direct"
[domains."example.org"]
`, mxListener(mx), plugin, resolver, port, resolver, port, noReuseZone)
}
