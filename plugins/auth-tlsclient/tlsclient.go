package authtlsclient

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/switchyard-mta/switchyard/sdk"
)

const (
	mechanismName = "EXTERNAL"
	// maxAuthzid bounds the authorization identity: an address is at most
	// 64 + 1 + 255 octets (RFC 5321 §4.5.3.1).
	maxAuthzid = 320
)

// mechanism serves EXTERNAL and PreAuth. It keeps no keys: each exchange
// asks the Host.
type mechanism struct {
	log *slog.Logger

	mu   sync.Mutex
	host sdk.Host // Nil until configured.
}

// Configure takes the Host. The plugin has no settings: any key is an
// error.
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
	m.host = c.Host
	return nil
}

// key finds the known key of the connection's client certificate, or
// returns the outcome without one: failed, or temporary on a Host error.
func (m *mechanism) key(ctx context.Context, conn sdk.ConnInfo) (*sdk.TLSKey, *sdk.AuthOutcome) {
	if conn.TLS == nil || len(conn.TLS.PeerCertificates) == 0 || conn.TLS.PeerCertificates[0] == nil {
		return nil, &sdk.AuthOutcome{Reason: "no TLS client certificate"}
	}
	m.mu.Lock()
	host := m.host
	m.mu.Unlock()
	if host == nil {
		return nil, &sdk.AuthOutcome{Temporary: true, Reason: "plugin not configured"}
	}
	sum := sha256.Sum256(conn.TLS.PeerCertificates[0].RawSubjectPublicKeyInfo)
	k, err := host.TLSPublicKey(ctx, sum[:])
	if errors.Is(err, sdk.ErrNotFound) {
		return nil, &sdk.AuthOutcome{Reason: "unknown TLS client key"}
	} else if err != nil {
		return nil, &sdk.AuthOutcome{Temporary: true, Reason: fmt.Sprintf("looking up the TLS client key: %v", err)}
	}
	return k, nil
}

// PreAuth logs the connection in if its key is known, unless it is IMAP
// and the key asks for AUTHENTICATE EXTERNAL instead.
func (m *mechanism) PreAuth(ctx context.Context, conn sdk.ConnInfo) (*sdk.AuthOutcome, error) {
	k, o := m.key(ctx, conn)
	switch {
	case o != nil:
	case conn.Protocol == "imap" && k.NoIMAPPreauth:
		o = &sdk.AuthOutcome{Account: k.Account, Login: k.Login, Reason: "key has no_imap_preauth"}
	default:
		o = &sdk.AuthOutcome{Success: true, Account: k.Account, Login: k.Login}
	}
	if o.Temporary {
		m.log.Warn("pre-authentication", o.LogAttrs(mechanismName, "", conn)...)
	}
	return o, nil
}

// Start begins an exchange.
func (m *mechanism) Start(ctx context.Context, mech string, conn sdk.ConnInfo) (sdk.Exchange, error) {
	if mech != mechanismName {
		return nil, fmt.Errorf("auth-tlsclient: mechanism %q not served", mech)
	}
	return &exchange{m: m, conn: conn}, nil
}

// exchange is one EXTERNAL exchange: the authorization identity, as the
// initial response or as the answer to an empty challenge, then the
// outcome.
type exchange struct {
	m        *mechanism
	conn     sdk.ConnInfo
	asked    bool // The empty challenge went out.
	finished bool
}

func (e *exchange) Next(ctx context.Context, resp []byte) ([]byte, *sdk.AuthOutcome, error) {
	switch {
	case e.finished:
		return nil, &sdk.AuthOutcome{Reason: "response after the outcome"}, nil
	case resp == nil && !e.asked:
		e.asked = true
		return []byte{}, nil, nil // RFC 4422 §5: no initial response.
	}
	e.finished = true
	o := e.decide(ctx, resp)
	if o.Temporary {
		e.m.log.Warn("authentication", o.LogAttrs(mechanismName, string(resp), e.conn)...)
	}
	return nil, o, nil
}

// decide checks the authorization identity authzid against the key.
func (e *exchange) decide(ctx context.Context, authzid []byte) *sdk.AuthOutcome {
	if len(authzid) > maxAuthzid || !utf8.Valid(authzid) || strings.ContainsRune(string(authzid), 0) {
		return &sdk.AuthOutcome{Reason: "malformed authorization identity"}
	}
	k, o := e.m.key(ctx, e.conn)
	if o != nil {
		return o
	}
	id := string(authzid)
	if id == "" || strings.EqualFold(id, k.Login) {
		return &sdk.AuthOutcome{Success: true, Account: k.Account, Login: k.Login}
	}
	for _, a := range k.Addresses {
		if strings.EqualFold(id, a) {
			return &sdk.AuthOutcome{Success: true, Account: k.Account, Login: a}
		}
	}
	return &sdk.AuthOutcome{Account: k.Account, Login: id, Reason: "authorization identity is not an address of the key's account"}
}
