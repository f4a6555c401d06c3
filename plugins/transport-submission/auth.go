package main

import (
	"crypto/tls"
	"errors"
	"strings"

	"github.com/emersion/go-sasl"
)

// clientMechanism is a SASL mechanism (RFC 4422) this client can use.
type clientMechanism struct {
	name string
	// new starts an exchange; cs is the TLS state, for channel binding.
	new func(username, password string, cs *tls.ConnectionState) sasl.Client
}

// clientMechanisms are the supported mechanisms, most secure first: without
// configured mechanisms, the first one the smarthost offers is used. A new
// mechanism (SCRAM-SHA-256-PLUS, CRAM-MD5, ...) is one entry here.
var clientMechanisms = []clientMechanism{
	// PLAIN (RFC 4616) before LOGIN: both send the password, PLAIN is the
	// standard and takes one round trip.
	{"PLAIN", func(u, p string, _ *tls.ConnectionState) sasl.Client { return sasl.NewPlainClient("", u, p) }},
	{"LOGIN", func(u, p string, _ *tls.ConnectionState) sasl.Client { return &loginClient{username: u, password: p} }},
}

// findMechanism returns the supported mechanism named name (upper case).
func findMechanism(name string) (clientMechanism, bool) {
	for _, m := range clientMechanisms {
		if m.name == name {
			return m, true
		}
	}
	return clientMechanism{}, false
}

// mechanismNames lists the supported mechanisms, most secure first.
func mechanismNames() []string {
	names := make([]string, len(clientMechanisms))
	for i, m := range clientMechanisms {
		names[i] = m.name
	}
	return names
}

// selectMechanism picks the mechanism to use from those the server offers
// (the parameter of the AUTH EHLO keyword, RFC 4954 §3): the first of
// configured it offers, or without configured mechanisms the first of
// clientMechanisms.
func selectMechanism(configured []string, offered string) (clientMechanism, bool) {
	if len(configured) == 0 {
		configured = mechanismNames()
	}
	have := map[string]bool{}
	for _, m := range strings.Fields(offered) {
		have[strings.ToUpper(m)] = true
	}
	for _, name := range configured {
		if m, ok := findMechanism(name); ok && have[name] {
			return m, true
		}
	}
	return clientMechanism{}, false
}

// loginClient is the client of LOGIN (draft-murchison-sasl-login-00): the
// username and the password answer the server's two prompts, in order,
// whatever their text. go-sasl's client sends the username as an initial
// response and insists on the prompt "Password:", which not every server
// sends.
type loginClient struct {
	username, password string
	step               int
}

func (c *loginClient) Start() (string, []byte, error) { return "LOGIN", nil, nil }

func (c *loginClient) Next(challenge []byte) ([]byte, error) {
	c.step++
	switch c.step {
	case 1:
		return []byte(c.username), nil
	case 2:
		return []byte(c.password), nil
	}
	return nil, errors.New("LOGIN: unexpected third challenge")
}
