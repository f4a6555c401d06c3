package sasl

import (
	"bytes"
	"context"
	"errors"
	"testing"

	gosasl "github.com/emersion/go-sasl"
)

// plainOracle decides a PLAIN message independently of go-sasl: exactly
// authzid NUL authcid NUL passwd (RFC 4616 §2), authcid a login of
// fakeAccounts, passwd fakePasswords' "secret", and authzid empty or naming
// the same account (CheckPassword's rule).
func plainOracle(msg []byte) (account string, ok bool) {
	authzid, rest, ok1 := bytes.Cut(msg, []byte{0})
	login, passwd, ok2 := bytes.Cut(rest, []byte{0})
	if !ok1 || !ok2 || bytes.IndexByte(passwd, 0) >= 0 || string(passwd) != "secret" {
		return "", false
	}
	acc, known := fakeAccounts{}.AccountByLogin(string(login))
	if !known {
		return "", false
	}
	if len(authzid) > 0 {
		if zacc, zok := (fakeAccounts{}).AccountByLogin(string(authzid)); !zok || zacc != acc {
			return "", false
		}
	}
	return acc, true
}

// FuzzPlain runs a PLAIN exchange as the SMTP and IMAP listeners do:
// go-sasl's server with CheckPassword behind it. Invariants: the check sees
// no field with a NUL and is called at most once, only for a message of
// three NUL-separated fields; the exchange succeeds exactly when the oracle
// accepts the message, as that account; a response after the end is refused
// without a second check.
func FuzzPlain(f *testing.F) {
	for _, m := range []string{
		"\x00alice\x00secret",
		"alice@example.org\x00alice\x00secret",
		"bob\x00alice\x00secret",
		"\x00alice\x00guess",
		"\x00mallory\x00secret",
		"\x00alice\x00secret\x00",
		"\x00\x00",
		"alice\x00secret",
		"",
		"\x00alice\x00broken",
	} {
		f.Add([]byte(m), true)
	}
	f.Add([]byte("\x00bob\x00secret"), false)
	f.Fuzz(func(t *testing.T, msg []byte, initial bool) {
		checks := 0
		var account string
		pw := &fakePasswords{}
		s := gosasl.NewPlainServer(func(authzid, login, password string) error {
			checks++
			for _, field := range []string{authzid, login, password} {
				if bytes.IndexByte([]byte(field), 0) >= 0 {
					t.Fatalf("check got a field with NUL: %q %q %q", authzid, login, password)
				}
			}
			if authzid+"\x00"+login+"\x00"+password != string(msg) {
				t.Fatalf("check got %q %q %q from message %q", authzid, login, password, msg)
			}
			acc, reason, err := CheckPassword(context.Background(), fakeAccounts{}, pw, authzid, login, password)
			switch {
			case err != nil:
				return err
			case reason != "":
				return errors.New(reason)
			}
			account = acc
			return nil
		})
		if !initial {
			c, done, err := s.Next(nil)
			if len(c) != 0 || done || err != nil {
				t.Fatalf("without initial response: %q, %v, %v; want an empty challenge", c, done, err)
			}
		}
		if msg == nil {
			msg = []byte{} // nil would ask for a challenge again: not a response.
		}
		// An error ends the exchange whatever done says (go-smtp, go-imap).
		_, done, err := s.Next(msg)
		if !done && err == nil {
			t.Fatalf("exchange goes on after the response %q", msg)
		}
		wantAccount, want := plainOracle(msg)
		if got := err == nil; got != want || got && account != wantAccount {
			t.Fatalf("message %q: success %v as %q (err %v), oracle says %v as %q", msg, got, account, err, want, wantAccount)
		}
		if n := bytes.Count(msg, []byte{0}); n != 2 && checks != 0 {
			t.Fatalf("message with %d NULs reached the check", n)
		}
		if _, _, err := s.Next([]byte("\x00alice\x00secret")); err == nil || checks > 1 {
			t.Fatalf("response after the end: err %v, %d checks", err, checks)
		}
	})
}

// FuzzLogin runs the LOGIN exchange with fuzzed username and password
// responses. Invariants: the check is called once, with the two responses
// unchanged, only after both; success only for a known login with the right
// password; a further response is refused without a check.
func FuzzLogin(f *testing.F) {
	f.Add([]byte("alice"), []byte("secret"), true, []byte("more"))
	f.Add([]byte("alice@example.org"), []byte("secret"), false, []byte{})
	f.Add([]byte("mallory"), []byte("secret"), true, []byte("x"))
	f.Add([]byte("alice\x00"), []byte("secret\x00"), false, []byte("secret"))
	f.Add([]byte{}, []byte{}, true, []byte{})
	f.Fuzz(func(t *testing.T, user, pass []byte, initial bool, extra []byte) {
		var checked [][2]string
		var account string
		pw := &fakePasswords{}
		s := NewLoginServer(func(login, password string) error {
			checked = append(checked, [2]string{login, password})
			acc, reason, err := CheckPassword(context.Background(), fakeAccounts{}, pw, "", login, password)
			switch {
			case err != nil:
				return err
			case reason != "":
				return errors.New(reason)
			}
			account = acc
			return nil
		})
		// An empty username still is a response, not a request for a challenge.
		user = append([]byte{}, user...)
		if !initial {
			if c, done, err := s.Next(nil); string(c) != "Username:" || done || err != nil {
				t.Fatalf("first challenge %q, %v, %v", c, done, err)
			}
		}
		if c, done, err := s.Next(user); string(c) != "Password:" || done || err != nil {
			t.Fatalf("after username %q: %q, %v, %v", user, c, done, err)
		}
		if len(checked) != 0 {
			t.Fatalf("checked before the password")
		}
		_, done, err := s.Next(pass)
		if !done || len(checked) != 1 || checked[0] != [2]string{string(user), string(pass)} {
			t.Fatalf("after password: done %v, checked %q; want (%q, %q) once", done, checked, user, pass)
		}
		wantAccount, known := fakeAccounts{}.AccountByLogin(string(user))
		want := known && string(pass) == "secret"
		if got := err == nil; got != want || got && account != wantAccount {
			t.Fatalf("login %q password %q: success %v as %q (err %v), want %v as %q", user, pass, got, account, err, want, wantAccount)
		}
		if _, done, err := s.Next(extra); !done || err == nil || len(checked) != 1 {
			t.Fatalf("response after the end: done %v, err %v, %d checks", done, err, len(checked))
		}
	})
}
