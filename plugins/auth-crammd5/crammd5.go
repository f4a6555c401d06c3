package authcrammd5

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/switchyard-mta/switchyard/sdk"
)

const (
	mechanismName = "CRAM-MD5"
	secretPrefix  = mechanismName + "$"
	stateLen      = 16   // MD5 chaining state: four 32-bit words.
	maxResponse   = 4096 // Responses are a username and 32 hex digits.
)

// md5StateOffset is where crypto/md5's marshaled form holds the chaining
// state, as big-endian words, after its 4-byte format identifier "md5\x01".
const md5StateOffset = 4

// pads is a CRAM-MD5 secret: the MD5 states after hashing the key⊕ipad and
// the key⊕opad blocks of HMAC-MD5 (RFC 2104 §2, §4), from which the HMAC of
// any challenge follows without the key. States are four little-endian
// words, MD5's own byte order.
type pads struct {
	inner, outer [stateLen]byte
}

// derivePads computes the pad states of HMAC-MD5 keyed with password.
func derivePads(password string) pads {
	key := []byte(password)
	if len(key) > md5.BlockSize {
		sum := md5.Sum(key) // Long keys are hashed first (RFC 2104 §2).
		key = sum[:]
	}
	return pads{inner: blockState(key, 0x36), outer: blockState(key, 0x5c)}
}

// blockState returns the MD5 state after one block of key XOR pad.
func blockState(key []byte, pad byte) [stateLen]byte {
	block := make([]byte, md5.BlockSize)
	copy(block, key)
	for i := range block {
		block[i] ^= pad
	}
	h := md5.New()
	h.Write(block)
	b, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
	return swapWords(b[md5StateOffset:])
}

// resume returns an MD5 hash that continues from state s, as if one block
// had been written.
func resume(s [stateLen]byte) (hash.Hash, error) {
	h := md5.New()
	h.Write(make([]byte, md5.BlockSize))
	b, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, err
	}
	be := swapWords(s[:])
	copy(b[md5StateOffset:], be[:])
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return h, nil
}

// swapWords converts four 32-bit words between big- and little-endian.
func swapWords(b []byte) [stateLen]byte {
	var s [stateLen]byte
	for i := range s {
		s[i] = b[i/4*4+3-i%4]
	}
	return s
}

// digest is HMAC-MD5(key, challenge) from the key's pad states.
func (p pads) digest(challenge []byte) ([]byte, error) {
	inner, err := resume(p.inner)
	if err != nil {
		return nil, err
	}
	outer, err := resume(p.outer)
	if err != nil {
		return nil, err
	}
	inner.Write(challenge)
	outer.Write(inner.Sum(nil))
	return outer.Sum(nil), nil
}

// encode returns "CRAM-MD5$" and the hex of the outer, then the inner state:
// the layout of Dovecot's CRAM-MD5 scheme (hmac_md5_get_cram_context).
func (p pads) encode() []byte {
	return append([]byte(secretPrefix), hex.EncodeToString(append(p.outer[:], p.inner[:]...))...)
}

func decodePads(b []byte) (pads, error) {
	var p pads
	h, ok := strings.CutPrefix(string(b), secretPrefix)
	raw, err := hex.DecodeString(h)
	if !ok || err != nil || len(raw) != 2*stateLen {
		return p, errors.New("stored secret is not CRAM-MD5$ and 64 hex digits")
	}
	copy(p.outer[:], raw[:stateLen])
	copy(p.inner[:], raw[stateLen:])
	return p, nil
}

// mechanism serves CRAM-MD5. It keeps no accounts: secrets come from the
// Host for each exchange.
type mechanism struct {
	log  *slog.Logger
	fake pads // For unknown users; from a per-process random key.

	mu  sync.Mutex
	cfg settings
}

// settings is what Configure applies.
type settings struct {
	host     sdk.Host // Nil until configured.
	hostname string   // In challenges.
}

func newMechanism(log *slog.Logger) *mechanism {
	return &mechanism{log: log, fake: derivePads(rand.Text())}
}

func (m *mechanism) config() settings {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg
}

