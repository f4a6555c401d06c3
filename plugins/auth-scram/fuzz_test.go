package authscram

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"hash"
	"log/slog"
	"strings"
	"testing"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/plugintest"
)

const (
	fuzzLogin    = "alice@example.org"
	fuzzAccount  = "alice"
	fuzzPassword = "correct horse"
)

// fuzzConns are the connections an exchange may run on: none, TLS 1.2,
// TLS 1.3, and TLS 1.3 with tls-unique filled in by mistake.
var fuzzConns = []*sdk.TLSInfo{nil, tls12, tls13, tls13Unique}

// scramKeys is what the oracle knows of alice for one family, computed with
// crypto/pbkdf2 and crypto/hmac rather than the SCRAM library (RFC 5802 §3).
type scramKeys struct {
	newHash   func() hash.Hash
	clientKey []byte
	storedKey []byte
	serverKey []byte
}

func newScramKeys(t testing.TB, f family, secret []byte) scramKeys {
	sc, err := decodeSecret(f, secret)
	if err != nil {
		t.Fatal(err)
	}
	k := scramKeys{newHash: sha256.New}
	if f.name == "SCRAM-SHA-1" {
		k.newHash = sha1.New
	}
	// SaltedPassword := Hi(password, salt, i).
	salted, err := pbkdf2.Key(k.newHash, fuzzPassword, []byte(sc.Salt), sc.Iters, k.newHash().Size())
	if err != nil {
		t.Fatal(err)
	}
	k.clientKey = k.mac(salted, "Client Key")
	h := k.newHash()
	h.Write(k.clientKey)
	k.storedKey = h.Sum(nil)
	k.serverKey = k.mac(salted, "Server Key")
	if !bytes.Equal(k.storedKey, sc.StoredKey) || !bytes.Equal(k.serverKey, sc.ServerKey) {
		t.Fatalf("%s: oracle keys differ from the derived secret", f.name)
	}
	return k
}

