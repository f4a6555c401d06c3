// Package transportdirect is transport-direct, a Switchyard transport plugin
// that delivers messages straight to the MX hosts of each recipient domain
// (RFC 5321 §5.1) with the engine of sdk/direct: DNSSEC-aware lookups, DANE
// (RFC 7672), MTA-STS (RFC 8461) with policies cached in the plugin's data
// directory, opportunistic STARTTLS otherwise (RFC 3207, RFC 7435), and
// REQUIRETLS (RFC 8689).
package transportdirect

import (
	"log/slog"

	"github.com/switchyard-mta/switchyard/sdk"
	"github.com/switchyard-mta/switchyard/sdk/direct"
)

// Main serves the plugin to the core that started it; it does not return.
func Main() {
	t := newTransport(sdk.NewLogger(slog.LevelInfo))
	sdk.Serve(&sdk.Plugin{Name: "transport-direct", Version: "0.1.0", Transport: t})
}

// newTransport is the plugin's transport: an engine per instance.
func newTransport(log *slog.Logger) *direct.Transport {
	return &direct.Transport{Name: "transport-direct", Log: log, Parse: parseConfig}
}

// parseConfig decodes and validates the instance table of c (the keys of
// direct.Options) into an engine configuration.
func parseConfig(c *sdk.Configuration, log *slog.Logger) (*direct.Config, error) {
	var o direct.Options
	if err := c.Decode(&o); err != nil {
		return nil, err
	}
	cfg, errs := o.Config(c, nil, log)
	if errs != nil {
		return nil, errs
	}
	return cfg, nil
}
