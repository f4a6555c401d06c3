package sasl

import (
	"context"
	"errors"
	"reflect"
	"testing"

	gosasl "github.com/emersion/go-sasl"
)

// fakeAccounts: alice (login "alice" or alice@example.org) and bob.
type fakeAccounts struct{}

func (fakeAccounts) AccountByLogin(login string) (string, bool) {
	switch login {
	case "alice", "alice@example.org":
		return "alice", true
	case "bob":
		return "bob", true
	}
	return "", false
}

// fakePasswords: every account's password is "secret"; "broken" fails to
// check. It records the accounts it was asked about.
type fakePasswords struct{ asked []string }

func (p *fakePasswords) CheckPassword(ctx context.Context, account, password string) (bool, error) {
	p.asked = append(p.asked, account)
	if password == "broken" {
		return false, errors.New("database gone")
	}
	return password == "secret", nil
}

func TestCheckPassword(t *testing.T) {
	tests := []struct {
		name                     string
		authzid, login, password string
		wantAccount, wantReason  string
		wantErr                  bool
		wantAsked                string // The account whose password was checked.
	}{
		{"by name", "", "alice", "secret", "alice", "", false, "alice"},
		{"by address", "", "alice@example.org", "secret", "alice", "", false, "alice"},
		{"wrong password", "", "alice", "guess", "", ReasonWrongPassword, false, "alice"},
		{"unknown login, still checked", "", "mallory", "secret", "", ReasonUnknownLogin, false, "mallory"},
		{"authzid of the same account", "alice@example.org", "alice", "secret", "alice", "", false, "alice"},
		{"authzid of another account", "bob", "alice", "secret", "", ReasonAuthzid, false, "alice"},
		{"authzid unknown", "nobody", "alice", "secret", "", ReasonAuthzid, false, "alice"},
		{"authzid with a wrong password", "bob", "alice", "guess", "", ReasonWrongPassword, false, "alice"},
		{"check fails", "", "alice", "broken", "", "", true, "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pw := &fakePasswords{}
			account, reason, err := CheckPassword(context.Background(), fakeAccounts{}, pw, tt.authzid, tt.login, tt.password)
			if account != tt.wantAccount || reason != tt.wantReason || (err != nil) != tt.wantErr {
				t.Errorf("got %q, %q, %v; want %q, %q, error %v", account, reason, err, tt.wantAccount, tt.wantReason, tt.wantErr)
			}
			if want := []string{tt.wantAsked}; !reflect.DeepEqual(pw.asked, want) {
				t.Errorf("checked %q, want %q", pw.asked, want)
			}
		})
	}
}

func TestLoginServer(t *testing.T) {
	errWrong := errors.New("wrong")
	type step struct {
		response      []byte
		wantChallenge string
		wantDone      bool
		wantErr       error
	}
	tests := []struct {
		name      string
		steps     []step
		wantCheck []string // login, password given to check.
	}{
		{"challenges", []step{
			{nil, "Username:", false, nil},
			{[]byte("alice"), "Password:", false, nil},
			{[]byte("secret"), "", true, nil},
		}, []string{"alice", "secret"}},
		{"initial response", []step{
			{[]byte("alice"), "Password:", false, nil},
			{[]byte("secret"), "", true, nil},
		}, []string{"alice", "secret"}},
		{"check's error", []step{
			{[]byte("bob"), "Password:", false, nil},
			{[]byte("guess"), "", true, errWrong},
		}, []string{"bob", "guess"}},
		{"response after the end", []step{
			{[]byte("alice"), "Password:", false, nil},
			{[]byte("secret"), "", true, nil},
			{[]byte("more"), "", true, gosasl.ErrUnexpectedClientResponse},
		}, []string{"alice", "secret"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var checked []string
			s := NewLoginServer(func(login, password string) error {
				checked = append(checked, login, password)
				if password != "secret" {
					return errWrong
				}
				return nil
			})
			for i, st := range tt.steps {
				c, done, err := s.Next(st.response)
				if string(c) != st.wantChallenge || done != st.wantDone || !errors.Is(err, st.wantErr) {
					t.Fatalf("step %d: %q, %v, %v; want %q, %v, %v", i, c, done, err, st.wantChallenge, st.wantDone, st.wantErr)
				}
			}
			if !reflect.DeepEqual(checked, tt.wantCheck) {
				t.Errorf("checked %q, want %q", checked, tt.wantCheck)
			}
		})
	}
}
