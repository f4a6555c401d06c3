package smtpclient

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/xdg-go/scram"
)

// Mechanisms returns the SASL mechanisms the client supports, most secure
// first: the order of the default choice.
func Mechanisms() []string {
	return []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"}
}

// SelectMechanism picks the SASL mechanism to use from those the server
// offers (the parameters of the AUTH EHLO keyword, RFC 4954 §3), given the
// TLS state of the connection (nil without TLS).
//
// With preferred mechanisms, it is the first of them the server offers.
// Without, it is the most secure one the server offers, in the order of
// Mechanisms, where PLAIN and LOGIN, which send the password, count only
// over TLS. Either way a -PLUS variant needs TLS with channel binding data
// (see NewSASLClient), and an unsupported name is skipped.
func SelectMechanism(preferred, offered []string, cs *tls.ConnectionState) (string, bool) {
	usable := func(m string) bool {
		if !slices.ContainsFunc(offered, func(o string) bool { return strings.EqualFold(o, m) }) {
			return false
		}
		if strings.HasSuffix(m, "-PLUS") {
			_, ok := channelBinding(cs)
			return ok
		}
		return true
	}
	supported := Mechanisms()
	if len(preferred) > 0 {
		for _, m := range preferred {
			m = strings.ToUpper(m)
			if slices.Contains(supported, m) && usable(m) {
				return m, true
			}
		}
		return "", false
	}
	for _, m := range supported {
		if (m == "PLAIN" || m == "LOGIN") && cs == nil {
			continue // RFC 4616 §6, RFC 4954 §4: no password in clear.
		}
		if usable(m) {
			return m, true
		}
	}
	return "", false
}

// NewSASLClient returns a client of the named mechanism (one of Mechanisms)
// for username and password. cs is the TLS state of the connection, nil
// without TLS; offered are the mechanisms the server offers.
//
// SCRAM clients bind to the channel (RFC 5802 §6) with tls-exporter on TLS
// 1.3 (RFC 9266) or tls-unique on TLS 1.2 (RFC 5929 §3). Their gs2 flag is
// "p=" the binding type for a -PLUS variant; "y" for the plain one over TLS
// when the server does not offer the -PLUS variant, so that a server that
// does detects the downgrade; and "n" without TLS, or when the plain variant
// was chosen though the -PLUS one is offered (a configured choice). They
// implement Verifier: the server's final message must prove that it knows
// the password.
func NewSASLClient(mechanism, username, password string, cs *tls.ConnectionState, offered []string) (sasl.Client, error) {
	switch m := strings.ToUpper(mechanism); m {
	case "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1":
		hash := scram.SHA256
		if strings.HasPrefix(m, "SCRAM-SHA-1") {
			hash = scram.SHA1
		}
		client, err := hash.NewClient(username, password, "")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m, err)
		}
		cb, bound := channelBinding(cs)
		var conv *scram.ClientConversation
		switch {
		case strings.HasSuffix(m, "-PLUS"):
			if !bound {
				return nil, fmt.Errorf("%s: no TLS channel binding data on this connection", m)
			}
			conv = client.NewConversationWithChannelBinding(cb)
		case bound && !slices.ContainsFunc(offered, func(o string) bool { return strings.EqualFold(o, m+"-PLUS") }):
			conv = client.NewConversationAdvertisingChannelBinding()
		default:
			conv = client.NewConversation()
		}
		return &scramClient{mech: m, conv: conv}, nil
	case "CRAM-MD5":
		return &cramMD5Client{username: username, password: password}, nil
	case "PLAIN":
		return sasl.NewPlainClient("", username, password), nil
	case "LOGIN":
		return &loginClient{username: username, password: password}, nil
	}
	return nil, fmt.Errorf("SASL mechanism %q is not supported", mechanism)
}

// channelBinding returns the channel binding data of the TLS connection cs:
// tls-exporter on TLS 1.3 (RFC 9266 §2), tls-unique on TLS 1.2 (RFC 5929
// §3), which Go leaves empty on a resumed session without extended master
// secret (RFC 7627).
func channelBinding(cs *tls.ConnectionState) (scram.ChannelBinding, bool) {
	switch {
	case cs == nil:
		return scram.ChannelBinding{}, false
	case cs.Version >= tls.VersionTLS13:
		cb, err := scram.NewTLSExporterBinding(cs)
		return cb, err == nil
	case cs.Version == tls.VersionTLS12 && len(cs.TLSUnique) > 0:
		return scram.NewTLSUniqueBinding(cs.TLSUnique), true
	}
	return scram.ChannelBinding{}, false
}

// scramClient is the client of SCRAM (RFC 5802 §5): client-first as the
// initial response, client-final in answer to server-first, and an empty
// response to server-final once its signature is verified (RFC 4422 §5).
type scramClient struct {
	mech string
	conv *scram.ClientConversation
}

func (c *scramClient) Start() (string, []byte, error) {
	first, err := c.conv.Step("")
	return c.mech, []byte(first), err
}

func (c *scramClient) Next(challenge []byte) ([]byte, error) {
	if c.conv.Done() {
		return nil, errors.New("challenge after server-final")
	}
	resp, err := c.conv.Step(string(challenge))
	return []byte(resp), err
}

// Verified reports whether the server's signature in server-final was right.
func (c *scramClient) Verified() bool { return c.conv.Valid() }

// cramMD5Client is the client of CRAM-MD5 (RFC 2195 §2): the answer to the
// challenge is the username, a space and the HMAC-MD5 of the challenge keyed
// with the password, in lower-case hex.
type cramMD5Client struct {
	username, password string
	answered           bool
}

func (c *cramMD5Client) Start() (string, []byte, error) { return "CRAM-MD5", nil, nil }

func (c *cramMD5Client) Next(challenge []byte) ([]byte, error) {
	if c.answered {
		return nil, errors.New("CRAM-MD5: unexpected second challenge")
	}
	c.answered = true
	mac := hmac.New(md5.New, []byte(c.password))
	mac.Write(challenge)
	return []byte(c.username + " " + hex.EncodeToString(mac.Sum(nil))), nil
}

// loginClient is the client of LOGIN (draft-murchison-sasl-login-00): it
// answers a prompt naming the password ("Password:") with the password, one
// naming the user ("Username:") with the username, and any other first with
// the username and second with the password, as servers differ. go-sasl's
// client sends the username as an initial response and insists on the
// exact prompt "Password:".
type loginClient struct {
	username, password string
	step               int
}

func (c *loginClient) Start() (string, []byte, error) { return "LOGIN", nil, nil }

func (c *loginClient) Next(challenge []byte) ([]byte, error) {
	c.step++
	if c.step > 2 {
		return nil, errors.New("LOGIN: unexpected third challenge")
	}
	prompt := strings.ToLower(string(challenge))
	switch {
	case strings.Contains(prompt, "pass"):
		return []byte(c.password), nil
	case strings.Contains(prompt, "user"):
		return []byte(c.username), nil
	case c.step == 1:
		return []byte(c.username), nil
	}
	return []byte(c.password), nil
}
