package config

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a configuration file.
type Error struct {
	File string // The file as given to Load.
	Line int    // 1-based; 0 if unknown.
	Key  string // TOML key path, e.g. "listeners[1].kind"; empty if none.
	Msg  string
}

// Error formats e as `mta.toml:12: listeners[1].kind: unknown kind "smpt"`.
func (e Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors are all the problems found in a configuration file, in file order.
type Errors []Error

// Error returns one error per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Sorted returns es in file order with one error per key, the first: the
// core and the plugin host may both find the same problem.
func (es Errors) Sorted() Errors {
	var out Errors
	seen := map[Error]bool{}
	for _, e := range es {
		k := e
		if k.Key != "" {
			k.Msg = ""
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b Error) int { return cmp.Compare(a.Line, b.Line) })
	return out
}

// Unwrap returns the errors, for errors.As.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// KeyError returns an error about key (a TOML key path as Line takes it) in
// c's file, with the line that defines the key or its nearest ancestor. The
// core uses it for errors that plugins report about their config tables.
func (c *Config) KeyError(key, msg string) Error {
	file := c.name
	if file == "" {
		file = c.File
	}
	return Error{File: file, Line: c.Line(key), Key: key, Msg: msg}
}
