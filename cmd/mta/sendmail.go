package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/switchyard-mta/switchyard/core/certs"
	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/pickup"
	"github.com/switchyard-mta/switchyard/sdk/clientcert"
	"github.com/switchyard-mta/switchyard/sdk/smtpclient"
)

const sendmailUsage = `usage: mta sendmail [-config FILE] [-t] [-i] [-f SENDER] [RECIPIENT ...] < MESSAGE

Submit a message read from standard input, as sendmail does. Without a
[sendmail] server, username or client_key, it goes to the running server
through its local pickup socket, no password needed: the sender is
USER@hostname of the Unix user (only root and the server's user may give
another with -f). Otherwise it goes to the [sendmail] submission server,
logging in by the TLS client key (AUTH EXTERNAL) if set, else with the
strongest SASL mechanism it offers. Lines may end in LF; they are sent
with CRLF.

  -t         also send to the addresses in To, Cc and Bcc; Bcc is removed
  -i, -oi    a line with a single dot does not end the message
  -f SENDER  the envelope sender (also -r); default [sendmail] from
  -F NAME    the sender's full name, for a From header the message lacks
Other sendmail options (-o..., -B..., -bm, -od..., -v) are accepted and ignored.
Exit status: 0 sent; 1 not sent (the server's reply is printed); 2 bad input.
`

// sendmailArgs are the parsed options of `mta sendmail`.
type sendmailArgs struct {
	config     string
	fromHeader bool // -t
	ignoreDots bool // -i
	sender     string
	fullName   string
	rcpts      []string
}

// parseSendmailArgs parses sendmail's options, which do not follow Go's
// flag conventions (-oi, -fADDR).
func parseSendmailArgs(argv []string) (*sendmailArgs, error) {
	a := &sendmailArgs{config: defaultConfigPath()}
	value := func(i *int, opt, rest string) (string, error) {
		if rest != "" {
			return rest, nil
		}
		if *i+1 >= len(argv) {
			return "", fmt.Errorf("option %s needs a value", opt)
		}
		*i++
		return argv[*i], nil
	}
	for i := 0; i < len(argv); i++ {
		arg := argv[i]
		if arg == "--" {
			a.rcpts = append(a.rcpts, argv[i+1:]...)
			break
		}
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			a.rcpts = append(a.rcpts, arg)
			continue
		}
		var err error
		switch {
		case arg == "-config" || arg == "--config" || strings.HasPrefix(arg, "-config="):
			a.config, err = value(&i, "-config", strings.TrimPrefix(strings.TrimPrefix(arg, "-config"), "="))
		case arg == "-t":
			a.fromHeader = true
		case arg == "-i" || arg == "-oi":
			a.ignoreDots = true
		case strings.HasPrefix(arg, "-f"), strings.HasPrefix(arg, "-r"):
			a.sender, err = value(&i, arg[:2], arg[2:])
		case strings.HasPrefix(arg, "-F"):
			a.fullName, err = value(&i, "-F", arg[2:])
		case strings.HasPrefix(arg, "-o"), strings.HasPrefix(arg, "-B"), strings.HasPrefix(arg, "-od"),
			arg == "-bm", arg == "-v", arg == "-m", arg == "-n":
			// Accepted for compatibility; no effect.
		default:
			return nil, fmt.Errorf("unknown option %s", arg)
		}
		if err != nil {
			return nil, err
		}
	}
	return a, nil
}

