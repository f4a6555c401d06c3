package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/switchyard-mta/switchyard/sdk"
)

// ErrNoMechanism is returned by Mechanism for a SASL name no plugin serves.
var ErrNoMechanism = errors.New("pluginhost: no plugin serves this mechanism")

// deriveTimeout caps one plugin's Derive: key stretching (SCRAM's PBKDF2)
// with a high iteration count takes seconds.
const deriveTimeout = time.Minute

// mapMechanisms maps every mechanism the started plugins described to its
// plugin. Two plugins serving one name is a configuration error: which one
// runs an exchange must not depend on start order.
func (m *Manager) mapMechanisms() []error {
	var errs []error
	for _, p := range m.procs {
		p.mu.Lock()
		desc := p.desc
		p.mu.Unlock()
		if desc == nil {
			continue
		}
		for _, name := range desc.Mechanisms {
			if other, dup := m.mechanisms[name]; dup {
				errs = append(errs, &ConfigError{Plugin: p.name, Key: "plugins." + p.name,
					Msg: fmt.Sprintf("serves mechanism %s, as does plugin %s; enable one of them", name, other.name)})
				continue
			}
			m.mechanisms[name] = p
			m.mechOrder = append(m.mechOrder, name)
		}
		if len(desc.Mechanisms) > 0 {
			m.mechProcs = append(m.mechProcs, p)
		}
	}
	return errs
}

// Mechanisms lists the SASL mechanisms the plugins described at Start, in
// plugin name order and each plugin's order. It is fixed at Start: a plugin
// that is down still serves its mechanisms, temporarily failing.
func (m *Manager) Mechanisms() []string {
	return append([]string(nil), m.mechOrder...)
}

// Mechanism returns the mechanism serving the SASL name. An unknown name is
// ErrNoMechanism; while its plugin is down it fails at once with
// ErrUnavailable. The returned value runs exchanges on the plugin process
// current now: after a restart, ask again.
func (m *Manager) Mechanism(name string) (sdk.Mechanism, error) {
	p := m.mechanisms[name]
	if p == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoMechanism, name)
	}
	r := p.current()
	if r == nil || r.mechanism == nil {
		return nil, fmt.Errorf("%w: mechanism %s: plugin %s %s", ErrUnavailable, name, p.name, p.currentState())
	}
	return &mechanism{plugin: p.name, impl: r.mechanism}, nil
}

var _ sdk.PreAuther = (*mechanism)(nil)

// mechanism adds the plugin's name and ErrUnavailable to the errors of
// Start and PreAuth; the exchange's errors are the plugin's connection's.
type mechanism struct {
	plugin string
	impl   sdk.Mechanism
}

func (mc *mechanism) Start(ctx context.Context, name string, conn sdk.ConnInfo) (sdk.Exchange, error) {
	ex, err := mc.impl.Start(ctx, name, conn)
	if err != nil {
		return nil, fmt.Errorf("%w: mechanism %s (plugin %s): %w", ErrUnavailable, name, mc.plugin, err)
	}
	return ex, nil
}

// PreAuth asks the plugin to authenticate from the connection alone
// (sdk.PreAuther); a mechanism that does not is a plain failure.
func (mc *mechanism) PreAuth(ctx context.Context, conn sdk.ConnInfo) (*sdk.AuthOutcome, error) {
	pa, ok := mc.impl.(sdk.PreAuther)
	if !ok {
		return &sdk.AuthOutcome{Reason: "mechanism does not pre-authenticate"}, nil
	}
	o, err := pa.PreAuth(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("%w: pre-authentication (plugin %s): %w", ErrUnavailable, mc.plugin, err)
	}
	return o, nil
}

// Derive asks every mechanism plugin for the secrets of account's new
// password (sdk.Deriver) and returns them merged, by secret name. All
// plugins must answer: a plugin that is down makes Derive fail with
// ErrUnavailable rather than leave its mechanisms without secrets, as the
// store replaces all secrets with a password. Two plugins deriving a secret
// of the same name is an error.
func (m *Manager) Derive(ctx context.Context, account, password string) (map[string][]byte, error) {
	all := map[string][]byte{}
	from := map[string]string{} // Secret name → plugin.
	for _, p := range m.mechProcs {
		r := p.current()
		if r == nil || r.mechanism == nil {
			return nil, fmt.Errorf("%w: deriving secrets: plugin %s %s", ErrUnavailable, p.name, p.currentState())
		}
		d, ok := r.mechanism.(sdk.Deriver)
		if !ok {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, deriveTimeout)
		secrets, err := d.Derive(dctx, account, password)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("plugin %s: deriving secrets of %s: %w", p.name, account, err)
		}
		for name := range secrets {
			if other, dup := from[name]; dup {
				return nil, fmt.Errorf("plugins %s and %s both derive secret %s", other, p.name, name)
			}
			from[name] = p.name
		}
		maps.Copy(all, secrets)
	}
	return all, nil
}
