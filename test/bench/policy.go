package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"

	"github.com/switchyard-mta/switchyard/test/mtatest"
)

// The sender of the policy runs: relay.test publishes SPF, DKIM and DMARC
// records that pass, and 127.0.0.1 has a forward-confirmed PTR, so that
// policy-msgauth does every check and lookup it would for real mail.
const (
	benchDomain   = "relay.test"
	benchSelector = "bench"
)

// zoneServer answers DNS queries from fixed records, as a warm caching
// resolver on loopback would: the cost measured is the checks', not the
// network's.
type zoneServer struct {
	rrs  map[string][]dns.RR // By lower-case name and type, "name/TXT".
	srv  *dns.Server
	Addr string
}

func startZone(lines []string) (*zoneServer, error) {
	z := &zoneServer{rrs: map[string][]dns.RR{}}
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			return nil, fmt.Errorf("zone line %q: %w", l, err)
		}
		key := strings.ToLower(rr.Header().Name) + "/" + dns.TypeToString[rr.Header().Rrtype]
		z.rrs[key] = append(z.rrs[key], rr)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	z.Addr = pc.LocalAddr().String()
	z.srv = &dns.Server{PacketConn: pc, Handler: z}
	go z.srv.ActivateAndServe()
	return z, nil
}

func (z *zoneServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) == 1 {
		q := req.Question[0]
		m.Answer = z.rrs[strings.ToLower(q.Name)+"/"+dns.TypeToString[q.Qtype]]
		if m.Answer == nil {
			known := false
			for k := range z.rrs {
				known = known || strings.HasPrefix(k, strings.ToLower(q.Name)+"/")
			}
			if !known {
				m.Rcode = dns.RcodeNameError
			}
			// As a real zone: the SOA says how long the absence holds
			// (RFC 2308 §3).
			soa, _ := dns.NewRR(benchDomain + ". 300 IN SOA ns." + benchDomain + ". hostmaster." + benchDomain + ". 1 3600 600 86400 300")
			m.Ns = []dns.RR{soa}
		}
	}
	w.WriteMsg(m)
}

func (z *zoneServer) Close() { z.srv.Shutdown() }

// signedMessage returns a message from benchDomain of about size bytes
// with an ed25519 DKIM signature, and the key record to publish.
func signedMessage(size int) ([]byte, string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	msg := mtatest.MakeMessage("app@"+benchDomain, "sink@example.net", "bench", size)
	var b bytes.Buffer
	err = dkim.Sign(&b, bytes.NewReader(msg), &dkim.SignOptions{Domain: benchDomain, Selector: benchSelector, Signer: priv,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed})
	if err != nil {
		return nil, "", err
	}
	return b.Bytes(), "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
}

// benchZone is the DNS of the policy runs.
func benchZone(record string) []string {
	return []string{
		benchDomain + `. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
		"_dmarc." + benchDomain + `. 300 IN TXT "v=DMARC1; p=reject"`,
		benchSelector + "._domainkey." + benchDomain + `. 300 IN TXT "` + record + `"`,
		"1.0.0.127.in-addr.arpa. 300 IN PTR client." + benchDomain + ".",
		"client." + benchDomain + ". 300 IN A 127.0.0.1",
		`client.` + benchDomain + `. 300 IN TXT "v=spf1 a -all"`,
	}
}

// warmGreylist makes the greylist pass the bench's one triplet: a first
// attempt is refused with 451, one after its delay (1s) is let through
// and remembered.
func warmGreylist(addr, from, to string) error {
	for attempt := 0; ; attempt++ {
		c, err := mtatest.Dial(addr, false, false)
		if err != nil {
			return err
		}
		err = c.Hello("client." + benchDomain)
		if err == nil {
			err = c.Mail(from, nil)
		}
		if err == nil {
			err = c.Rcpt(to, nil)
		}
		c.Close()
		if err == nil {
			return nil
		}
		if attempt == 5 || !strings.Contains(err.Error(), "451") {
			return fmt.Errorf("greylist warm-up: %w", err)
		}
		time.Sleep(1500 * time.Millisecond)
	}
}

// policyConfig is the part of the bench configuration for the policy runs:
// two more inbound listeners, one with policy-msgauth, one with it and the
// greylist.
func policyConfig(bin *mtatest.Binaries, resolver, mxAuth, mxGrey string) string {
	return fmt.Sprintf(`
[[listeners]]
name = "mx-msgauth"
kind = "smtp"
address = %q
relay_networks = ["127.0.0.0/8"]
policies = ["msgauth"]
[[listeners]]
name = "mx-greylist"
kind = "smtp"
address = %q
relay_networks = ["127.0.0.0/8"]
policies = ["msgauth", "greylist"]
[plugins.policy-msgauth]
path = %q
[plugins.policy-greylist]
path = %q
[policies.msgauth]
plugin = "policy-msgauth"
[policies.msgauth.config]
resolver = %q
[policies.greylist]
plugin = "policy-greylist"
[policies.greylist.config]
delay = "1s"
`, mxAuth, mxGrey, bin.Plugins["policy-msgauth"], bin.Plugins["policy-greylist"], resolver)
}
