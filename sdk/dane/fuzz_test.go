package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"
)

// fuzzChainPEM is a fixed chain for FuzzVerify, valid 2025 to 2125: the leaf
// mx.example.org (also *.mx.example.net), its intermediate, the root, and
// an unrelated root.
const fuzzChainPEM = `
-----BEGIN CERTIFICATE-----
MIIBqjCCAVGgAwIBAgIBAzAKBggqhkjOPQQDAjAcMRowGAYDVQQDExFGdXp6IElu
dGVybWVkaWF0ZTAgFw0yNTAxMDEwMDAwMDBaGA8yMTI1MDEwMTAwMDAwMFowGTEX
MBUGA1UEAxMObXguZXhhbXBsZS5vcmcwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC
AAS0K33mGaOLCGMubavDq502uVNf1ucp9S6ZdXvI7HPoAlv+x6ueep065M9+RqMf
/bFn5N9me6KzNR9ney2oMTgBo4GEMIGBMA4GA1UdDwEB/wQEAwIHgDATBgNVHSUE
DDAKBggrBgEFBQcDATAMBgNVHRMBAf8EAjAAMB8GA1UdIwQYMBaAFI/2fRzTgZSx
CTSD4pAjvcrpdGXTMCsGA1UdEQQkMCKCDm14LmV4YW1wbGUub3JnghAqLm14LmV4
YW1wbGUubmV0MAoGCCqGSM49BAMCA0cAMEQCIFhI4LSjxiLuZquz0AeQMXX70reh
jBta5RrmQUBPT1b/AiBI/H91XSpUVrwnUdkrHQ/EsA50yKkLDknwSRHVEMN4EA==
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIIBgzCCASqgAwIBAgIBAjAKBggqhkjOPQQDAjAUMRIwEAYDVQQDEwlGdXp6IFJv
b3QwIBcNMjUwMTAxMDAwMDAwWhgPMjEyNTAxMDEwMDAwMDBaMBwxGjAYBgNVBAMT
EUZ1enogSW50ZXJtZWRpYXRlMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9lUr
WGun50ect5qc+peCs0ixuuMNLNe6a2pN0hrTQ3KJplUrAya0NtgmIB5jHL/Waldx
/LhK8UXBlzx8FsqNsqNjMGEwDgYDVR0PAQH/BAQDAgKEMA8GA1UdEwEB/wQFMAMB
Af8wHQYDVR0OBBYEFI/2fRzTgZSxCTSD4pAjvcrpdGXTMB8GA1UdIwQYMBaAFAgI
SDeNEhSZulokXda37S4sF12LMAoGCCqGSM49BAMCA0cAMEQCIBfsiCwRdct2DLB9
FhyytrmHRnei/bHy5s3QCnqyCsaGAiAePo5OtIkyKdtG3AmVnpihzH8O5MpDblJd
tK/4nxiwZw==
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIIBWjCCAQGgAwIBAgIBATAKBggqhkjOPQQDAjAUMRIwEAYDVQQDEwlGdXp6IFJv
b3QwIBcNMjUwMTAxMDAwMDAwWhgPMjEyNTAxMDEwMDAwMDBaMBQxEjAQBgNVBAMT
CUZ1enogUm9vdDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABMqiud41SlCSERwD
035j2ZIc4hfylDmEri7a9/UIhyXO8BMVJ0aJnhm8pEJGP6S5ZsZrPWKqHE9A8+Z3
95dkYS6jQjBAMA4GA1UdDwEB/wQEAwIChDAPBgNVHRMBAf8EBTADAQH/MB0GA1Ud
DgQWBBQICEg3jRIUmbpaJF3Wt+0uLBddizAKBggqhkjOPQQDAgNHADBEAiBspEPi
P4WPiq4ovFwDsxvZ1YSaA7w+Bvj7sjIfwEfxCgIgZDsXf+mkuozG38IZOxRmqSPJ
pzpgbzmVjAdhKmuBN88=
-----END CERTIFICATE-----
-----BEGIN CERTIFICATE-----
MIIBXDCCAQOgAwIBAgIBBDAKBggqhkjOPQQDAjAVMRMwEQYDVQQDEwpPdGhlciBS
b290MCAXDTI1MDEwMTAwMDAwMFoYDzIxMjUwMTAxMDAwMDAwWjAVMRMwEQYDVQQD
EwpPdGhlciBSb290MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE1XDB5agFUn+9
OZdGagdPXzqmaYEczwWkftXoyH0MZoMGFvQHqm3woA6FCedAjbqpdWEudw1R72YG
pZHVDpxrW6NCMEAwDgYDVR0PAQH/BAQDAgKEMA8GA1UdEwEB/wQFMAMBAf8wHQYD
VR0OBBYEFNUU6N7sWo9RoAYy8tt2f19ju5IbMAoGCCqGSM49BAMCA0cAMEQCIEJ8
39UnHh6c3ntrceVvR0d+6r3wvmwfQlqrFrEBP+T4AiB7odg9Ul9D7Ql/c1+/3q7V
dyCW8NGShEy+cfs0F07ZjQ==
-----END CERTIFICATE-----
`

