// Package config defines mta.toml, the single source of Switchyard's static
// configuration, and loads and validates it.
//
// Relative paths in the file are relative to the file's directory: Load
// resolves those of this schema, and plugins those in their config tables,
// given the directory. Unknown keys, wrong types and dangling references are
// errors that name the file, the line and the key (Error).
package config

import (
	"net/netip"
	"time"
)

// Config is a loaded mta.toml. Fields without a toml tag are derived at load.
type Config struct {
	// Hostname is the server's name in greetings, Received headers and
	// certificates. Required.
	Hostname string `toml:"hostname"`
	// DataDir holds the queue, accounts and plugin data. Default "data".
	DataDir string `toml:"data_dir"`
	// Postmaster is the account that receives postmaster@ of every local
	// domain (unless an account lists that address itself) and
	// "RCPT TO:<Postmaster>" (RFC 5321 §4.5.1), and in whose name the
	// server sends DSNs. Default: the account defined first in the file.
	Postmaster string `toml:"postmaster"`

	Log       Log                   `toml:"log"`
	TLS       TLS                   `toml:"tls"`
	Limits    Limits                `toml:"limits"`
	Queue     Queue                 `toml:"queue"`
	Auth      Auth                  `toml:"auth"`
	Sendmail  Sendmail              `toml:"sendmail"`
	Listeners []Listener            `toml:"listeners"`
	Plugins   map[string]*Plugin    `toml:"plugins"`
	Transport map[string]*Transport `toml:"transports"`
	Policies  map[string]*Policy    `toml:"policies"`
	Routes    []Route               `toml:"routes"`   // Global routes, tried last.
	Domains   map[string]*Domain    `toml:"domains"`  // Local domains, by mailaddr.Domain.Unicode once checked.
	Accounts  map[string]*Account   `toml:"accounts"` // By account name.

	File string `toml:"-"` // Absolute path of the loaded file.
	Dir  string `toml:"-"` // Directory of File; relative paths resolve against it.

	name      string            // File as given to Load, for messages.
	keys      keyIndex          // Where the file defines its keys, for Line.
	addrs     map[string]string // Account by address "local@domain" (domain lower case).
	addrsFold map[string]string // Account by address with a lower-case localpart; "" if ambiguous.
	aliases   map[string]*Alias // By lower-case localpart@domain (Unicode).
}

// Log configures what mta serve logs to standard error.
type Log struct {
	// Level is "debug", "info", "warn" or "error". Default "info": a line
	// per connection, transaction and recipient of a delivery attempt.
	Level string `toml:"level"`
	// Format is "text" (key=value) or "json" (one object a line). Default
	// "text".
	Format string `toml:"format"`
}

// TLS is the server certificate of all TLS listeners.
type TLS struct {
	Cert string `toml:"cert"` // PEM certificate chain file.
	Key  string `toml:"key"`  // PEM private key file.
	// SelfSigned generates a self-signed certificate for Hostname into the
	// data directory on first start, instead of Cert and Key.
	SelfSigned bool `toml:"self_signed"`
}

