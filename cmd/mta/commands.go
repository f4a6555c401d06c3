package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/switchyard-mta/switchyard/core/admin"
	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/ctl"
	"github.com/switchyard-mta/switchyard/core/pluginhost"
	"github.com/switchyard-mta/switchyard/core/server"
)

// loadConfig loads the configuration; its errors are input errors.
func loadConfig(c *cmdContext) (*config.Config, error) {
	cfg, err := config.Load(c.configPath)
	if err != nil {
		return nil, &ctl.UsageError{Msg: "invalid configuration:\n" + err.Error()}
	}
	return cfg, nil
}

func runServe(c *cmdContext) error {
	if len(c.args) > 0 {
		return usageErr("unexpected arguments %q", c.args)
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	log := serverLogger(cfg.Log, c.stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ignoreHangup(ctx, log)
	err = server.Run(ctx, cfg, log, c.stdout)
	var ce config.Errors
	if errors.As(err, &ce) {
		return &ctl.UsageError{Msg: "invalid configuration:\n" + ce.Error()}
	}
	return err
}

// serverLogger is the logger [log] configures, writing to w.
func serverLogger(lc config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(lc.Level)) // Checked by config.
	opts := &slog.HandlerOptions{Level: level}
	if lc.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// ignoreHangup logs and ignores SIGHUP until ctx ends: its default would
// end the server without a word, and reloading is not done yet.
func ignoreHangup(ctx context.Context, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Warn("SIGHUP ignored: reloading the configuration is not supported; restart to apply changes")
			}
		}
	}()
}

func runConfigCheck(c *cmdContext) error {
	if len(c.args) > 0 {
		return usageErr("unexpected arguments %q", c.args)
	}
	cfg, err := config.LoadChecked(c.configPath)
	if cfg == nil {
		return &ctl.UsageError{Msg: "invalid configuration:\n" + err.Error()}
	}
	// Every error in one run: the file's, the listeners', the plugins'.
	var errs config.Errors
	errors.As(err, &errs)
	if ctl.Running(filepath.Join(cfg.DataDir, ctl.SocketName)) {
		fmt.Fprintf(c.stdout, "listeners not checked: a server runs on this data directory and holds them\n")
	} else {
		errs = append(errs, server.CheckListeners(cfg)...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m, err := pluginhost.Start(ctx, pluginhost.Options{Config: cfg, Log: log, CheckOnly: true})
	if m != nil {
		m.Close()
	}
	if err != nil {
		errs = append(errs, pluginhost.ConfigErrors(cfg, err)...)
	} else if _, err := server.SASL(cfg, m); err != nil {
		// [auth] mechanisms must name what the plugins described.
		var ce config.Errors
		if !errors.As(err, &ce) {
			ce = config.Errors{{File: cfg.File, Msg: err.Error()}}
		}
		errs = append(errs, ce...)
	}
	if errs = errs.Sorted(); len(errs) > 0 {
		return &ctl.UsageError{Msg: "invalid configuration:\n" + errs.Error()}
	}
	fmt.Fprintf(c.stdout, "%s: ok\n", cfg.File)
	return nil
}

// runAdmin runs a data command in the running server, or directly on the
// data directory when no server runs.
func runAdmin(c *cmdContext) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	req := ctl.Request{Args: slices.Concat(strings.Fields(c.cmd.words), c.flags, c.args)}
	passwd := c.cmd.words == "account passwd"
	if passwd {
		if len(c.args) != 1 {
			return usageErr("usage: mta account passwd ACCOUNT")
		}
		if _, ok := cfg.Accounts[c.args[0]]; !ok {
			return usageErr("no account %q in %s", c.args[0], cfg.File)
		}
		if req.Stdin, err = readPassword(c); err != nil {
			return err
		}
	}
	err = callAdmin(c, cfg, req)
	var ue *ctl.UsageError
	if passwd && errors.As(err, &ue) && strings.HasPrefix(ue.Msg, "no account") {
		// In this file, not in the one the server loaded.
		return usageErr("account %q is in %s but not in the configuration the running server loaded: restart the server (mta serve) to add it", c.args[0], cfg.File)
	}
	if passwd && err == nil {
		fmt.Fprintf(c.stdout, "account %s: password set\n", c.args[0])
	}
	return err
}

// callAdmin runs req in the running server through its control socket,
// or on the data directory of cfg opened directly when no server runs.
func callAdmin(c *cmdContext, cfg *config.Config, req ctl.Request) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := ctl.Call(ctx, filepath.Join(cfg.DataDir, ctl.SocketName), req, c.stdout)
	if !errors.Is(err, ctl.ErrNotRunning) {
		return err
	}
	h, err := admin.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer h.Close()
	if c.cmd.words == "account passwd" {
		// The mechanism plugins derive their secrets from the password.
		log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if err := h.StartPlugins(ctx, log); err != nil {
			var ce config.Errors
			if errors.As(err, &ce) {
				return &ctl.UsageError{Msg: "invalid configuration:\n" + ce.Error()}
			}
			return err
		}
	}
	// Commands write in small pieces (a table cell at a time).
	out := bufio.NewWriterSize(c.stdout, 64<<10)
	err = h.Handle(ctx, req, out)
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	return err
}

// readPassword reads a new password: on a terminal it asks twice without
// echo, else it reads standard input (the first line counts).
func readPassword(c *cmdContext) ([]byte, error) {
	f, ok := c.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		pw, err := io.ReadAll(io.LimitReader(c.stdin, 4096))
		if err != nil {
			return nil, fmt.Errorf("reading password: %w", err)
		}
		return pw, nil
	}
	fmt.Fprintf(c.stderr, "New password for %s: ", c.args[0])
	pw, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(c.stderr)
	if err != nil {
		return nil, fmt.Errorf("reading password: %w", err)
	}
	fmt.Fprintf(c.stderr, "Again: ")
	again, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(c.stderr)
	if err != nil {
		return nil, fmt.Errorf("reading password: %w", err)
	}
	if string(pw) != string(again) {
		return nil, usageErr("the passwords differ; nothing changed")
	}
	return pw, nil
}