func fuzzCerts(t testing.TB) (leaf, inter, root, other *x509.Certificate) {
	var certs []*x509.Certificate
	rest := []byte(fuzzChainPEM)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	if len(certs) != 4 {
		t.Fatalf("%d certificates in fuzzChainPEM", len(certs))
	}
	return certs[0], certs[1], certs[2], certs[3]
}

// associationData computes what a record's selector and matching type give
// for cert (RFC 6698 §2.1.2, §2.1.3), written apart from association.
func associationData(selector, matchingType uint8, cert *x509.Certificate) ([]byte, bool) {
	var b []byte
	switch selector {
	case 0:
		b = cert.Raw
	case 1:
		b = cert.RawSubjectPublicKeyInfo
	default:
		return nil, false
	}
	switch matchingType {
	case 0:
		return b, true
	case 1:
		h := sha256.Sum256(b)
		return h[:], true
	case 2:
		h := sha512.Sum512(b)
		return h[:], true
	}
	return nil, false
}

// FuzzVerify verifies a fixed chain against TLSA records decoded from fuzzed
// bytes: per record usage, selector, matching type, a source and data. The
// source picks raw fuzzed data, the association of the leaf,
// intermediate, root or an unrelated root (with the last bit flipped if
// the source's high bit is set), or a whole certificate. Other fuzzed
// values pick the chain sent, the time and the allowed names.
// Invariants: no panic; only DANE-TA(2) and DANE-EE(3) records with known
// selector and matching type count (RFC 7672 §3.1.3, RFC 7671 §4), so
// dropping the others changes no outcome, and without usable records the
// error is ErrNoUsable; a success names one of the records, whose data is
// the leaf's association (DANE-EE) or a chain certificate's, or a whole
// issuer certificate (DANE-TA, RFC 7671 §5.2.2); a DANE-TA success has the
// leaf valid at that time and for the allowed name it reports.
func FuzzVerify(f *testing.F) {
	leaf, inter, root, other := fuzzCerts(f)
	for _, recs := range [][]byte{
		{3, 1, 1, 1, 0},
		{3, 0, 0, 1, 0},
		{3, 1, 2, 1 | 0x80, 0},
		{3, 1, 1, 3, 0},
		{2, 1, 1, 2, 0},
		{2, 0, 2, 3, 0},
		{2, 0, 0, 5, 2},
		{2, 0, 0, 5, 0},
		{2, 1, 1, 4, 0},
		{2, 1, 1, 1, 0},
		{1, 1, 1, 1, 0, 0, 1, 1, 3, 0},
		{0, 1, 1, 3, 0, 3, 4, 1, 1, 0},
		{3, 1, 1, 0, 4, 1, 2, 3, 4},
		{2, 1, 1, 2, 0, 3, 1, 1, 1 | 0x80, 0},
	} {
		f.Add(recs, uint8(0), "mx.example.org")
	}
	f.Add([]byte{2, 1, 1, 2, 0}, uint8(1), "example.org,mx.example.org.")
	f.Add([]byte{2, 1, 1, 2, 0}, uint8(2), "a.mx.example.net")
	f.Add([]byte{3, 1, 1, 1, 0}, uint8(3), "mx.example.org")
	f.Add([]byte{2, 1, 1, 2, 0}, uint8(4), "mx.example.org")
	f.Add([]byte{3, 1, 1, 1, 0}, uint8(5), "")
	f.Fuzz(func(t *testing.T, enc []byte, variant uint8, names string) {
		chains := [][]*x509.Certificate{{leaf, inter}, {leaf, inter, root}, {leaf, root, inter}, {leaf}, {leaf, other, inter}, nil}
		chain := chains[int(variant)%len(chains)]
		now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
		if variant >= 128 {
			now = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC) // After every certificate.
		}
		allowed := strings.Split(names, ",")
		sources := []*x509.Certificate{leaf, inter, root, other}

		var records []TLSA
		for len(enc) >= 5 && len(records) < 8 {
			r := TLSA{Usage: enc[0], Selector: enc[1], MatchingType: enc[2]}
			src, n := enc[3], int(enc[4])
			enc = enc[5:]
			n = min(n, len(enc))
			r.Data, enc = bytes.Clone(enc[:n]), enc[n:]
			switch i := int(src & 0x7f); {
			case i >= 1 && i <= 4:
				if d, ok := associationData(r.Selector, r.MatchingType, sources[i-1]); ok {
					r.Data = bytes.Clone(d)
				}
			case i == 5:
				r.Data = bytes.Clone(sources[n%len(sources)].Raw)
			}
			if src&0x80 != 0 && len(r.Data) > 0 {
				r.Data[len(r.Data)-1] ^= 1
			}
			records = append(records, r)
		}

		res, err := Verify(records, chain, allowed, now)
		var usable []TLSA
		for _, r := range records {
			if (r.Usage == 2 || r.Usage == 3) && r.Selector <= 1 && r.MatchingType <= 2 {
				usable = append(usable, r)
			}
		}
		if Usable(records) != (len(usable) > 0) {
			t.Fatalf("Usable %v for %v", Usable(records), records)
		}
		if len(usable) == 0 {
			if !errors.Is(err, ErrNoUsable) {
				t.Fatalf("no usable record in %v: %+v, %v; want ErrNoUsable", records, res, err)
			}
			return
		}
		res2, err2 := Verify(usable, chain, allowed, now)
		if (err == nil) != (err2 == nil) || err == nil && res.Record.String() != res2.Record.String() {
			t.Fatalf("unusable records change the outcome: %+v, %v with them; %+v, %v without", res, err, res2, err2)
		}
		if err != nil {
			return
		}
		r := res.Record
		found := false
		for _, u := range usable {
			found = found || u.String() == r.String()
		}
		if !found {
			t.Fatalf("matched record %s is not one of the usable %v", r, usable)
		}
		switch r.Usage {
		case 3:
			if d, _ := associationData(r.Selector, r.MatchingType, leaf); !bytes.Equal(d, r.Data) {
				t.Fatalf("DANE-EE %s verified, but it is not the leaf's", r)
			}
		case 2:
			anchor := false
			for _, c := range chain[1:] {
				d, _ := associationData(r.Selector, r.MatchingType, c)
				anchor = anchor || bytes.Equal(d, r.Data)
			}
			if r.Selector == 0 && r.MatchingType == 0 {
				// A whole certificate is a trust anchor by its name and
				// key (RFC 7671 §5.2.2), whatever its own signature.
				if c, err := x509.ParseCertificate(r.Data); err == nil {
					for _, issuer := range []*x509.Certificate{inter, root} {
						anchor = anchor || bytes.Equal(c.RawSubject, issuer.RawSubject) && bytes.Equal(c.RawSubjectPublicKeyInfo, issuer.RawSubjectPublicKeyInfo)
					}
				}
			}
			if !anchor {
				t.Fatalf("DANE-TA %s verified, but it is no issuer in the chain", r)
			}
			if now.After(leaf.NotAfter) {
				t.Fatalf("DANE-TA %s verified an expired leaf", r)
			}
			named := false
			for _, n := range allowed {
				named = named || strings.TrimSuffix(n, ".") == res.Name
			}
			if res.Name == "" || !named || leaf.VerifyHostname(res.Name) != nil {
				t.Fatalf("DANE-TA %s verified for name %q, allowed %q", r, res.Name, allowed)
			}
		default:
			t.Fatalf("usage %d verified", r.Usage)
		}
	})
}