// Limits bound what clients may send.
type Limits struct {
	// MaxMessageSize, e.g. "50MB" (powers of 1024: KB, MB, GB). Default 50MB.
	MaxMessageSize ByteSize `toml:"max_message_size"`
	// MaxRecipients per message. Default 1000.
	MaxRecipients int `toml:"max_recipients"`
	// ReadTimeout and WriteTimeout bound each SMTP command and reply, e.g. "5m".
	// Defaults 5m and 1m (RFC 5321 §4.5.3.2 suggests at least 5 minutes).
	ReadTimeout  Duration `toml:"read_timeout"`
	WriteTimeout Duration `toml:"write_timeout"`
	// GreetingTimeout bounds the time from connecting (a TLS handshake
	// included) to the client's first command line; a client that sends
	// none in time is answered 421 4.4.2 (SMTP) or BYE (IMAP) and
	// disconnected. Default 30s.
	GreetingTimeout Duration `toml:"greeting_timeout"`

	// MaxConnections caps the connections open at once on all listeners
	// together; one over it is answered 421 4.7.0 (SMTP) or BYE [UNAVAILABLE]
	// (IMAP) and closed. Default 2000.
	MaxConnections int `toml:"max_connections"`
	// MaxConnectionsPerIP caps the connections one client has open at once
	// on a listener; an IPv6 client counts by its /64. Default 20; 0: no cap.
	MaxConnectionsPerIP int `toml:"max_connections_per_ip"`
	// ConnectionRatePerIP caps one client's new connections a minute on a
	// listener: a burst of this many, then this many a minute. Default 600;
	// 0: no cap.
	ConnectionRatePerIP int `toml:"connection_rate_per_ip"`
	// ExemptNetworks are held to neither per-client cap (max_connections
	// still applies), e.g. ["127.0.0.0/8", "::1"]; a bare IP is one
	// address. Default none: loopback is not exempt unless listed.
	ExemptNetworks []string `toml:"exempt_networks"`
	// ExemptRelayNetworks also exempts each smtp listener's relay_networks
	// on that listener. Default false.
	ExemptRelayNetworks bool `toml:"exempt_relay_networks"`

	ExemptPrefixes []netip.Prefix `toml:"-"` // Parsed ExemptNetworks.
}

// Queue tunes the outgoing queue.
type Queue struct {
	// BackoffScale multiplies the retry intervals (7.5 min doubling). Tests
	// use e.g. 0.0001. Default 1.
	BackoffScale float64 `toml:"backoff_scale"`
	// MaxAttempts before a temporary failure becomes permanent. Default 9
	// (attempts at 0, 7.5m, 15m, 30m, 1h, 2h, 4h, 8h, 16h).
	MaxAttempts int `toml:"max_attempts"`
	// MaxParallel deliveries in all. Default 64.
	MaxParallel int `toml:"max_parallel"`
	// MaxPerDestination deliveries in parallel to one transport and
	// destination domain. Default 16.
	MaxPerDestination int `toml:"max_per_destination"`
	// KeepRetired is how long a message that left the queue (delivered,
	// failed or dropped) is kept as a retired record with its delivery
	// history (`mta queue retired`), for accounts that do not set their
	// own. Zero: not kept.
	KeepRetired Duration `toml:"keep_retired"`
	// MaxFutureRelease is the longest a submitted message may be held
	// for a future release (RFC 4865 FUTURERELEASE) on submission
	// listeners. Default 7 days; "0s": FUTURERELEASE is not offered.
	MaxFutureRelease *Duration `toml:"max_future_release"`
}

// DefaultMaxFutureRelease is Queue.MaxFutureRelease's default.
const DefaultMaxFutureRelease = Duration(7 * 24 * time.Hour)

// FutureRelease returns the longest future release allowed; zero: none.
func (q Queue) FutureRelease() time.Duration {
	if q.MaxFutureRelease == nil {
		return time.Duration(DefaultMaxFutureRelease)
	}
	return time.Duration(*q.MaxFutureRelease)
}

// RetiredFor returns how long a retired message sent by account is kept.
func (c *Config) RetiredFor(account string) time.Duration {
	if a := c.Accounts[account]; a != nil && a.KeepRetired != nil {
		return time.Duration(*a.KeepRetired)
	}
	return time.Duration(c.Queue.KeepRetired)
}

// Sendmail configures `mta sendmail`: the submission server it sends
// through, and as whom.
type Sendmail struct {
	// Server is the submission server, host:port. Without Server and
	// Username, mta sendmail uses the running server's pickup socket as
	// the Unix user, with no password. Default with Username: the first
	// submission or submissions listener of this file, whose self-signed
	// certificate (tls.self_signed) is then trusted.
	Server string `toml:"server"`
	// TLS is "starttls", "tls" (implicit) or "none". Default: by the
	// default listener's kind, else "starttls".
	TLS string `toml:"tls"`
	// Username and PasswordFile (first line; relative to this file) log in.
	Username     string `toml:"username"`
	PasswordFile string `toml:"password_file"`
	// Mechanisms to use, in order. Default: the strongest the server offers.
	Mechanisms []string `toml:"mechanisms"`
	// ClientKey is a PEM private key that logs in by TLS client
	// certificate (registered with mta tlspubkey add): AUTH EXTERNAL when
	// offered, before any password. ClientCert is its certificate;
	// without it, one next to the key is used, else a minimal one is made,
	// so a bare ed25519 key will do. Relative to this file.
	ClientCert string `toml:"client_cert"`
	ClientKey  string `toml:"client_key"`
	// From is the sender when -f is not given. Default: Username.
	From string `toml:"from"`
	// CAFile holds extra PEM roots to verify the server with.
	CAFile string `toml:"ca_file"`
}

