package sasl

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"hash"
	"net"

	"github.com/switchyard-mta/switchyard/sdk"
)

// ConnInfo describes a client connection to mechanism plugins. nc is the
// connection as the protocol server holds it: a *tls.Conn (or anything
// with its ConnectionState method) once TLS is up. serverTLS is the
// listener's TLS configuration, from which the certificate served is found
// for tls-server-end-point; nil without TLS.
func ConnInfo(protocol, listener string, nc net.Conn, serverTLS *tls.Config) sdk.ConnInfo {
	ci := sdk.ConnInfo{Protocol: protocol, Listener: listener}
	if a := nc.LocalAddr(); a != nil {
		ci.LocalAddr = a.String()
	}
	if a := nc.RemoteAddr(); a != nil {
		ci.RemoteAddr = a.String()
	}
	if tc, ok := nc.(interface{ ConnectionState() tls.ConnectionState }); ok {
		cs := tc.ConnectionState()
		if cs.HandshakeComplete {
			ci.TLS = TLSInfo(&cs, ServerCertificate(serverTLS, cs.ServerName))
		}
	}
	return ci
}

// TLSInfo returns the TLS state of a connection with its channel-binding
// data: tls-exporter on TLS 1.3 (RFC 9266 §2: 32 bytes of keying material
// exported with label "EXPORTER-Channel-Binding" and no context),
// tls-unique on earlier versions (RFC 5929 §3; undefined for TLS 1.3,
// RFC 9266 §3) and tls-server-end-point from serverCert (RFC 5929 §4),
// which may be nil.
func TLSInfo(cs *tls.ConnectionState, serverCert *x509.Certificate) *sdk.TLSInfo {
	ti := &sdk.TLSInfo{
		Version:          cs.Version,
		ServerName:       cs.ServerName,
		PeerCertificates: cs.PeerCertificates,
	}
	if cs.Version >= tls.VersionTLS13 {
		if b, err := cs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32); err == nil {
			ti.Exporter = b
		}
	} else {
		ti.Unique = cs.TLSUnique
	}
	if serverCert != nil {
		ti.ServerEndPoint = ServerEndPoint(serverCert)
	}
	return ti
}

// ServerEndPoint returns the tls-server-end-point binding of a server
// certificate: its hash with the hash function of its signature algorithm,
// SHA-256 where that is MD5 or SHA-1 (RFC 5929 §4.1). It is nil where the
// binding is undefined: signature algorithms without a separate hash
// function, such as Ed25519.
func ServerEndPoint(cert *x509.Certificate) []byte {
	var h hash.Hash
	switch cert.SignatureAlgorithm {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.ECDSAWithSHA256, x509.DSAWithSHA256:
		h = sha256.New()
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		h = sha512.New384()
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		h = sha512.New()
	default:
		return nil
	}
	h.Write(cert.Raw)
	return h.Sum(nil)
}

// ServerCertificate returns the leaf certificate cfg serves to a client
// that asked for serverName (SNI): GetCertificate's answer if set, else the
// only certificate, else the first valid for serverName, else the first;
// crypto/tls chooses so too for certificates that suit the client. Nil if
// there is none.
func ServerCertificate(cfg *tls.Config, serverName string) *x509.Certificate {
	if cfg == nil {
		return nil
	}
	if cfg.GetCertificate != nil {
		c, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: serverName})
		if err == nil && c != nil {
			return leaf(c)
		}
	}
	var first *x509.Certificate
	for i := range cfg.Certificates {
		l := leaf(&cfg.Certificates[i])
		if l == nil {
			continue
		}
		if first == nil {
			first = l
		}
		if len(cfg.Certificates) == 1 || serverName == "" {
			return l
		}
		if l.VerifyHostname(serverName) == nil {
			return l
		}
	}
	return first
}

func leaf(c *tls.Certificate) *x509.Certificate {
	if c.Leaf != nil {
		return c.Leaf
	}
	if len(c.Certificate) == 0 {
		return nil
	}
	l, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return nil
	}
	return l
}
