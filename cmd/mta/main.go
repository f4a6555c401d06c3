// Command mta is the Switchyard mail server and its administration tool.
//
// Every subcommand takes -config FILE (default $SWITCHYARD_CONFIG, else
// /etc/switchyard/mta.toml) after its command words, and -h to explain
// itself. Exit status: 0 success, 1 failure, 2 bad
// input (usage, invalid configuration, unknown account).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/switchyard-mta/switchyard/core/admin"
	"github.com/switchyard-mta/switchyard/core/ctl"
)

// command is one `mta` subcommand.
type command struct {
	words string // e.g. "queue list"
	args  string // Positional arguments for the usage line.
	help  string
	run   func(c *cmdContext) error
	// flags defines the command's flags besides -config. Those set are
	// passed on to the data command (see cmdContext.flags).
	flags func(fs *flag.FlagSet)
}

var commands = []command{
	{words: "serve", args: "", help: "Serve SMTP submission, inbound SMTP and the queue as configured; Ctrl-C stops gracefully.", run: runServe},
	{words: "version", args: "", help: "Print the version of mta, the Go version it was built with, and its source revision.", run: runVersion},
	{words: "config check", args: "", help: "Validate the configuration, including every plugin's own validation of its tables; exit 2 with every error.", run: runConfigCheck},
	{words: "account passwd", args: "ACCOUNT", help: "Set an account's password: asked twice on a terminal, else the first line of standard input.", run: runAdmin},
	{words: "queue list", args: "", help: "List queued messages and the state of each recipient; flags select which (-id, -account, -from, -to, -transport, -older, -newer, -state, -next-before), -json prints JSON.", run: runAdmin, flags: admin.QueueListFlags},
	{words: "queue hold", args: "FILTER|-all", help: "Hold the selected messages: their pending recipients are not attempted until released; durable before it answers.", run: runAdmin, flags: admin.QueueChangeFlags},
	{words: "queue release", args: "FILTER|-all", help: "Release held messages: their held recipients are due now.", run: runAdmin, flags: admin.QueueChangeFlags},
	{words: "queue fail", args: "FILTER|-all", help: "Fail the selected messages' recipients permanently, with a DSN to the sender saying the operator did.", run: runAdmin, flags: admin.QueueChangeFlags},
	{words: "queue drop", args: "FILTER|-all", help: "Remove the selected messages without a DSN (logged); one being delivered goes when that attempt ends.", run: runAdmin, flags: admin.QueueChangeFlags},
	{words: "queue holdrule add", args: "[-account A] [-from-domain D] [-to-domain D]", help: "Hold new messages that match (all empty: every new message), until released.", run: runAdmin, flags: admin.HoldRuleAddFlags},
	{words: "queue holdrule list", args: "", help: "List the hold rules.", run: runAdmin},
	{words: "queue holdrule rm", args: "ID", help: "Remove a hold rule; what it held stays held.", run: runAdmin},
	{words: "queue reschedule", args: "FILTER|-all [-in DURATION]", help: "Make the selected messages' pending recipients due now (as postqueue -f with -all), or after -in; durable before it answers.", run: runAdmin, flags: admin.QueueRescheduleFlags},
	{words: "queue show", args: "ID", help: "Show a queued message: its envelope, and each recipient with its state and every attempt (time, transport, reply, remote host and IP, TLS).", run: runAdmin},
	{words: "queue retired list", args: "[FILTER]", help: "List the messages that left the queue (kept for [queue] keep_retired), with each recipient's final state; the filter flags of queue list select which.", run: runAdmin, flags: admin.QueueListFlags},
	{words: "queue retired show", args: "ID", help: "Show a retired message: its envelope, Message-ID, Subject and each recipient's attempts.", run: runAdmin},
	{words: "plugin list", args: "", help: "List plugins: what each serves, its state, pid and restart count.", run: runAdmin},
	{words: "dns records", args: "DOMAIN", help: "Print the DNS records to publish for a local domain (MX, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, TLSA) as a commented zone file.", run: runDNSRecords},
	{words: "tlspubkey add", args: "[-no-imap-preauth] ADDRESS [NAME] < cert.pem", help: "Register a TLS client certificate's key: it logs in ADDRESS's account (IMAP PREAUTH, SASL EXTERNAL).", run: runTLSPubKeyAdd, flags: func(fs *flag.FlagSet) {
		fs.Bool("no-imap-preauth", false, "IMAP logs in by AUTHENTICATE EXTERNAL, not with a PREAUTH greeting")
	}},
	{words: "tlspubkey list", args: "[ACCOUNT]", help: "List the registered TLS client keys, of every account or of ACCOUNT, with their last use.", run: runAdmin},
	{words: "tlspubkey get", args: "FINGERPRINT", help: "Show a TLS client key and its certificate.", run: runAdmin},
	{words: "tlspubkey rm", args: "FINGERPRINT", help: "Remove a TLS client key: connections with it no longer log in.", run: runAdmin},
	{words: "tlspubkey set-preauth", args: "FINGERPRINT true|false", help: "Set whether IMAP connections with the key start logged in (PREAUTH).", run: runAdmin},
	{words: "tlspubkey gen", args: "STEM", help: "Make an ed25519 key and a self-signed certificate: STEM.key, STEM.crt and STEM.p12 (for mail clients; no password).", run: runTLSPubKeyGen},
	{words: "dkim gen", args: "[-rsa] DOMAIN SELECTOR KEYFILE", help: "Make a DKIM signing key (ed25519; RSA 2048 with -rsa) in a new KEYFILE, mode 0600; print its DNS record and the policy-dkimsign table.", run: runDKIMGen, flags: func(fs *flag.FlagSet) {
		fs.Bool("rsa", false, "make an RSA key of 2048 bits rather than ed25519")
	}},
	{words: "alias list", args: "[DOMAIN]", help: "List the aliases of the local domains, with their members and who may post.", run: runAdmin},
	{words: "suppression add", args: "ACCOUNT ADDRESS [REASON]", help: "Put an address on an account's suppression list: its submissions to it are refused at RCPT.", run: runAdmin},
	{words: "suppression list", args: "[ACCOUNT]", help: "List suppressed addresses, of every account or of ACCOUNT, with why and when.", run: runAdmin},
	{words: "suppression rm", args: "ACCOUNT ADDRESS", help: "Take an address off an account's suppression list.", run: runAdmin},
	{words: "sendmail", args: "[-t] [-i] [-f SENDER] [RECIPIENT ...]", help: "Submit a message from standard input, as sendmail does (see mta sendmail -h).", run: nil},
}

