package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/switchyard-mta/switchyard/core/admin"
	"github.com/switchyard-mta/switchyard/core/ctl"
	"github.com/switchyard-mta/switchyard/core/store"
	"github.com/switchyard-mta/switchyard/sdk/clientcert"
)

// maxCertInput bounds the PEM read by tlspubkey add.
const maxCertInput = 1 << 20

// runTLSPubKeyAdd sends only the certificate of standard input on: a
// private key piped along with it goes no further.
func runTLSPubKeyAdd(c *cmdContext) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	if len(c.args) < 1 || len(c.args) > 2 {
		return usageErr("usage: mta tlspubkey add [-no-imap-preauth] ADDRESS [NAME] < cert.pem")
	}
	in, err := io.ReadAll(io.LimitReader(c.stdin, maxCertInput+1))
	if err != nil {
		return fmt.Errorf("reading the certificate: %w", err)
	}
	if len(in) > maxCertInput {
		return usageErr("standard input is larger than %d bytes: want a PEM certificate", maxCertInput)
	}
	cert, err := admin.ParseCertificatePEM(in)
	if err != nil {
		return usageErr("%v", err)
	}
	req := ctl.Request{
		Args:  slices.Concat(strings.Fields(c.cmd.words), c.flags, c.args),
		Stdin: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
	}
	return callAdmin(c, cfg, req)
}

// runTLSPubKeyGen writes STEM.key, STEM.crt and STEM.p12 and says how to
// register and use them. It needs no configuration.
func runTLSPubKeyGen(c *cmdContext) error {
	if len(c.args) != 1 || c.args[0] == "" {
		return usageErr("usage: mta tlspubkey gen STEM")
	}
	stem := c.args[0]
	name := filepath.Base(stem)
	paths := []string{stem + ".key", stem + ".crt", stem + ".p12"}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return usageErr("%s exists; not overwritten", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	der, err := clientcert.SelfSigned(key, name)
	if err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	// An empty password: mail clients ask for one on import, and offer
	// an empty one; the key file is what to keep safe.
	p12, err := pkcs12.Modern2023.Encode(key, cert, nil, "")
	if err != nil {
		return fmt.Errorf("PKCS #12: %w", err)
	}
	contents := [][]byte{
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		p12,
	}
	for i, p := range paths {
		perm := fs.FileMode(0o600)
		if i == 1 {
			perm = 0o644 // Only the certificate is public.
		}
		if err := writeNew(p, contents[i], perm); err != nil {
			for _, written := range paths[:i] {
				os.Remove(written)
			}
			return err
		}
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	q := make([]string, len(paths))
	for i, p := range paths {
		q[i] = shellQuote(p)
	}
	fmt.Fprintf(c.stdout, `wrote %s (private key, mode 0600), %s (certificate), %s (both, for mail clients; empty password)
fingerprint: %s

Register it for an address of an account:
  mta tlspubkey add ADDRESS %s < %s

The same with openssl:
  openssl genpkey -algorithm ed25519 -out %s
  openssl req -new -x509 -key %s -subj %s -days 36500 -out %s
  openssl pkcs12 -export -inkey %s -in %s -passout pass: -out %s
`, paths[0], paths[1], paths[2], store.TLSFingerprint(sum[:]), shellQuote(name), q[1],
		q[0], q[0], shellQuote("/CN="+name), q[1], q[0], q[1], q[2])
	return nil
}

// writeNew creates the file at path with perm (less the umask), and fails
// if it exists.
func writeNew(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
