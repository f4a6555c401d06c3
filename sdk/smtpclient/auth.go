package smtpclient

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/emersion/go-sasl"
)

// maxCommandLine is the longest command line, CRLF included (RFC 5321
// §4.5.3.1.4).
const maxCommandLine = 512

// Verifier is a SASL client that authenticates the server too, as SCRAM
// does (RFC 5802 §5). Auth fails a 235 reply unless Verified reports true.
type Verifier interface {
	Verified() bool
}

// Authenticate runs SMTP AUTH (RFC 4954) as username with password, using
// the mechanism SelectMechanism picks from mechanisms and those the server
// offers, and returns the mechanism's name. Errors wrap ErrNoAUTH,
// ErrNoMechanism or ErrSASL, or are a *ReplyError when the server refuses
// (535: bad credentials), or an I/O error. After ErrSASL, close the
// connection: the server may take the client as authenticated.
func (c *Client) Authenticate(username, password string, mechanisms []string) (string, error) {
	param, ok := c.ext["AUTH"]
	if !ok {
		return "", ErrNoAUTH
	}
	offered := strings.Fields(param)
	mech, ok := SelectMechanism(mechanisms, offered, c.tls)
	if !ok {
		return "", fmt.Errorf("%w: server offers %s", ErrNoMechanism, param)
	}
	sc, err := NewSASLClient(mech, username, password, c.tls, offered)
	if err != nil {
		return mech, fmt.Errorf("%w: %w", ErrSASL, err)
	}
	r, err := c.Auth(sc)
	if err != nil {
		return mech, err
	}
	if r.Code != 235 {
		return mech, &ReplyError{"AUTH " + mech, r}
	}
	return mech, nil
}

// AuthenticateExternal runs SMTP AUTH EXTERNAL (RFC 4422 appendix A):
// the connection's TLS client certificate logs in, as authzid or, if it is
// empty, as the identity the server derives from the certificate. Errors
// wrap ErrNoAUTH or ErrNoMechanism when the server does not offer
// EXTERNAL, or are a *ReplyError when it refuses (535: an unknown key).
func (c *Client) AuthenticateExternal(authzid string) error {
	param, ok := c.ext["AUTH"]
	if !ok {
		return ErrNoAUTH
	}
	if !slices.ContainsFunc(strings.Fields(param), func(m string) bool { return strings.EqualFold(m, "EXTERNAL") }) {
		return fmt.Errorf("%w: server offers %s, not EXTERNAL", ErrNoMechanism, param)
	}
	r, err := c.Auth(sasl.NewExternalClient(authzid))
	if err != nil {
		return err
	}
	if r.Code != 235 {
		return &ReplyError{"AUTH EXTERNAL", r}
	}
	return nil
}

// Login authenticates as a client configured with a TLS client
// certificate (external) and or a username does: by AUTH EXTERNAL when
// the server offers it, else, or when the server refuses the key (5xx),
// by Authenticate if username is set. With a certificate, no username and
// no EXTERNAL offered, it does nothing: the server may log the key in by
// itself, or refuse MAIL. It returns the mechanism that logged in, "" for
// none; errors are those of AuthenticateExternal and Authenticate.
func (c *Client) Login(external bool, username, password string, mechanisms []string) (string, error) {
	if external {
		err := c.AuthenticateExternal("")
		var re *ReplyError
		switch {
		case err == nil:
			return "EXTERNAL", nil
		case errors.Is(err, ErrNoAUTH), errors.Is(err, ErrNoMechanism):
		case errors.As(err, &re) && re.Reply.Code/100 == 5 && username != "":
			// The key is unknown there: the password may still do.
		default:
			return "EXTERNAL", err
		}
	}
	if username == "" {
		return "", nil
	}
	return c.Authenticate(username, password, mechanisms)
}

// Auth runs one SASL exchange (RFC 4954 §4) with sc and returns the server's
// final reply, 235 on success. A failure on the client's side wraps ErrSASL:
// a challenge sc cannot answer (the exchange is cancelled with "*"), or a
// 235 reply that a Verifier did not verify.
func (c *Client) Auth(sc sasl.Client) (Reply, error) {
	b64 := base64.StdEncoding
	mech, ir, err := sc.Start()
	if err != nil {
		return Reply{}, fmt.Errorf("%w: %s: %w", ErrSASL, mech, err)
	}
	line := "AUTH " + mech
	var pending []byte // An initial response sent after the first challenge instead.
	if ir != nil {
		enc := b64.EncodeToString(ir)
		if enc == "" {
			enc = "=" // An empty initial response (RFC 4954 §4).
		}
		// RFC 4954 §4: an initial response that would make the line too
		// long waits for an empty challenge (RFC 4422 §5).
		if len(line)+1+len(enc)+2 <= maxCommandLine {
			line += " " + enc
		} else {
			pending = ir
		}
	}
	r, err := c.cmd(c.timeouts.Command, line)
	for err == nil && r.Code == 334 {
		var resp []byte
		var serr error
		if pending != nil {
			resp, pending = pending, nil
			if r.Text != "" {
				serr = fmt.Errorf("challenge %q where an empty one was due", r.Text)
			}
		} else {
			var challenge []byte
			challenge, serr = b64.DecodeString(r.Text)
			if serr == nil {
				resp, serr = sc.Next(challenge)
			}
		}
		if serr != nil {
			// Cancel the exchange (RFC 4954 §4); the server answers 501.
			if _, err := c.cmd(c.timeouts.Command, "*"); err != nil {
				return Reply{}, err
			}
			return Reply{}, fmt.Errorf("%w: %s: %w", ErrSASL, mech, serr)
		}
		r, err = c.cmd(c.timeouts.Command, b64.EncodeToString(resp))
	}
	if err != nil {
		return Reply{}, err
	}
	if v, ok := sc.(Verifier); ok && r.Code == 235 && !v.Verified() {
		// RFC 5802 §5: the server never proved that it knows the password.
		return r, fmt.Errorf("%w: %s: server accepted without proving it knows the credentials", ErrSASL, mech)
	}
	return r, nil
}