// cmdContext is what a command runs with.
type cmdContext struct {
	cmd        *command
	configPath string
	args       []string // Positional arguments after the flags.
	flags      []string // Command flags set, as "-name=value", for the data command.
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer
}

func main() {
	if filepath.Base(os.Args[0]) == "sendmail" {
		// Installed as (a link named) sendmail: scripts and cron call it so.
		os.Exit(runSendmail(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd, rest := findCommand(argv)
	if cmd == nil {
		if len(argv) > 0 && (argv[0] == "-h" || argv[0] == "help" || argv[0] == "--help") {
			usage(stderr, "")
			return 0
		}
		if len(argv) == 0 {
			usage(stderr, "")
			return 2
		}
		if group := strings.Join(argv, " "); isGroup(group) {
			usage(stderr, group)
			fmt.Fprintf(stderr, "\nmta %s: which one?\n", group)
			return 2
		}
		usage(stderr, "")
		fmt.Fprintf(stderr, "\nmta: unknown command %q\n", strings.Join(argv, " "))
		return 2
	}

	if cmd.words == "sendmail" {
		return runSendmail(rest, stdin, stdout, stderr) // Its options are sendmail's.
	}
	fs := flag.NewFlagSet("mta "+cmd.words, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", defaultConfigPath(), "configuration `file`")
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: mta %s [-config FILE] %s\n\n%s\n\n", cmd.words, cmd.args, cmd.help)
		fs.PrintDefaults()
	}
	args, err := parseArgs(fs, rest, cmd.flags == nil)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	c := &cmdContext{cmd: cmd, configPath: *configPath, args: args, stdin: stdin, stdout: stdout, stderr: stderr}
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "config" {
			c.flags = append(c.flags, "-"+f.Name+"="+f.Value.String())
		}
	})
	if err := cmd.run(c); err != nil {
		fmt.Fprintf(stderr, "mta %s: %v\n", cmd.words, err)
		var ue *ctl.UsageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

// parseArgs parses the flags of argv with fs and returns the positional
// arguments. For a command with no flags of its own (only), -config and
// -h are its only flags, wherever they stand: any other argument is
// positional, also one starting with "-", as a key's base64url fingerprint
// may.
func parseArgs(fs *flag.FlagSet, argv []string, only bool) ([]string, error) {
	if !only {
		if err := fs.Parse(argv); err != nil {
			return nil, err
		}
		return fs.Args(), nil
	}
	var flags, args []string
	for i := 0; i < len(argv); i++ {
		a := argv[i]
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case a == "--":
			args = append(args, argv[i+1:]...)
			i = len(argv)
		case strings.HasPrefix(a, "-") && (name == "config" || name == "h" || name == "help"):
			flags = append(flags, a)
			if !strings.Contains(a, "=") && name == "config" && i+1 < len(argv) {
				i++
				flags = append(flags, argv[i])
			}
		default:
			args = append(args, a)
		}
	}
	if err := fs.Parse(flags); err != nil {
		return nil, err
	}
	return append(fs.Args(), args...), nil
}

// findCommand matches the longest command whose words start argv.
func findCommand(argv []string) (*command, []string) {
	var best *command
	var n int
	for i := range commands {
		w := strings.Fields(commands[i].words)
		if len(w) <= len(argv) && len(w) > n && strings.Join(argv[:len(w)], " ") == commands[i].words {
			best, n = &commands[i], len(w)
		}
	}
	if best == nil {
		return nil, nil
	}
	return best, argv[n:]
}

// usage lists the commands, or those starting with the words of group.
func usage(w io.Writer, group string) {
	if group == "" {
		fmt.Fprintf(w, "usage: mta COMMAND [-config FILE] [ARGS]\n\ncommands:\n")
	} else {
		fmt.Fprintf(w, "usage: mta %s COMMAND [-config FILE] [ARGS]\n\ncommands:\n", group)
	}
	cs := append([]command(nil), commands...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].words < cs[j].words })
	width := 0
	for _, c := range cs {
		width = max(width, len(c.words))
	}
	for _, c := range cs {
		if group == "" || strings.HasPrefix(c.words, group+" ") {
			fmt.Fprintf(w, "  %-*s  %s\n", width, c.words, c.help)
		}
	}
	fmt.Fprintf(w, "\n'mta COMMAND -h' explains a command. The configuration is -config FILE, else $%s, else %s.\n", configEnv, defaultConfig)
}

