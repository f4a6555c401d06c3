package server

import (
	"errors"
	"fmt"

	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/pluginhost"
	"github.com/switchyard-mta/switchyard/core/sasl"
)

// SASL returns the mechanisms the listeners offer, from [auth] mechanisms
// and what the started plugins serve. A mechanism no plugin serves is a
// config.Errors with the line of its entry; `mta config check` calls this
// too, with plugins started CheckOnly.
func SASL(cfg *config.Config, plugins *pluginhost.Manager) (*sasl.Server, error) {
	s, err := sasl.New(sasl.Options{Mechanisms: cfg.Auth.Mechanisms, Plugins: plugins})
	if err == nil {
		return s, nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var out config.Errors
	for _, e := range errs {
		var oe *sasl.OrderError
		if errors.As(e, &oe) {
			out = append(out, cfg.KeyError(fmt.Sprintf("auth.mechanisms[%d]", oe.Index), oe.Error()))
		} else {
			out = append(out, config.Error{File: cfg.File, Msg: e.Error()})
		}
	}
	return nil, out
}
