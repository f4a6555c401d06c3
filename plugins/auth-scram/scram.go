package authscram

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/xdg-go/scram"

	"github.com/switchyard-mta/switchyard/sdk"
)

// mechanismNames are the SASL names served, strongest first.
var mechanismNames = []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"}

// family is a hash function's SCRAM mechanism; the -PLUS variant shares it.
type family struct {
	name string // Base mechanism name, also the secret's name.
	hash scram.HashGeneratorFcn
}

var families = []family{
	{"SCRAM-SHA-256", scram.SHA256}, // RFC 7677
	{"SCRAM-SHA-1", scram.SHA1},     // RFC 5802
}

// lookupFamily returns the family of a mechanism name and whether it is the
// -PLUS (channel binding) variant.
func lookupFamily(mech string) (family, bool, bool) {
	base, plus := strings.CutSuffix(mech, "-PLUS")
	for _, f := range families {
		if f.name == base {
			return f, plus, true
		}
	}
	return family{}, false, false
}

const (
	defaultIterations = 4096     // RFC 7677 §4: SHOULD be at least 4096.
	maxIterations     = 10000000 // Clients recompute the key at login; beyond this they stall.
	maxMessage        = 4096     // Client messages are far smaller; longer ones are refused.
)

// mechanism serves the SCRAM mechanisms. It keeps no accounts: secrets come
// from the Host for each exchange.
type mechanism struct {
	log     *slog.Logger
	fakeKey []byte // Per-process key for unknown users' salts.

	mu  sync.Mutex
	cfg settings
}

// settings is what Configure applies.
type settings struct {
	host       sdk.Host // Nil until configured.
	iterations int
}

func newMechanism(log *slog.Logger) *mechanism {
	key := make([]byte, 32)
	rand.Read(key)
	return &mechanism{log: log, fakeKey: key, cfg: settings{iterations: defaultIterations}}
}

func (m *mechanism) config() settings {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg
}

// config is the plugin table [plugins.auth-scram.config].
type config struct {
	// PBKDF2 iterations for secrets derived from now on; existing secrets
	// keep theirs. Default 4096, the minimum (RFC 7677 §4).
	Iterations *int `toml:"iterations"`
}

// Configure takes the plugin table (sdk.KindPlugin) and the Host. Other kinds
// only deliver the Host: all settings live in the plugin table.
func (m *mechanism) Configure(ctx context.Context, c *sdk.Configuration) error {
	if c.Kind != sdk.KindPlugin {
		if len(c.Table) > 0 {
			return sdk.ConfigErrors{{Msg: "auth-scram takes its settings in [plugins.<name>.config] only"}}
		}
		if !c.CheckOnly {
			m.mu.Lock()
			m.cfg.host = c.Host
			m.mu.Unlock()
		}
		return nil
	}
	var cfg config
	if err := c.Decode(&cfg); err != nil {
		return err
	}
	iters := defaultIterations
	if cfg.Iterations != nil {
		iters = *cfg.Iterations
		if iters < defaultIterations || iters > maxIterations {
			return sdk.ConfigErrors{{Key: "iterations", Msg: fmt.Sprintf("%d is out of range %d (RFC 7677 §4) to %d", iters, defaultIterations, maxIterations)}}
		}
	}
	if c.CheckOnly {
		return nil
	}
	m.mu.Lock()
	m.cfg = settings{host: c.Host, iterations: iters}
	m.mu.Unlock()
	return nil
}

// Start begins an exchange. mech must be one of mechanismNames: the core
// only starts what the plugin described.
func (m *mechanism) Start(ctx context.Context, mech string, conn sdk.ConnInfo) (sdk.Exchange, error) {
	f, plus, ok := lookupFamily(mech)
	if !ok {
		return nil, fmt.Errorf("auth-scram: mechanism %q not served", mech)
	}
	return &exchange{m: m, mech: mech, fam: f, plus: plus, conn: conn, cfg: m.config()}, nil
}

// exchange is one SCRAM exchange: client-first, server-first, client-final,
// then the outcome with the server-final-message (RFC 5802 §5).
type exchange struct {
	m    *mechanism
	mech string
	fam  family
	plus bool
	conn sdk.ConnInfo
	cfg  settings

	prompted bool                      // Sent the empty challenge that asks for client-first.
	conv     *scram.ServerConversation // Set by client-first.
	binding  string                    // Channel binding type in use, for the log.
	username string                    // As the client sent it, decoded.
	cred     *sdk.Credential           // Nil for an unknown user.
	lookup   error                     // Why the stored secret could not be had: a temporary failure.
	done     bool
}