// isGroup reports whether words are the first words of commands, such as
// "account" of "account passwd".
func isGroup(words string) bool {
	for _, c := range commands {
		if strings.HasPrefix(c.words, words+" ") {
			return true
		}
	}
	return false
}

// The configuration file when -config is not given.
const (
	configEnv     = "SWITCHYARD_CONFIG"
	defaultConfig = "/etc/switchyard/mta.toml"
)

// defaultConfigPath is $SWITCHYARD_CONFIG, else defaultConfig: the same
// file from every directory, as a sendmail link run by cron needs.
func defaultConfigPath() string {
	if p := os.Getenv(configEnv); p != "" {
		return p
	}
	return defaultConfig
}

// runVersion prints what the binary was built from.
func runVersion(c *cmdContext) error {
	if len(c.args) > 0 {
		return usageErr("unexpected arguments %q", c.args)
	}
	fmt.Fprintln(c.stdout, versionString())
	return nil
}

// versionString is the module version (or "(devel)"), the Go version, and
// the VCS revision the build recorded.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "mta (unknown version)"
	}
	s := "mta " + bi.Main.Version + " " + bi.GoVersion
	var rev, modified string
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			rev = kv.Value
		case "vcs.modified":
			if kv.Value == "true" {
				modified = "+modified"
			}
		}
	}
	if rev != "" {
		s += " " + rev[:min(12, len(rev))] + modified
	}
	return s
}

// usageErr is an input error: exit status 2.
func usageErr(format string, args ...any) error {
	return &ctl.UsageError{Msg: fmt.Sprintf(format, args...)}
}
