package pluginhost

import (
	"errors"
	"fmt"

	"github.com/switchyard-mta/switchyard/sdk"
)

// ErrNoPolicy is returned by Checker for a name not in [policies].
var ErrNoPolicy = errors.New("pluginhost: no such policy check")

// PolicyInfo returns what the policy check [policies.name] asks for, its
// stages and body, as its plugin last described itself: known from Start
// on, also while the plugin is down. Nil for an unknown name.
func (m *Manager) PolicyInfo(name string) *sdk.PolicyInfo {
	p := m.policies[name]
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.desc == nil {
		return nil
	}
	return p.desc.Policy
}

// Checker returns the checker of the policy check [policies.name] on its
// plugin's process current now: after a restart, ask again. While the
// plugin is down it fails at once with ErrUnavailable.
func (m *Manager) Checker(name string) (sdk.Checker, error) {
	p := m.policies[name]
	if p == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoPolicy, name)
	}
	r := p.current()
	if r == nil || r.checker == nil {
		return nil, fmt.Errorf("%w: policy %s: plugin %s %s", ErrUnavailable, name, p.name, p.currentState())
	}
	return r.checker, nil
}