// runSendmail is `mta sendmail`, and mta itself when run as "sendmail".
func runSendmail(argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	for _, a := range argv {
		if a == "-h" || a == "--help" || a == "-help" {
			fmt.Fprint(stdout, sendmailUsage)
			return 0
		}
	}
	fail := func(code int, format string, args ...any) int {
		fmt.Fprintf(stderr, "mta sendmail: "+format+"\n", args...)
		return code
	}
	a, err := parseSendmailArgs(argv)
	if err != nil {
		fmt.Fprint(stderr, sendmailUsage)
		return fail(2, "%v", err)
	}
	cfg, err := config.Load(a.config)
	if err != nil {
		return fail(2, "invalid configuration:\n%v", err)
	}
	raw, err := io.ReadAll(io.LimitReader(stdin, int64(cfg.Limits.MaxMessageSize)+1))
	if err != nil {
		return fail(1, "reading the message: %v", err)
	}
	if int64(len(raw)) > int64(cfg.Limits.MaxMessageSize) {
		return fail(2, "message larger than limits.max_message_size (%v)", cfg.Limits.MaxMessageSize)
	}
	// Without a [sendmail] server or login, the message goes to the
	// running server's pickup socket, as the local user.
	local := cfg.Sendmail.Server == "" && cfg.Sendmail.Username == "" && cfg.Sendmail.ClientKey == ""
	sender := a.sender
	if sender == "" {
		sender = cfg.Sendmail.From
	}
	envSender := sender // For pickup: empty is USER@hostname, decided by the server.
	if sender == "" && local {
		if u, err := user.Current(); err == nil {
			sender = u.Username + "@" + cfg.Hostname
		}
	}
	if sender == "" {
		sender = cfg.Sendmail.Username
	}
	if sender == "" || !strings.Contains(sender, "@") {
		return fail(2, "no sender address: give -f ADDRESS or set [sendmail] from")
	}
	msg, headerRcpts, err := prepareMessage(raw, a, sender, cfg.Hostname, time.Now())
	if err != nil {
		return fail(2, "%v", err)
	}
	rcpts := append(a.rcpts, headerRcpts...)
	if len(rcpts) == 0 {
		return fail(2, "no recipients: give them as arguments, or -t to take them from the message")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if local {
		_, err := pickup.Submit(ctx, pickup.SocketPath(cfg.DataDir), pickup.Request{From: envSender, To: rcpts, Message: msg})
		var ue *pickup.UsageError
		switch {
		case errors.Is(err, pickup.ErrNotRunning):
			return fail(1, "no server runs on %s (start mta serve), and [sendmail] names no server to submit to", cfg.DataDir)
		case errors.As(err, &ue):
			return fail(2, "%v", err)
		case err != nil:
			return fail(1, "%v", err)
		}
		return 0
	}
	refused, err := submit(ctx, cfg, sender, rcpts, msg)
	if err != nil {
		return fail(1, "%v", err)
	}
	for _, r := range refused {
		fmt.Fprintf(stderr, "mta sendmail: %s\n", r)
	}
	if len(refused) > 0 {
		return 1
	}
	return 0
}

// prepareMessage ends the message at a lone dot (unless -i), makes every
// line end in CRLF, takes the recipients of To, Cc and Bcc with -t and
// removes Bcc, and adds the From, Date and Message-ID a message must have
// (RFC 5322 §3.6) when they are missing.
func prepareMessage(raw []byte, a *sendmailArgs, sender, hostname string, now time.Time) (msg []byte, rcpts []string, err error) {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 64<<10), len(raw)+1)
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "." && !a.ignoreDots {
			break
		}
		lines = append(lines, line)
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	// The header ends at the first empty line (or with the message).
	end := len(lines)
	for i, l := range lines {
		if l == "" {
			end = i
			break
		}
	}
	header := strings.Join(lines[:end], "\r\n") + "\r\n\r\n"
	parsed, err := mail.ReadMessage(strings.NewReader(header))
	if err != nil {
		return nil, nil, fmt.Errorf("message header: %v", err)
	}
	if a.fromHeader {
		for _, key := range []string{"To", "Cc", "Bcc"} {
			for _, v := range parsed.Header[key] {
				if strings.TrimSpace(v) == "" {
					continue
				}
				addrs, err := mail.ParseAddressList(v)
				if err != nil {
					return nil, nil, fmt.Errorf("%s header: %v", key, err)
				}
				for _, ad := range addrs {
					rcpts = append(rcpts, ad.Address)
				}
			}
		}
	}
	// Drop Bcc fields with their continuation lines.
	var kept []string
	inBcc := false
	for _, l := range lines[:end] {
		if l != "" && (l[0] == ' ' || l[0] == '\t') {
			if !inBcc {
				kept = append(kept, l)
			}
			continue
		}
		name, _, _ := strings.Cut(l, ":")
		inBcc = strings.EqualFold(strings.TrimSpace(name), "Bcc")
		if !inBcc {
			kept = append(kept, l)
		}
	}
	var add []string
	if parsed.Header.Get("From") == "" {
		from := mail.Address{Name: a.fullName, Address: sender}
		add = append(add, "From: "+from.String())
	}
	if parsed.Header.Get("Date") == "" {
		add = append(add, "Date: "+now.Format(time.RFC1123Z))
	}
	if parsed.Header.Get("Message-Id") == "" {
		b := make([]byte, 12)
		rand.Read(b)
		add = append(add, fmt.Sprintf("Message-ID: <%s@%s>", hex.EncodeToString(b), hostname))
	}
	all := append(append(add, kept...), lines[end:]...)
	return []byte(strings.Join(all, "\r\n") + "\r\n"), rcpts, nil
}

