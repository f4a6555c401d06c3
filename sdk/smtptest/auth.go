package smtptest

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/xdg-go/scram"
)

// Auth is an AUTH exchange the server saw, successful or not.
type Auth struct {
	Mech string
	User string // As the client gave it; "" until it did.
	OK   bool   // Authenticated.

	// SCRAM only (RFC 5802 §7): the gs2 header the client sent
	// ("n,,", "y,," or "p=tls-exporter,,"), the channel binding data in its
	// c= attribute, and the server's own from its side of TLS, which a
	// -PLUS exchange must have equal.
	GS2           string
	ClientBinding []byte
	ServerBinding []byte
}

// SCRAMFault is a SCRAM misbehaviour of the server, to test that a client
// catches it (RFC 5802 §6, §9).
type SCRAMFault int

const (
	NoSCRAMFault SCRAMFault = iota
	// SCRAMPlusStripped binds to the channel as if -PLUS variants had been
	// offered and stripped on the way: a client that supports binding
	// says so ("y,,") and the server must fail it as a downgrade.
	SCRAMPlusStripped
	// SCRAMWrongBinding derives wrong binding data, so a -PLUS exchange
	// fails at the server.
	SCRAMWrongBinding
	// SCRAMWrongSignature sends a wrong server signature, which the
	// client must refuse.
	SCRAMWrongSignature
	// SCRAMNoFinal answers 235 without server-final, which the client
	// must refuse as unauthenticated.
	SCRAMNoFinal
)

// cramChallenge is the CRAM-MD5 challenge, that of RFC 2195 §2.
const cramChallenge = "<1896.697170952@postoffice.reston.mci.net>"

func (ss *session) AuthMechanisms() []string { return ss.s.opts.Mechanisms }

func (ss *session) Auth(mech string) (sasl.Server, error) {
	s := ss.s
	s.mu.Lock()
	s.auths = append(s.auths, Auth{Mech: mech})
	i := len(s.auths) - 1
	s.mu.Unlock()
	a := &exchange{ss: ss, i: i}
	switch mech {
	case "PLAIN":
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			a.user(user)
			if identity != "" && identity != user {
				return a.done(false)
			}
			return a.check(pass)
		}), nil
	case "LOGIN":
		return &loginServer{a: a}, nil
	case "CRAM-MD5":
		return &cramMD5Server{a: a}, nil
	case "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1":
		return ss.scram(mech, a)
	case "EXTERNAL":
		return sasl.NewExternalServer(func(identity string) error {
			user, ok := ss.clientKeyUser()
			a.user(user)
			return a.done(ok && (identity == "" || identity == user))
		}), nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// clientKeyUser returns the user of the client's TLS certificate
// (Options.ClientKeys).
func (ss *session) clientKeyUser() (string, bool) {
	cs, ok := ss.conn.TLSConnectionState()
	if !ok || len(cs.PeerCertificates) == 0 {
		return "", false
	}
	sum := sha256.Sum256(cs.PeerCertificates[0].RawSubjectPublicKeyInfo)
	user, ok := ss.s.opts.ClientKeys[base64.RawURLEncoding.EncodeToString(sum[:])]
	return user, ok
}

// exchange updates the record of an AUTH exchange as it goes.
type exchange struct {
	ss *session
	i  int // In Server.auths.
}

func (a *exchange) update(f func(*Auth)) {
	s := a.ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.auths[a.i])
}

func (a *exchange) user(u string) { a.update(func(r *Auth) { r.User = u }) }

// done ends the exchange, authenticated if ok; it returns the error for
// go-smtp.
func (a *exchange) done(ok bool) error {
	var rec Auth
	a.update(func(r *Auth) {
		r.OK = ok
		rec = *r
	})
	if !rec.OK {
		return smtp.ErrAuthFailed
	}
	a.ss.auth = &rec
	return nil
}

// password returns the password of the user named, and whether the user
// is known.
func (a *exchange) password() (pass string, known bool) {
	var user string
	a.update(func(r *Auth) { user = r.User })
	pass, known = a.ss.s.opts.Users[user]
	return pass, known
}

// check ends a password exchange.
func (a *exchange) check(pass string) error {
	want, known := a.password()
	return a.done(known && pass == want)
}

// loginServer is the server side of LOGIN, with the usual prompts; a user
// name may come as the initial response.
type loginServer struct {
	a    *exchange
	step int
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	l.step++
	switch {
	case l.step == 1 && len(resp) == 0:
		return []byte("Username:"), false, nil
	case l.step <= 2:
		l.step = 2
		l.a.user(string(resp))
		return []byte("Password:"), false, nil
	}
	return nil, true, l.a.check(string(resp))
}

