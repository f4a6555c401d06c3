package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdg-go/scram"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/sdk"
)

// scramConfig has the auth-scram plugin as "scram" beside the echo plugin.
func scramConfig(t *testing.T) *config.Config {
	cfg := testConfig(t, nil)
	cfg.Plugins["scram"] = &config.Plugin{Path: scramPath}
	return cfg
}

// scramLogin runs a SCRAM-SHA-256 exchange through m as user with password.
func scramLogin(ctx context.Context, m *Manager, user, password string) (*sdk.AuthOutcome, error) {
	mech, err := m.Mechanism("SCRAM-SHA-256")
	if err != nil {
		return nil, err
	}
	ex, err := mech.Start(ctx, "SCRAM-SHA-256", sdk.ConnInfo{Protocol: "smtp"})
	if err != nil {
		return nil, err
	}
	client, err := scram.SHA256.NewClient(user, password, "")
	if err != nil {
		return nil, err
	}
	conv := client.NewConversation()
	msg, err := conv.Step("")
	if err != nil {
		return nil, err
	}
	for {
		c, o, err := ex.Next(ctx, []byte(msg))
		if err != nil || o != nil {
			if o != nil && o.Success {
				if _, err := conv.Step(string(o.FinalData)); err != nil || !conv.Valid() {
					return nil, fmt.Errorf("server-final-message %q: %v", o.FinalData, err)
				}
			}
			return o, err
		}
		if msg, err = conv.Step(string(c)); err != nil {
			return nil, err
		}
	}
}

// Mechanisms are found by name, secrets derived by the real auth-scram,
// an exchange runs against them through the Host.
func TestMechanism(t *testing.T) {
	t.Parallel()
	host := testHost()
	m := start(t, Options{Config: scramConfig(t), Host: host, Log: slog.New(slog.DiscardHandler)})

	want := []string{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"}
	if got := m.Mechanisms(); !reflect.DeepEqual(got, want) {
		t.Errorf("mechanisms %q, want %q", got, want)
	}
	if _, err := m.Mechanism("CRAM-MD5"); !errors.Is(err, ErrNoMechanism) {
		t.Errorf("unserved mechanism: %v, want ErrNoMechanism", err)
	}

	secrets, err := m.Derive(t.Context(), "alice", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets) != 2 || !strings.HasPrefix(string(secrets["SCRAM-SHA-256"]), "SCRAM-SHA-256$4096:") || !strings.HasPrefix(string(secrets["SCRAM-SHA-1"]), "SCRAM-SHA-1$4096:") {
		t.Fatalf("derived %q", secrets)
	}
	host.SetSecret("alice@example.org", "SCRAM-SHA-256", sdk.Credential{Account: "alice", Login: "alice@example.org", Secret: secrets["SCRAM-SHA-256"]})

	for _, tc := range []struct {
		password string
		success  bool
	}{{"correct horse", true}, {"wrong horse", false}} {
		o, err := scramLogin(t.Context(), m, "alice@example.org", tc.password)
		if err != nil {
			t.Fatalf("%s: %v", tc.password, err)
		}
		if o.Success != tc.success || tc.success && (o.Account != "alice" || o.Login != "alice@example.org") || o.Temporary {
			t.Errorf("%s: outcome %+v", tc.password, o)
		}
	}
}

// While the plugin is down, Mechanism and Derive fail at once with
// ErrUnavailable; after the restart they work again.
func TestMechanismRestart(t *testing.T) {
	t.Parallel()
	host := testHost()
	m := start(t, Options{Config: scramConfig(t), Host: host, Log: slog.New(slog.DiscardHandler)})
	var sp Status
	for _, s := range m.Status() {
		if s.Name == "scram" {
			sp = s
		}
	}
	if err := syscall.Kill(sp.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var down bool
	deadline := time.Now().Add(3 * time.Second)
	for !down && time.Now().Before(deadline) {
		t0 := time.Now()
		_, err := m.Mechanism("SCRAM-SHA-1")
		if d := time.Since(t0); d > 100*time.Millisecond {
			t.Fatalf("Mechanism while down took %v", d)
		}
		down = errors.Is(err, ErrUnavailable)
		time.Sleep(10 * time.Millisecond)
	}
	if !down {
		t.Fatal("mechanism never unavailable")
	}
	if _, err := m.Derive(t.Context(), "alice", "pw"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Derive while down: %v, want ErrUnavailable", err)
	}

	deadline = time.Now().Add(5 * time.Second)
	for {
		secrets, err := m.Derive(t.Context(), "alice", "after restart")
		if err == nil {
			host.SetSecret("alice", "SCRAM-SHA-256", sdk.Credential{Account: "alice", Secret: secrets["SCRAM-SHA-256"]})
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if o, err := scramLogin(t.Context(), m, "alice", "after restart"); err != nil || !o.Success {
		t.Errorf("login after restart: %+v, %v", o, err)
	}
}

// Two plugins serving one mechanism is a configuration error.
func TestMechanismConflict(t *testing.T) {
	cfg := scramConfig(t)
	cfg.Plugins["scram2"] = &config.Plugin{Path: scramPath}
	m, err := Start(t.Context(), Options{Config: cfg, CheckOnly: true, Log: slog.New(slog.DiscardHandler)})
	if err == nil {
		m.Close()
		t.Fatal("started")
	}
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Key != "plugins.scram2" || !strings.Contains(ce.Msg, "serves mechanism SCRAM-SHA-256-PLUS, as does plugin scram") {
		t.Errorf("error %v", err)
	}
}

// In check mode, the mechanisms are known after the processes stopped:
// `mta config check` checks [auth] mechanisms against them.
func TestMechanismCheckOnly(t *testing.T) {
	m := start(t, Options{Config: scramConfig(t), CheckOnly: true, Log: slog.New(slog.DiscardHandler)})
	if len(m.Mechanisms()) != 4 {
		t.Errorf("mechanisms %q", m.Mechanisms())
	}
	if _, err := m.Mechanism("SCRAM-SHA-1"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("mechanism in check mode: %v", err)
	}
}
