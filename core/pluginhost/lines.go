package pluginhost

import (
	"errors"

	"github.com/switchyard-mta/switchyard/core/config"
)

// ConfigErrors turns what Start returned into configuration errors: each
// *ConfigError with the file and line of its key, any other error with the
// file only.
func ConfigErrors(cfg *config.Config, err error) config.Errors {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var out config.Errors
	for _, e := range errs {
		var ce *ConfigError
		if errors.As(e, &ce) {
			out = append(out, cfg.KeyError(ce.Key, ce.Msg))
		} else {
			out = append(out, config.Error{File: cfg.File, Msg: e.Error()})
		}
	}
	return out
}