// Configure takes the Host and the server's hostname. The plugin has no
// settings of its own: any key is an error.
func (m *mechanism) Configure(ctx context.Context, c *sdk.Configuration) error {
	var none struct{}
	if err := c.Decode(&none); err != nil {
		return err
	}
	if c.CheckOnly {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg.host = c.Host
	if c.Hostname != "" {
		m.cfg.hostname = c.Hostname
	}
	return nil
}

// Derive returns the "CRAM-MD5" secret for password.
func (m *mechanism) Derive(ctx context.Context, account, password string) (map[string][]byte, error) {
	if password == "" {
		return nil, errors.New("auth-crammd5: empty password")
	}
	return map[string][]byte{mechanismName: derivePads(password).encode()}, nil
}

// Start begins an exchange.
func (m *mechanism) Start(ctx context.Context, mech string, conn sdk.ConnInfo) (sdk.Exchange, error) {
	if mech != mechanismName {
		return nil, fmt.Errorf("auth-crammd5: mechanism %q not served", mech)
	}
	return &exchange{m: m, conn: conn, cfg: m.config()}, nil
}

// exchange is one CRAM-MD5 exchange: challenge, response, outcome.
type exchange struct {
	m    *mechanism
	conn sdk.ConnInfo
	cfg  settings

	challenge []byte // Nil until sent.
	username  string
	done      bool
}

// Next sends the challenge on the first call and checks the response on
// the second.
func (e *exchange) Next(ctx context.Context, resp []byte) ([]byte, *sdk.AuthOutcome, error) {
	switch {
	case e.done:
		return nil, e.fail("exchange already ended"), nil
	case e.cfg.host == nil:
		return nil, e.tempfail("plugin not configured: no host"), nil
	case e.challenge == nil && resp != nil:
		// The server speaks first (RFC 2195 §2; RFC 4954 §4: 501 in SMTP).
		return nil, e.fail("initial response to a server-first mechanism"), nil
	case e.challenge == nil:
		e.challenge = e.newChallenge()
		return e.challenge, nil, nil
	}
	return nil, e.response(ctx, resp), nil
}

// newChallenge returns "<random.timestamp@hostname>", unique per exchange
// (RFC 2195 §2).
func (e *exchange) newChallenge() []byte {
	var r [8]byte
	rand.Read(r[:])
	host := e.cfg.hostname
	if host == "" {
		host = "localhost"
	}
	return fmt.Appendf(nil, "<%d.%d@%s>", binary.BigEndian.Uint64(r[:]), time.Now().Unix(), host)
}

// response checks "username SP hex-digest" (RFC 2195 §2). An unknown user's
// digest is computed against the fake secret, so the answer takes as long.
func (e *exchange) response(ctx context.Context, resp []byte) *sdk.AuthOutcome {
	if len(resp) > maxResponse {
		return e.fail(fmt.Sprintf("response of %d bytes", len(resp)))
	}
	user, hexDigest, ok := cutLast(string(resp), " ")
	got, err := hex.DecodeString(hexDigest)
	if !ok || err != nil || len(got) != md5.Size {
		return e.fail("malformed response: want username, space, 32 hex digits")
	}
	if user == "" || !utf8.ValidString(user) {
		return e.fail("username empty or not UTF-8")
	}
	e.username = user
	p, unknown := e.m.fake, true
	c, err := e.cfg.host.Secret(ctx, user, mechanismName)
	switch {
	case errors.Is(err, sdk.ErrNotFound):
	case err != nil:
		return e.tempfail(err.Error())
	default:
		if p, err = decodePads(c.Secret); err != nil {
			return e.tempfail(fmt.Sprintf("account %s: %v", c.Account, err))
		}
		unknown = false
	}
	want, err := p.digest(e.challenge)
	if err != nil {
		return e.tempfail(fmt.Sprintf("resuming MD5 state: %v", err))
	}
	match := hmac.Equal(got, want)
	switch {
	case unknown:
		return e.fail("unknown user")
	case !match:
		return e.fail("wrong digest")
	}
	login := c.Login
	if login == "" {
		login = user
	}
	return e.finish(&sdk.AuthOutcome{Success: true, Account: c.Account, Login: login})
}

// cutLast is strings.Cut at the last sep: usernames may hold spaces.
func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
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
	e.m.log.Info("authentication", o.LogAttrs(mechanismName, e.username, e.conn)...)
	return o
}
