package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/switchyard-mta/switchyard/core/certs"
	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/dnsrecords"
)

// runDNSRecords prints the DNS records to publish for a local domain, as
// zone-file text with comments.
func runDNSRecords(c *cmdContext) error {
	if len(c.args) != 1 {
		return usageErr("want one DOMAIN, got %q", c.args)
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	cert, certFile, err := serverCert(cfg)
	if err != nil {
		return err
	}
	s, err := dnsrecords.Generate(cfg, c.args[0], cert)
	if err != nil {
		// An unknown domain, or a transport's remote_ips or hostname.
		return usageErr("%v", err)
	}
	if certFile != "" {
		fmt.Fprintf(c.stdout, "; Certificate for TLSA: %s\n", certFile)
	}
	fmt.Fprint(c.stdout, s.Zone())
	return nil
}

// serverCert returns the leaf certificate inbound SMTP presents, as the
// server picks it (tls.self_signed first, then tls.cert), and its file. It is
// nil when none is configured or the file does not exist yet; a self-signed
// one is not generated here: `mta serve` does that on first start.
func serverCert(cfg *config.Config) (*x509.Certificate, string, error) {
	file := cfg.TLS.Cert
	if cfg.TLS.SelfSigned {
		file, _ = certs.SelfSignedPaths(cfg.DataDir)
	}
	if file == "" {
		return nil, "", nil
	}
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil
	} else if err != nil {
		return nil, "", fmt.Errorf("reading certificate: %w", err)
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, "", fmt.Errorf("certificate %s: no PEM CERTIFICATE block", file)
		}
		if b.Type == "CERTIFICATE" {
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, "", fmt.Errorf("certificate %s: %w", file, err)
			}
			return cert, file, nil
		}
	}
}
