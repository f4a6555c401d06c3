package admin

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchyard-mta/switchyard/core/ctl"
	"github.com/switchyard-mta/switchyard/core/store"
	"github.com/switchyard-mta/switchyard/sdk/mailaddr"
)

// tlsPubKey runs `tlspubkey add|list|get|rm|set-preauth`.
func (h *Handles) tlsPubKey(ctx context.Context, verb string, args []string, stdin []byte, out io.Writer) error {
	switch verb {
	case "add":
		return h.tlsPubKeyAdd(ctx, args, stdin, out)
	case "list":
		return h.tlsPubKeyList(ctx, args, out)
	case "get":
		return h.tlsPubKeyGet(ctx, args, out)
	case "rm":
		fp, err := fingerprintArg(args, 1, "tlspubkey rm FINGERPRINT")
		if err != nil {
			return err
		}
		if err := h.Store.RemoveTLSPublicKey(ctx, fp); err != nil {
			return notFoundUsage(err)
		}
		fmt.Fprintf(out, "key %s removed; connections with it no longer log in\n", fp)
		return nil
	case "set-preauth":
		fp, err := fingerprintArg(args, 2, "tlspubkey set-preauth FINGERPRINT true|false")
		if err != nil {
			return err
		}
		var preauth bool
		switch args[1] {
		case "true":
			preauth = true
		case "false":
		default:
			return &ctl.UsageError{Msg: fmt.Sprintf("want true or false, not %q", args[1])}
		}
		if err := h.Store.SetTLSPublicKeyPreauth(ctx, fp, preauth); err != nil {
			return notFoundUsage(err)
		}
		fmt.Fprintf(out, "key %s: IMAP pre-authentication %s\n", fp, onOff(preauth))
		return nil
	}
	return &ctl.UsageError{Msg: fmt.Sprintf("unknown command %q", "tlspubkey "+verb)}
}

func (h *Handles) tlsPubKeyAdd(ctx context.Context, args []string, stdin []byte, out io.Writer) error {
	const use = "usage: tlspubkey add [-no-imap-preauth] ADDRESS [NAME] < cert.pem"
	fs := flag.NewFlagSet("tlspubkey add", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	noPreauth := fs.Bool("no-imap-preauth", false, "")
	if err := fs.Parse(args); err != nil {
		return &ctl.UsageError{Msg: fmt.Sprintf("%v\n%s", err, use)}
	}
	args = fs.Args()
	if len(args) < 1 || len(args) > 2 {
		return &ctl.UsageError{Msg: use}
	}
	account, login, err := h.loginAddress(args[0])
	if err != nil {
		return err
	}
	var name string
	if len(args) == 2 {
		name = args[1]
		if err := checkKeyName(name); err != nil {
			return err
		}
	}
	cert, err := ParseCertificatePEM(stdin)
	if err != nil {
		return &ctl.UsageError{Msg: err.Error()}
	}
	k, err := store.NewTLSPublicKey(cert, account, login, name, *noPreauth, time.Now())
	if err != nil {
		return &ctl.UsageError{Msg: err.Error()}
	}
	if err := checkKeyName(k.Name); err != nil {
		return &ctl.UsageError{Msg: "the certificate's subject CN cannot be the key's name: " + err.Error() + "; give a NAME"}
	}
	if err := h.Store.AddTLSPublicKey(ctx, k); errors.Is(err, store.ErrKeyExists) {
		other, gerr := h.Store.TLSPublicKey(ctx, k.Fingerprint)
		if gerr != nil {
			return gerr
		}
		return &ctl.UsageError{Msg: fmt.Sprintf("key %s is already added, for %s (account %s); a key logs in one account", k.Fingerprint, other.LoginAddress, other.Account)}
	} else if err != nil {
		return err
	}
	fmt.Fprintf(out, "key %s (%s, %q) added: logs in account %s as %s", k.Fingerprint, k.Type, k.Name, account, login)
	if k.NoIMAPPreauth {
		fmt.Fprintf(out, ", IMAP by AUTHENTICATE EXTERNAL")
	}
	fmt.Fprintln(out)
	return nil
}

// loginAddress returns the account that lists addr among its addresses,
// and addr as it lists it.
func (h *Handles) loginAddress(addr string) (account, login string, err error) {
	a, perr := mailaddr.ParseAddress(addr)
	if perr != nil || a.Literal != "" {
		return "", "", &ctl.UsageError{Msg: fmt.Sprintf("invalid address %q: want one of an account's addresses", addr)}
	}
	account, ok := h.Config.AccountByLogin(addr)
	if !ok {
		return "", "", &ctl.UsageError{Msg: fmt.Sprintf("address %q is not an address of any account in %s", addr, h.Config.File)}
	}
	want := a.Localpart + "@" + a.Domain.Unicode
	for _, listed := range h.Config.Accounts[account].Addresses {
		if listed == want {
			return account, listed, nil
		}
	}
	for _, listed := range h.Config.Accounts[account].Addresses {
		if strings.EqualFold(listed, want) {
			return account, listed, nil
		}
	}
	return "", "", &ctl.UsageError{Msg: fmt.Sprintf("address %q is not an address of any account in %s", addr, h.Config.File)}
}

// checkKeyName refuses names that would garble the output of list.
func checkKeyName(name string) error {
	switch {
	case len(name) > 200:
		return &ctl.UsageError{Msg: "name longer than 200 bytes"}
	case strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f || r == '\t' }):
		return &ctl.UsageError{Msg: fmt.Sprintf("name %q has control characters", name)}
	}
	return nil
}