// Next takes the client's messages in turn. SCRAM is client-first: without
// an initial response, the server starts with an empty challenge
// (RFC 4422 §5).
func (e *exchange) Next(ctx context.Context, resp []byte) (challenge []byte, outcome *sdk.AuthOutcome, err error) {
	defer func() {
		// Client input must never take the plugin down (a library bug would).
		if r := recover(); r != nil {
			challenge, outcome, err = nil, e.fail(fmt.Sprintf("internal error: %v", r)), nil
		}
	}()
	switch {
	case e.done:
		return nil, e.fail("exchange already ended"), nil
	case e.plus && e.conn.TLS == nil:
		// -PLUS is only advertised over TLS (package doc).
		return nil, e.fail(e.mech + " without TLS"), nil
	case e.cfg.host == nil:
		return nil, e.tempfail("plugin not configured: no host"), nil
	case resp == nil && !e.prompted && e.conv == nil:
		e.prompted = true
		return []byte{}, nil, nil
	case len(resp) > maxMessage:
		return nil, e.fail(fmt.Sprintf("client message of %d bytes", len(resp))), nil
	case e.conv == nil:
		return e.clientFirst(ctx, string(resp))
	default:
		return nil, e.clientFinal(string(resp)), nil
	}
}

// plusOffered reports whether the -PLUS variant of the exchange's
// mechanism was offered on its connection. A core that does not say what it
// offered (conn.Offered nil) is taken to offer -PLUS wherever there is TLS,
// the strict reading.
func (e *exchange) plusOffered() bool {
	if e.conn.Offered == nil {
		return e.conn.TLS != nil
	}
	return slices.Contains(e.conn.Offered, e.mech+"-PLUS")
}

// clientFirst checks the GS2 header against the mechanism and connection,
// looks up the user and answers the server-first-message.
func (e *exchange) clientFirst(ctx context.Context, msg string) ([]byte, *sdk.AuthOutcome, error) {
	flag, _, _ := strings.Cut(msg, ",")
	srv, _ := e.fam.hash.NewServer(func(username string) (scram.StoredCredentials, error) {
		return e.credentials(ctx, username)
	})
	switch {
	case flag == "n" || flag == "y":
		if e.plus {
			return nil, e.fail(fmt.Sprintf("%s with GS2 flag %q: -PLUS requires channel binding (RFC 5802 §6)", e.mech, flag)), nil
		}
		if flag == "y" && e.plusOffered() {
			// The client binds but saw no -PLUS, which was offered.
			return nil, e.fail("downgrade: GS2 flag \"y\" where " + e.mech + "-PLUS is offered (RFC 5802 §6)"), nil
		}
		e.conv = srv.NewConversation()
	case strings.HasPrefix(flag, "p="):
		// A binding under the base name (Cyrus SASL's clients send one) is
		// checked like one under -PLUS: "p" means verify (RFC 5802 §6).
		if e.conn.TLS == nil {
			return nil, e.fail(fmt.Sprintf("%s: channel binding requested without TLS", e.mech)), nil
		}
		cb, err := bindingData(e.conn.TLS, scram.ChannelBindingType(flag[2:]))
		if err != nil {
			return nil, e.fail(err.Error()), nil
		}
		e.binding = string(cb.Type)
		e.conv = srv.NewConversationWithChannelBinding(cb)
	default:
		return nil, e.fail("malformed client-first-message: bad GS2 flag"), nil
	}
	s1, err := e.conv.Step(msg)
	switch {
	case e.lookup != nil:
		return nil, e.tempfail(e.lookup.Error()), nil
	case err != nil:
		return nil, e.fail("client-first-message: " + err.Error()), nil
	}
	return []byte(s1), nil, nil
}