func (k scramKeys) mac(key []byte, msg string) []byte {
	m := hmac.New(k.newHash, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// proof is ClientKey XOR HMAC(StoredKey, AuthMessage) (RFC 5802 §3).
func (k scramKeys) proof(authMessage string) []byte {
	sig := k.mac(k.storedKey, authMessage)
	p := make([]byte, len(sig))
	for i := range sig {
		p[i] = k.clientKey[i] ^ sig[i]
	}
	return p
}

// cbindData is the channel-binding data a connection offers for a GS2 flag
// "p=<type>", as its fields hold it (tls-unique even on TLS 1.3), so fuzzed
// exchanges can try to bind to what they should not.
func cbindData(ti *sdk.TLSInfo, flag string) []byte {
	if ti == nil {
		return nil
	}
	switch flag {
	case "p=tls-unique":
		return ti.Unique
	case "p=tls-exporter":
		return ti.Exporter
	case "p=tls-server-end-point":
		return ti.ServerEndPoint
	}
	return nil
}

// validBinding is the binding data RFC 5802 §6 allows for flag on ti:
// tls-unique only before TLS 1.3 (RFC 9266 §3), none for "n" and "y".
func validBinding(ti *sdk.TLSInfo, flag string) ([]byte, bool) {
	switch {
	case flag == "n" || flag == "y":
		return nil, true
	case ti == nil:
		return nil, false
	case flag == "p=tls-unique" && ti.Version >= tls.VersionTLS13:
		return nil, false
	}
	d := cbindData(ti, flag)
	return d, len(d) > 0
}

// FuzzExchange runs the server side of a SCRAM exchange in process with a
// fuzzed client-first-message and client-final-message, on a fuzzed
// mechanism and connection. In the client-final, NONCE stands for the
// server's nonce, CBIND for the base64 of the GS2 header and the
// connection's binding data, and a final ",p=PROOF" for alice's correct
// proof, so that the fuzzer reaches the checks behind the proof.
// Invariants: no panic, even one the plugin recovers; messages after the
// outcome are refused; and success only when an oracle, reading the
// messages by RFC 5802 §7 itself, finds alice's right proof over the whole
// exchange, the right channel binding for the mechanism and connection
// (§6), the server's nonce, and an authzid that is alice's; on success the
// server signature is the right one.
func FuzzExchange(f *testing.F) {
	host := &plugintest.Host{}
	m := newMechanism(slog.New(slog.DiscardHandler))
	m.cfg.host = host
	secrets, err := m.Derive(context.Background(), fuzzAccount, fuzzPassword)
	if err != nil {
		f.Fatal(err)
	}
	keys := map[string]scramKeys{}
	for _, fam := range families {
		host.SetSecret(fuzzLogin, fam.name, sdk.Credential{Account: fuzzAccount, Login: fuzzLogin, Secret: secrets[fam.name]})
		keys[fam.name] = newScramKeys(f, fam, secrets[fam.name])
	}

	const good = "c=CBIND,r=NONCE,p=PROOF"
	for mech := range mechanismNames {
		for conn := range fuzzConns {
			f.Add(uint8(mech), uint8(conn), false, "n,,n=alice@example.org,r=fyko+d2lbbFgONRv9qkxdawL", good)
			f.Add(uint8(mech), uint8(conn), true, "y,,n=alice@example.org,r=abc", good)
			for _, cb := range []string{"tls-unique", "tls-exporter", "tls-server-end-point"} {
				f.Add(uint8(mech), uint8(conn), false, "p="+cb+",,n=alice@example.org,r=abc", good)
				f.Add(uint8(mech), uint8(conn), false, "p="+cb+",a=alice,n=Alice@Example.org,r=abc", good)
			}
		}
	}
	f.Add(uint8(1), uint8(0), false, "n,a=bob@example.org,n=alice@example.org,r=abc", good)
	f.Add(uint8(1), uint8(0), false, "n,,n=nobody@example.org,r=abc", good)
	f.Add(uint8(1), uint8(0), false, "n,,n=alice@example.org,r=abc", "c=biws,r=NONCE,p=dGhpcyBpcyBub3QgdGhlIHByb29mIGF0IGFsbCEhISE=")
	f.Add(uint8(1), uint8(0), false, "n,,n=alice@example.org,r=abc", "c=biws,r=NONCEx,p=PROOF")
	f.Add(uint8(1), uint8(0), false, "n,,n=alice@example.org,r=abc", "c=eSws,r=NONCE,p=PROOF")
	f.Add(uint8(1), uint8(0), false, "n,,n=alice@example.org,r=abc,ext=1", "c=biws,r=NONCE,x=y,p=PROOF")
	f.Add(uint8(1), uint8(0), false, "n,,m=ext,n=alice@example.org,r=abc", good)
	f.Add(uint8(1), uint8(0), false, "n,,n=al=2Cice,r=abc", good)

	f.Fuzz(func(t *testing.T, mechIdx, connIdx uint8, prompt bool, first, final string) {
		ctx := context.Background()
		mech := mechanismNames[int(mechIdx)%len(mechanismNames)]
		ti := fuzzConns[int(connIdx)%len(fuzzConns)]
		fam, plus, _ := lookupFamily(mech)
		ex, err := m.Start(ctx, mech, sdk.ConnInfo{Protocol: "smtp", TLS: ti})
		if err != nil {
			t.Fatal(err)
		}
		// checkEnd asserts an outcome is not a recovered panic and that the
		// exchange takes no further message.
		checkEnd := func(out *sdk.AuthOutcome) {
			t.Helper()
			if strings.HasPrefix(out.Reason, "internal error") {
				t.Fatalf("plugin recovered a panic: %s", out.Reason)
			}
			if out.Success && out.Account != fuzzAccount {
				t.Fatalf("success as %q", out.Account)
			}
			ch, again, err := ex.Next(ctx, []byte(final))
			if err != nil || again == nil || again.Success || ch != nil {
				t.Fatalf("message after the outcome: %q, %+v, %v", ch, again, err)
			}
		}
		if prompt {
			if ch, out, err := ex.Next(ctx, nil); err != nil || out != nil || len(ch) != 0 {
				// -PLUS without TLS ends at once; that is a failure, and fine.
				if err != nil || out == nil || out.Success {
					t.Fatalf("prompt: %q, %+v, %v", ch, out, err)
				}
				checkEnd(out)
				return
			}
		}
		ch, out, err := ex.Next(ctx, []byte(first))
		if err != nil {
			t.Fatalf("client-first: %v", err)
		}
		if out != nil {
			if out.Success {
				t.Fatalf("success after client-first %q", first)
			}
			checkEnd(out)
			return
		}
		serverFirst := string(ch)
		nonce, _, _ := strings.Cut(strings.TrimPrefix(serverFirst, "r="), ",")

		// The client-first parts, as the oracle reads them (RFC 5802 §7).
		flag, rest, _ := strings.Cut(first, ",")
		authzField, bare, _ := strings.Cut(rest, ",")
		gs2Header := flag + "," + authzField + ","
		k := keys[fam.name]

		msg := strings.ReplaceAll(final, "NONCE", nonce)
		msg = strings.ReplaceAll(msg, "CBIND", base64.StdEncoding.EncodeToString(append([]byte(gs2Header), cbindData(ti, flag)...)))
		if without, ok := strings.CutSuffix(msg, ",p=PROOF"); ok {
			msg = without + ",p=" + base64.StdEncoding.EncodeToString(k.proof(bare+","+serverFirst+","+without))
		}
		ch, out, err = ex.Next(ctx, []byte(msg))
		if err != nil || out == nil || ch != nil {
			t.Fatalf("client-final: %q, %+v, %v; want an outcome", ch, out, err)
		}
		if out.Success {
			checkSuccess(t, k, ti, plus, first, serverFirst, msg, out)
		}
		checkEnd(out)
	})
}

// checkSuccess is the oracle: it fails t unless the exchange that succeeded
// is one RFC 5802 lets succeed for alice.
func checkSuccess(t *testing.T, k scramKeys, ti *sdk.TLSInfo, plus bool, first, serverFirst, final string, out *sdk.AuthOutcome) {
	t.Helper()
	fail := func(why string) {
		t.Helper()
		t.Fatalf("success that must fail: %s\nclient-first %q\nserver-first %q\nclient-final %q\noutcome %+v", why, first, serverFirst, final, out)
	}
	flag, rest, _ := strings.Cut(first, ",")
	authzField, bare, ok := strings.Cut(rest, ",")
	if !ok {
		fail("no GS2 header")
	}
	gs2Header := flag + "," + authzField + ","
	switch {
	case plus && !strings.HasPrefix(flag, "p="):
		fail("-PLUS without channel binding")
	case flag == "y" && ti != nil:
		fail("flag y over TLS: a downgrade")
	}
	bindData, ok := validBinding(ti, flag)
	if !ok {
		fail("no valid channel binding for flag " + flag)
	}
	fields := strings.Split(bare, ",")
	if len(fields) < 2 || !strings.HasPrefix(fields[0], "n=") || !strings.HasPrefix(fields[1], "r=") {
		fail("client-first-message-bare is not n=,r=")
	}
	user := strings.NewReplacer("=2C", ",", "=3D", "=").Replace(fields[0][2:])
	if !strings.EqualFold(user, fuzzLogin) {
		fail("user " + user)
	}
	if authzField != "" {
		az, ok := strings.CutPrefix(authzField, "a=")
		az = strings.NewReplacer("=2C", ",", "=3D", "=").Replace(az)
		if !ok || !strings.EqualFold(az, fuzzLogin) && !strings.EqualFold(az, fuzzAccount) {
			fail("authzid " + authzField)
		}
	}
	sfields := strings.Split(serverFirst, ",")
	nonce := strings.TrimPrefix(sfields[0], "r=")
	if !strings.HasPrefix(nonce, fields[1][2:]) || len(nonce) <= len(fields[1][2:]) {
		fail("server nonce does not extend the client's")
	}
	i := strings.LastIndex(final, ",p=")
	if i < 0 {
		fail("no proof")
	}
	without := final[:i]
	ffields := strings.Split(without, ",")
	if len(ffields) < 2 || ffields[1] != "r="+nonce {
		fail("client-final nonce")
	}
	cb, ok := strings.CutPrefix(ffields[0], "c=")
	cbind, err := base64.StdEncoding.DecodeString(cb)
	if !ok || err != nil || !bytes.Equal(cbind, append([]byte(gs2Header), bindData...)) {
		fail("channel binding")
	}
	authMessage := bare + "," + serverFirst + "," + without
	proof, err := base64.StdEncoding.DecodeString(final[i+3:])
	if err != nil || !hmac.Equal(proof, k.proof(authMessage)) {
		fail("proof")
	}
	wantFinal := "v=" + base64.StdEncoding.EncodeToString(k.mac(k.serverKey, authMessage))
	if string(out.FinalData) != wantFinal {
		t.Fatalf("server-final %q, want %q", out.FinalData, wantFinal)
	}
}