func (h *Handles) tlsPubKeyList(ctx context.Context, args []string, out io.Writer) error {
	if len(args) > 1 {
		return &ctl.UsageError{Msg: "usage: tlspubkey list [ACCOUNT]"}
	}
	var account string
	if len(args) == 1 {
		account = args[0]
		if err := h.checkAccount(account); err != nil {
			return err
		}
	}
	keys, err := h.Store.TLSPublicKeys(ctx, account)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		fmt.Fprintln(out, "no TLS public keys")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FINGERPRINT\tACCOUNT\tLOGIN\tNAME\tTYPE\tPREAUTH\tCREATED\tLAST-USED")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Fingerprint, k.Account, k.LoginAddress, k.Name, k.Type,
			yesNo(!k.NoIMAPPreauth), k.Created.Local().Format(time.DateTime), lastUsed(k.LastUsed))
	}
	return tw.Flush()
}

func (h *Handles) tlsPubKeyGet(ctx context.Context, args []string, out io.Writer) error {
	fp, err := fingerprintArg(args, 1, "tlspubkey get FINGERPRINT")
	if err != nil {
		return err
	}
	k, err := h.Store.TLSPublicKey(ctx, fp)
	if err != nil {
		return notFoundUsage(err)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 1, ' ', 0)
	fmt.Fprintf(tw, "fingerprint:\t%s\n", k.Fingerprint)
	fmt.Fprintf(tw, "account:\t%s\n", k.Account)
	fmt.Fprintf(tw, "login:\t%s\n", k.LoginAddress)
	fmt.Fprintf(tw, "name:\t%s\n", k.Name)
	fmt.Fprintf(tw, "type:\t%s\n", k.Type)
	fmt.Fprintf(tw, "imap preauth:\t%s\n", yesNo(!k.NoIMAPPreauth))
	fmt.Fprintf(tw, "created:\t%s\n", k.Created.Local().Format(time.DateTime))
	fmt.Fprintf(tw, "last used:\t%s\n", lastUsed(k.LastUsed))
	if err := tw.Flush(); err != nil {
		return err
	}
	return pem.Encode(out, &pem.Block{Type: "CERTIFICATE", Bytes: k.CertificateDER})
}

// fingerprintArg checks that args has n arguments, the first a key
// fingerprint as list shows it (base64url of 32 bytes; padding allowed).
func fingerprintArg(args []string, n int, use string) (string, error) {
	if len(args) != n {
		return "", &ctl.UsageError{Msg: "usage: " + use}
	}
	fp := strings.TrimRight(args[0], "=")
	if b, err := base64.RawURLEncoding.DecodeString(fp); err != nil || len(b) != 32 {
		return "", &ctl.UsageError{Msg: fmt.Sprintf("invalid fingerprint %q: want the base64url SHA-256 that mta tlspubkey list shows", args[0])}
	}
	return fp, nil
}

// notFoundUsage makes an unknown key an input error.
func notFoundUsage(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return &ctl.UsageError{Msg: "no such key: " + strings.TrimPrefix(err.Error(), store.ErrNotFound.Error()+": ")}
	}
	return err
}

// ParseCertificatePEM returns the first certificate of a PEM input. Other
// blocks (such as a private key next to it) are skipped and not kept.
func ParseCertificatePEM(data []byte) (*x509.Certificate, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PEM CERTIFICATE block in the input: want the client's certificate (cert.pem)")
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate: %w", err)
		}
		return cert, nil
	}
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func lastUsed(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format(time.DateTime)
}