// cramMD5Server is the server side of CRAM-MD5 (RFC 2195).
type cramMD5Server struct {
	a    *exchange
	sent bool
}

func (c *cramMD5Server) Next(resp []byte) ([]byte, bool, error) {
	if !c.sent {
		c.sent = true
		return []byte(cramChallenge), false, nil
	}
	user, digest, _ := strings.Cut(string(resp), " ")
	c.a.user(user)
	pass, known := c.a.password()
	mac := hmac.New(md5.New, []byte(pass))
	mac.Write([]byte(cramChallenge))
	return nil, true, c.a.done(known && digest == hex.EncodeToString(mac.Sum(nil)))
}

// scram starts the server side of SCRAM with xdg-go/scram, binding to the
// channel with tls-exporter on TLS 1.3 (RFC 9266) and tls-unique on TLS 1.2
// (RFC 5929 §3).
func (ss *session) scram(mech string, a *exchange) (sasl.Server, error) {
	o := ss.s.opts
	hash := scram.SHA256
	if strings.HasPrefix(mech, "SCRAM-SHA-1") {
		hash = scram.SHA1
	}
	server, err := hash.NewServer(func(user string) (scram.StoredCredentials, error) {
		a.user(user)
		pass, ok := o.Users[user]
		if !ok {
			return scram.StoredCredentials{}, errors.New("unknown user")
		}
		client, err := hash.NewClient(user, pass, "")
		if err != nil {
			return scram.StoredCredentials{}, err
		}
		return client.GetStoredCredentialsWithError(scram.KeyFactors{Salt: "salt of the earth", Iters: 4096})
	})
	if err != nil {
		return nil, err
	}
	var cb scram.ChannelBinding
	if cs, ok := ss.conn.TLSConnectionState(); ok {
		if cs.Version == tls.VersionTLS13 {
			data, err := cs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
			if err != nil {
				return nil, err
			}
			cb = scram.ChannelBinding{Type: scram.ChannelBindingTLSExporter, Data: data}
		} else {
			cb = scram.ChannelBinding{Type: scram.ChannelBindingTLSUnique, Data: cs.TLSUnique}
		}
	}
	a.update(func(r *Auth) { r.ServerBinding = cb.Data })
	if o.SCRAMFault == SCRAMWrongBinding && len(cb.Data) > 0 {
		cb.Data = append([]byte(nil), cb.Data...)
		cb.Data[0] ^= 1
	}
	plusOffered := false
	for _, m := range o.Mechanisms {
		plusOffered = plusOffered || strings.HasSuffix(m, "-PLUS")
	}
	var conv *scram.ServerConversation
	switch {
	case strings.HasSuffix(mech, "-PLUS"):
		conv = server.NewConversationWithChannelBindingRequired(cb)
	case cb.IsSupported() && (plusOffered || o.SCRAMFault == SCRAMPlusStripped):
		conv = server.NewConversationWithChannelBinding(cb) // Detects a downgrade.
	default:
		conv = server.NewConversation()
	}
	return &scramServer{a: a, conv: conv, fault: o.SCRAMFault}, nil
}

// scramServer runs a SCRAM conversation in SMTP AUTH: server-final goes
// as a challenge, answered by an empty response (RFC 4954 §4).
type scramServer struct {
	a     *exchange
	conv  *scram.ServerConversation
	fault SCRAMFault
	step  int
}

func (x *scramServer) Next(resp []byte) ([]byte, bool, error) {
	x.step++
	switch x.step {
	case 1: // client-first
		if parts := strings.SplitN(string(resp), ",", 3); len(parts) == 3 {
			x.a.update(func(r *Auth) { r.GS2 = parts[0] + "," + parts[1] + "," })
		}
	case 2: // client-final
		for attr := range strings.SplitSeq(string(resp), ",") {
			if v, ok := strings.CutPrefix(attr, "c="); ok {
				cbind, _ := base64.StdEncoding.DecodeString(v)
				x.a.update(func(r *Auth) { r.ClientBinding = bytes.TrimPrefix(cbind, []byte(r.GS2)) })
			}
		}
	default: // The empty response to server-final.
		return nil, true, x.a.done(len(resp) == 0 && x.conv.Valid())
	}
	out, err := x.conv.Step(string(resp))
	if err != nil {
		x.a.done(false)
		return nil, true, smtp.ErrAuthFailed
	}
	if x.step == 2 {
		switch x.fault {
		case SCRAMNoFinal:
			return nil, true, x.a.done(true)
		case SCRAMWrongSignature:
			out = "v=" + base64.StdEncoding.EncodeToString(make([]byte, 32))
		}
	}
	return []byte(out), false, nil
}