// Auth configures authentication on the submission and IMAP listeners.
type Auth struct {
	// Mechanisms are the SASL mechanisms offered, in this order: the
	// built-in PLAIN and LOGIN, and those of the mechanism plugins (a name
	// no loaded plugin serves is an error at start). -PLUS variants are
	// offered only over TLS, and only when listed. Default: every mechanism
	// the plugins serve but -PLUS, strongest first (SCRAM-SHA-256,
	// SCRAM-SHA-1, CRAM-MD5, then others by name), then PLAIN and LOGIN:
	// GNU SASL clients (neomutt) pick a -PLUS offered and cannot complete
	// it over TLS 1.3, having no tls-exporter binding.
	Mechanisms []string `toml:"mechanisms"`
}

// Listener kinds.
const (
	KindSMTP        = "smtp"        // Inbound MX, port 25; STARTTLS offered.
	KindSubmission  = "submission"  // Port 587: STARTTLS, AUTH required (RFC 6409).
	KindSubmissions = "submissions" // Port 465: implicit TLS (RFC 8314).
	KindIMAP        = "imap"
	KindIMAPS       = "imaps"
)

// Listener is one listening socket.
type Listener struct {
	Name    string `toml:"name"`    // Unique; used in logs and the plugin ConnInfo.
	Kind    string `toml:"kind"`    // One of the Kind constants.
	Address string `toml:"address"` // host:port.
	// RelayNetworks lets clients from these networks relay without AUTH, as
	// Postfix's mynetworks (smtp listeners only), e.g. "10.0.0.0/8"; a bare
	// IP is a /32 or /128. Default none.
	RelayNetworks []string `toml:"relay_networks"`
	// MaxConnections, MaxConnectionsPerIP and ConnectionRatePerIP override
	// those of [limits] for this listener; MaxConnections then caps this
	// listener within the total. Unset: those of [limits] (MaxConnections:
	// only the total).
	MaxConnections      *int `toml:"max_connections"`
	MaxConnectionsPerIP *int `toml:"max_connections_per_ip"`
	ConnectionRatePerIP *int `toml:"connection_rate_per_ip"`
	// Policies are the policy checks of SMTP transactions on this listener
	// (smtp, submission and submissions only), names in [policies], asked
	// in this order (sdk.Checker).
	Policies []string `toml:"policies"`

	RelayPrefixes []netip.Prefix `toml:"-"` // Parsed RelayNetworks.
	// Conns are the effective connection caps of this listener: the
	// overrides, else [limits]. Zero: no cap.
	Conns ConnLimits `toml:"-"`
}

// ConnLimits are the effective connection caps of a listener.
type ConnLimits struct {
	MaxConnections int            // This listener's own cap within the total; 0: none.
	MaxPerIP       int            // Open at once per client.
	RatePerIP      int            // New connections a minute per client.
	Exempt         []netip.Prefix // Held to neither per-client cap.
}

// Plugin is one plugin binary, started once as one process.
type Plugin struct {
	Path   string         `toml:"path"`   // Executable; relative to the config file.
	SHA256 string         `toml:"sha256"` // Optional hex pin, checked before every start.
	Args   []string       `toml:"args"`   // Optional arguments.
	Config map[string]any `toml:"config"` // Passed to Configure with KindPlugin.
}

// LocalTransport names the built-in transport that delivers to local
// accounts; the queue routes recipients at local domains to it.
const LocalTransport = "local"