// submit sends msg through the configured submission server and returns
// the refused recipients; an error means nothing was sent.
func submit(ctx context.Context, cfg *config.Config, sender string, rcpts []string, msg []byte) (refused []string, err error) {
	sm := cfg.Sendmail
	addr, mode, tc, err := sendmailServer(cfg)
	if err != nil {
		return nil, err
	}
	if sm.ClientKey != "" {
		cert, err := clientcert.Load(sm.ClientCert, sm.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("[sendmail] client_key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	c, err := smtpclient.Dial(ctx, addr, &smtpclient.Config{EHLO: cfg.Hostname, TLS: mode, TLSConfig: tc})
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	defer c.Close()
	var password string
	if sm.Username != "" {
		pw, err := os.ReadFile(sm.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("reading [sendmail] password_file: %w", err)
		}
		password, _, _ = strings.Cut(strings.TrimRight(string(pw), "\r\n"), "\n")
		password = strings.TrimRight(password, "\r")
	}
	if mech, err := c.Login(sm.ClientKey != "", sm.Username, password, sm.Mechanisms); err != nil {
		as := sm.Username
		if mech == "EXTERNAL" {
			as = "the client key " + sm.ClientKey
		}
		return nil, fmt.Errorf("authenticating as %s: %w", as, err)
	}
	reply, err := c.Mail(sender, &smtpclient.MailOptions{Size: int64(len(msg)), Body: body8bit(msg)})
	if err != nil {
		return nil, err
	}
	if !reply.Positive() {
		return nil, fmt.Errorf("MAIL FROM:<%s>: %s", sender, reply)
	}
	accepted := 0
	for _, r := range rcpts {
		reply, err := c.Rcpt(r, nil)
		if err != nil {
			return nil, err
		}
		if !reply.Positive() {
			refused = append(refused, fmt.Sprintf("recipient %s refused: %s", r, reply))
			continue
		}
		accepted++
	}
	if accepted == 0 {
		return nil, fmt.Errorf("every recipient refused:\n%s", strings.Join(refused, "\n"))
	}
	if reply, err = c.Data(); err != nil {
		return nil, err
	} else if reply.Code != 354 {
		return nil, fmt.Errorf("DATA: %s", reply)
	}
	if reply, err = c.WriteData(bytes.NewReader(msg)); err != nil {
		return nil, err
	} else if !reply.Positive() {
		return nil, fmt.Errorf("message refused: %s", reply)
	}
	c.Quit()
	return refused, nil
}

// body8bit declares 8BITMIME for a message with 8-bit bytes (RFC 6152).
func body8bit(msg []byte) string {
	for _, b := range msg {
		if b >= 0x80 {
			return "8BITMIME"
		}
	}
	return ""
}

// sendmailServer returns the server to submit to, its TLS mode and the TLS
// configuration to verify it with.
func sendmailServer(cfg *config.Config) (string, smtpclient.TLSMode, *tls.Config, error) {
	sm := cfg.Sendmail
	addr, tlsName, serverName := sm.Server, sm.TLS, ""
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if addr == "" {
		// This configuration's own submission listener.
		for _, l := range cfg.Listeners {
			if l.Kind != config.KindSubmission && l.Kind != config.KindSubmissions {
				continue
			}
			addr, serverName = l.Address, cfg.Hostname
			if tlsName == "" {
				tlsName = map[string]string{config.KindSubmission: "starttls", config.KindSubmissions: "tls"}[l.Kind]
			}
			if cfg.TLS.SelfSigned {
				cert, _ := certs.SelfSignedPaths(cfg.DataDir)
				if pem, err := os.ReadFile(cert); err == nil {
					roots.AppendCertsFromPEM(pem)
				}
			}
			break
		}
		if addr == "" {
			return "", 0, nil, errors.New("no [sendmail] server and no submission listener in the configuration")
		}
	}
	if serverName == "" {
		serverName, _, _ = net.SplitHostPort(addr)
	}
	if sm.CAFile != "" {
		pem, err := os.ReadFile(sm.CAFile)
		if err != nil || !roots.AppendCertsFromPEM(pem) {
			return "", 0, nil, fmt.Errorf("[sendmail] ca_file %s: no certificates read (%v)", sm.CAFile, err)
		}
	}
	mode := map[string]smtpclient.TLSMode{"": smtpclient.TLSStartTLS, "starttls": smtpclient.TLSStartTLS, "tls": smtpclient.TLSImplicit, "none": smtpclient.TLSNone}[tlsName]
	return addr, mode, &tls.Config{ServerName: serverName, RootCAs: roots, MinVersion: tls.VersionTLS12}, nil
}
