package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/switchyard-mta/switchyard/sdk/dkimkey"
)

// runDKIMGen makes a DKIM signing key, writes it to a new file and prints
// the TXT record to publish and the policy-dkimsign table that uses it. It
// needs no configuration.
func runDKIMGen(c *cmdContext) error {
	const usage = "usage: mta dkim gen [-rsa] DOMAIN SELECTOR KEYFILE"
	if len(c.args) != 3 {
		return usageErr("%s", usage)
	}
	domain, selector, file := c.args[0], c.args[1], c.args[2]
	if file == "" {
		return usageErr("empty KEYFILE; %s", usage)
	}
	d, err := dkimkey.CheckName(selector, domain)
	if err != nil {
		return usageErr("%s", strings.TrimPrefix(err.Error(), "dkimkey: "))
	}
	if _, err := os.Lstat(file); err == nil {
		return usageErr("%s exists; not overwritten", file)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	key, pemData, err := dkimkey.Generate(flagBool(c, "rsa"))
	if err != nil {
		return err
	}
	record, err := dkimkey.Record(key.Public())
	if err != nil {
		return err
	}
	if err := writeNew(file, pemData, 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return usageErr("%s exists; not overwritten", file)
		}
		return err
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		abs = file
	}
	kind := fmt.Sprintf("RSA %d bits", dkimkey.GenerateRSABits)
	if _, ok := key.Public().(ed25519.PublicKey); ok {
		kind = "ed25519"
	}
	fmt.Fprintf(c.stdout, `wrote %s (DKIM private key, %s, mode 0600)

Publish this TXT record in the zone of %s:
%s

Then sign with it: add this table to a policy-dkimsign instance, here
[policies.dkim], on the submission listeners:
[[policies.dkim.config.keys]]
domain = %s
selector = %s
key_file = %s
`, file, kind, d.ASCII, dkimkey.ZoneRecord(selector, d.ASCII, record), tomlQuote(d.ASCII), tomlQuote(selector), tomlQuote(abs))
	if kind == "ed25519" {
		fmt.Fprintf(c.stdout, `
Not every verifier checks ed25519 signatures yet: sign with an RSA key as
well (RFC 8463 §5), made with mta dkim gen -rsa under another selector.
`)
	}
	return nil
}

// flagBool reports whether the boolean command flag name was set true.
func flagBool(c *cmdContext, name string) bool {
	for _, f := range c.flags {
		if f == "-"+name+"=true" {
			return true
		}
	}
	return false
}

// tomlQuote quotes s as a TOML basic string.
func tomlQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