// Transport is a named way out, served by a transport plugin.
type Transport struct {
	Plugin string         `toml:"plugin"` // Key in [plugins].
	Config map[string]any `toml:"config"` // Passed to the plugin's Configure.
}

// Policy is a policy check instance, [policies.NAME]: a plugin that serves
// sdk.Checker, with the table passed to its Configure.
type Policy struct {
	Plugin string `toml:"plugin"` // Key in [plugins].
	// Timeout bounds each call of the check, the message's transfer to it
	// included. Default 10s.
	Timeout Duration `toml:"timeout"`
	// OnError is what a failed call does: the plugin down, slow or
	// returning an error. "tempfail" (451 4.7.1, the default) or "accept"
	// (as if the check had no opinion).
	OnError string         `toml:"on_error"`
	Config  map[string]any `toml:"config"` // Passed to the plugin's Configure.
}

// On errors of a Policy.
const (
	OnErrorTempfail = "tempfail"
	OnErrorAccept   = "accept"
)

// DefaultPolicyTimeout is a Policy's Timeout when not set.
const DefaultPolicyTimeout = Duration(10 * time.Second)

// Route picks a transport for a delivery. Empty match fields match anything.
type Route struct {
	// FromDomains match the sender's domain; ToDomains the recipient's. A
	// leading dot also matches subdomains: ".example.com" matches
	// "a.example.com" and "example.com".
	FromDomains     []string `toml:"from_domains"`
	ToDomains       []string `toml:"to_domains"`
	MinimumAttempts int      `toml:"minimum_attempts"` // Match from this many earlier attempts on.
	Transport       string   `toml:"transport"`        // Key in [transports].
}

// Domain is a local domain.
type Domain struct {
	Routes []Route `toml:"routes"` // For senders of this domain; tried after account routes.
	// LocalpartSeparator, e.g. "+": alice+tag@ is alice@ (the first
	// separator cuts). One character of RFC 5322 atext, not a letter or
	// digit. Empty: none.
	LocalpartSeparator string `toml:"localpart_separator"`
	// Catchall is the account that receives mail for addresses of the
	// domain no account has. It may not send as them. Empty: unknown
	// addresses are refused (550 5.1.1).
	Catchall string `toml:"catchall"`
	// Aliases are addresses of the domain that deliver to several local
	// accounts, by localpart: [domains."D".aliases.NAME].
	Aliases map[string]*Alias `toml:"aliases"`

	key string // As the file names it, for messages.
}

// Alias is an address that delivers to the accounts of its members.
type Alias struct {
	// Members are addresses of local accounts. Required.
	Members []string `toml:"members"`
	// PostPublic lets anyone send to the alias; by default only its
	// members may (MAIL FROM one of their addresses, or logged in as one).
	PostPublic bool `toml:"post_public"`
	// ListMembers lets members see who the others are (mta alias list
	// shows it).
	ListMembers bool `toml:"list_members"`
	// AllowMsgFrom lets members send with the alias as sender.
	AllowMsgFrom bool `toml:"allow_msg_from"`

	Address  string   `toml:"-"` // localpart@domain (Unicode).
	Accounts []string `toml:"-"` // Of Members, by index.
}

// Account is a local user.
type Account struct {
	Domain    string   `toml:"domain"`    // Default domain; must be in [domains].
	Addresses []string `toml:"addresses"` // Addresses it receives at and may send from.
	Routes    []Route  `toml:"routes"`    // Tried first.
	// MaxStorage is the quota, e.g. "1GB". Zero: unlimited.
	MaxStorage ByteSize `toml:"max_storage"`
	// SendAs are domains ("other.example": any address at it) and
	// addresses ("x@y.example") the account may submit from besides its
	// own, as a site relaying its users' mail through one account does.
	SendAs []string `toml:"send_as"`
	// KeepRetired overrides [queue] keep_retired for messages the account
	// sent; "0s" keeps none.
	KeepRetired *Duration `toml:"keep_retired"`

	sendAsDomains map[string]bool // By mailaddr.Domain.Unicode.
	sendAsAddrs   map[string]bool // "localpart@" the domain's Unicode form.
}