// bindingData returns the channel binding of type t from the connection,
// which must have it (RFC 5929, RFC 9266).
func bindingData(ti *sdk.TLSInfo, t scram.ChannelBindingType) (scram.ChannelBinding, error) {
	var data []byte
	switch t {
	case scram.ChannelBindingTLSExporter:
		data = ti.Exporter
	case scram.ChannelBindingTLSUnique:
		// Undefined for TLS 1.3 (RFC 9266 §3).
		if ti.Version < tls.VersionTLS13 {
			data = ti.Unique
		}
	case scram.ChannelBindingTLSServerEndpoint:
		data = ti.ServerEndPoint
	default:
		return scram.ChannelBinding{}, fmt.Errorf("unsupported channel binding type %q", t)
	}
	if len(data) == 0 {
		return scram.ChannelBinding{}, fmt.Errorf("channel binding type %s not available on this connection", t)
	}
	return scram.ChannelBinding{Type: t, Data: data}, nil
}

// credentials looks up the stored secret of username through the Host. An
// unknown user gets fake credentials, so the exchange continues as for a
// known one and fails at the proof.
func (e *exchange) credentials(ctx context.Context, username string) (scram.StoredCredentials, error) {
	if username == "" || !utf8.ValidString(username) {
		return scram.StoredCredentials{}, errors.New("username empty or not UTF-8 (RFC 5802 §5.1)")
	}
	e.username = username
	c, err := e.cfg.host.Secret(ctx, username, e.fam.name)
	if errors.Is(err, sdk.ErrNotFound) {
		return e.m.fakeCredentials(e.fam, username, e.cfg.iterations), nil
	}
	if err != nil {
		e.lookup = err
		return scram.StoredCredentials{}, err
	}
	sc, err := decodeSecret(e.fam, c.Secret)
	if err != nil {
		e.lookup = fmt.Errorf("account %s: %w", c.Account, err)
		return scram.StoredCredentials{}, e.lookup
	}
	e.cred = c
	return sc, nil
}

// fakeCredentials returns credentials for an unknown user: a salt that is
// the same on every attempt with that name (any case, as lookups ignore it)
// and keys no proof matches.
func (m *mechanism) fakeCredentials(f family, username string, iters int) scram.StoredCredentials {
	mac := hmac.New(sha256.New, m.fakeKey)
	mac.Write([]byte(f.name + "\x00" + strings.ToLower(username)))
	keys := make([]byte, 2*f.hash().Size())
	rand.Read(keys)
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(mac.Sum(nil)[:saltLen]), Iters: iters},
		StoredKey:  keys[:len(keys)/2],
		ServerKey:  keys[len(keys)/2:],
	}
}

// clientFinal verifies channel binding, nonce and proof, then the
// authorization identity.
func (e *exchange) clientFinal(msg string) *sdk.AuthOutcome {
	s2, err := e.conv.Step(msg)
	switch {
	case e.cred == nil:
		return e.fail("unknown user")
	case s2 == scram.ErrChannelBindingsDontMatch:
		// Not err's text, which holds the binding data.
		return e.fail("client-final-message: channel binding mismatch")
	case err != nil:
		return e.fail("client-final-message: " + err.Error())
	case !e.conv.Valid():
		return e.fail("invalid proof")
	}
	// Only the user's own identities may be named as authzid (RFC 5802 §5.1 "a=").
	if az := e.conv.AuthzID(); az != "" && !strings.EqualFold(az, e.username) && !strings.EqualFold(az, e.cred.Login) && !strings.EqualFold(az, e.cred.Account) {
		return e.fail(fmt.Sprintf("authorization identity %q is not the user's", az))
	}
	login := e.cred.Login
	if login == "" {
		login = e.username
	}
	return e.finish(&sdk.AuthOutcome{Success: true, Account: e.cred.Account, Login: login, FinalData: []byte(s2)})
}

func (e *exchange) fail(reason string) *sdk.AuthOutcome {
	return e.finish(&sdk.AuthOutcome{Reason: reason, Login: e.username}) // Login: for the core's log line.
}

func (e *exchange) tempfail(reason string) *sdk.AuthOutcome {
	return e.finish(&sdk.AuthOutcome{Temporary: true, Reason: reason})
}

// finish ends the exchange with o and logs its one line.
func (e *exchange) finish(o *sdk.AuthOutcome) *sdk.AuthOutcome {
	e.done = true
	e.m.log.Info("authentication", append(o.LogAttrs(e.mech, e.username, e.conn), slog.String("binding", e.binding))...)
	return o
}
