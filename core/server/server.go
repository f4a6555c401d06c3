// Package server wires the core together for `mta serve`: the credential
// store, the plugin host, the queue, the SMTP listeners and the control socket.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/switchyard-mta/switchyard/core/admin"
	"github.com/switchyard-mta/switchyard/core/authlimit"
	"github.com/switchyard-mta/switchyard/core/certs"
	"github.com/switchyard-mta/switchyard/core/config"
	"github.com/switchyard-mta/switchyard/core/connlimit"
	"github.com/switchyard-mta/switchyard/core/ctl"
	"github.com/switchyard-mta/switchyard/core/imapd"
	"github.com/switchyard-mta/switchyard/core/localdelivery"
	"github.com/switchyard-mta/switchyard/core/notify"
	"github.com/switchyard-mta/switchyard/core/pickup"
	"github.com/switchyard-mta/switchyard/core/pluginhost"
	"github.com/switchyard-mta/switchyard/core/policy"
	"github.com/switchyard-mta/switchyard/core/queue"
	"github.com/switchyard-mta/switchyard/core/route"
	"github.com/switchyard-mta/switchyard/core/smtpd"
	"github.com/switchyard-mta/switchyard/core/store"
)

// Run serves cfg until ctx is done, then shuts down gracefully: listeners
// stop accepting, deliveries in progress finish or are abandoned to be
// retried, plugins are stopped. What listens where is printed to out.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger, out io.Writer) (err error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()

	// Bind first: a listener that cannot bind stops the start before
	// anything else opens.
	bs, err := bind(cfg)
	if err != nil {
		return err
	}
	closers = append(closers, func() {
		for _, b := range bs {
			b.ln.Close()
		}
	})

	var tlsConfig *tls.Config
	if cfg.TLS.SelfSigned || cfg.TLS.Cert != "" {
		cert, generated, err := certs.Load(cfg.TLS.Cert, cfg.TLS.Key, cfg.TLS.SelfSigned, cfg.DataDir, cfg.Hostname)
		if err != nil {
			return err
		}
		if generated {
			certFile, _ := certs.SelfSignedPaths(cfg.DataDir)
			fmt.Fprintf(out, "generated a self-signed certificate for %s: %s\n", cfg.Hostname, certFile)
		}
		tlsConfig = certs.ServerConfig(cert)
	}

	st, err := store.Open(ctx, cfg.DataDir)
	if err != nil {
		return err
	}
	closers = append(closers, func() { st.Close() })
	accounts := map[string]store.AccountConfig{}
	for name, a := range cfg.Accounts {
		accounts[name] = store.AccountConfig{MaxStorage: int64(a.MaxStorage)}
	}
	if err := st.SetAccounts(ctx, accounts, log); err != nil {
		return err
	}
	loc := localdelivery.New(cfg, st)

	plugins, err := pluginhost.Start(ctx, pluginhost.Options{Config: cfg, Host: &host{cfg: cfg, store: st, log: log}, Log: log})
	if err != nil {
		return pluginhost.ConfigErrors(cfg, err)
	}
	closers = append(closers, plugins.Close)
	auth, err := SASL(cfg, plugins)
	if err != nil {
		return err
	}
	if err := initialPasswords(ctx, cfg, st, plugins, out); err != nil {
		return err
	}

	var q *queue.Queue
	dsns := &notify.Notifier{Hostname: cfg.Hostname, From: cfg.PostmasterAddress(), Queue: func() *queue.Queue { return q }, Log: log}
	q, err = queue.Open(ctx, filepath.Join(cfg.DataDir, "queue"), queue.Options{
		BackoffScale:      cfg.Queue.BackoffScale,
		MaxAttempts:       cfg.Queue.MaxAttempts,
		MaxParallel:       cfg.Queue.MaxParallel,
		MaxPerDestination: cfg.Queue.MaxPerDestination,
		KeepRetired:       cfg.RetiredFor,
		Log:               log,
		Router:            localdelivery.Router(cfg, route.FromConfig(cfg)),
		Deliverer:         loc.Deliverer(plugins),
		Notify: func(ctx context.Context, n queue.Notice) error {
			suppressFailed(ctx, st, cfg.Hostname, log, n)
			return dsns.Notify(ctx, n)
		},
	})
	if err != nil {
		return err
	}
	q.Start(ctx)
	closers = append(closers, func() { q.Close() })

	// A listener is an SMTP or an IMAP server.
	type listener interface {
		Serve(net.Listener) error
		Close() error
	}
	servers := make([]listener, len(bs))
	authLimit := authlimit.New()
	for i, b := range bs {
		l := *b.cfg
		tlsConfig := listenerTLS(l.Kind, tlsConfig)
		var err error
		switch l.Kind {
		case config.KindIMAP, config.KindIMAPS:
			servers[i], err = imapd.New(imapd.Config{
				Listener:        l,
				TLS:             tlsConfig,
				MaxMessageSize:  int64(cfg.Limits.MaxMessageSize),
				GreetingTimeout: time.Duration(cfg.Limits.GreetingTimeout),
				Log:             log,
				Accounts:        cfg,
				Auth:            st,
				AuthLimit:       authLimit,
				SASL:            auth,
				Store:           st,
			})
		default:
			var checks *policy.Chain
			if checks, err = policy.NewChain(cfg, l.Policies, plugins, log.With(slog.String("listener", l.Name))); err != nil {
				break
			}
			servers[i], err = smtpd.New(smtpd.Config{
				Hostname:        cfg.Hostname,
				Listener:        l,
				TLS:             tlsConfig,
				MaxMessageSize:  int64(cfg.Limits.MaxMessageSize),
				MaxRecipients:   cfg.Limits.MaxRecipients,
				ReadTimeout:     time.Duration(cfg.Limits.ReadTimeout),
				WriteTimeout:    time.Duration(cfg.Limits.WriteTimeout),
				GreetingTimeout: time.Duration(cfg.Limits.GreetingTimeout),
				Log:             log,
				Accounts:        cfg,
				Auth:            st,
				SASL:            auth,
				AuthLimit:       authLimit,
				Keys:            st,
				Suppressions:    st,
				Policies:        checks,
				FutureRelease:   cfg.Queue.FutureRelease(),
				Queue:           q,
				Local:           loc,
			})
		}
		if err != nil {
			return fmt.Errorf("listener %s: %w", l.Name, err)
		}
	}
	closers = append(closers, func() {
		for _, s := range servers {
			s.Close()
		}
	})
	gate := connlimit.NewGate(cfg.Limits.MaxConnections)
	serveErr := make(chan error, len(servers))
	for i, b := range bs {
		ln := limit(gate, b, cfg.Hostname, listenerTLS(b.cfg.Kind, tlsConfig), log)
		go func() {
			// Serve returns nil once closed; anything else ends the server.
			if err := servers[i].Serve(ln); err != nil {
				log.Error("listener failed", slog.String("listener", b.cfg.Name), slog.Any("err", err))
				serveErr <- err
			}
		}()
		fmt.Fprintf(out, "%-12s %-12s %s\n", b.cfg.Name, b.cfg.Kind, b.ln.Addr())
	}

	// Local submission (mta sendmail) for every local user: the data
	// directory may be entered, not listed; what is in it is the server's.
	if err := os.Chmod(cfg.DataDir, 0o711); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	ps, err := pickup.Listen(pickup.SocketPath(cfg.DataDir), pickup.Config{
		Hostname:       cfg.Hostname,
		MaxMessageSize: int64(cfg.Limits.MaxMessageSize),
		Queue:          q,
		AccountOf:      cfg.OwnerOfAddress,
		Log:            log,
	})
	if err != nil {
		return err
	}
	closers = append(closers, func() { ps.Close() })
	fmt.Fprintf(out, "%-12s %-12s %s\n", "pickup", "unix", pickup.SocketPath(cfg.DataDir))

	h := &admin.Handles{Config: cfg, Store: st, Queue: q, Plugins: plugins}
	cs, err := ctl.Listen(filepath.Join(cfg.DataDir, ctl.SocketName), h.Handle, log)
	if err != nil {
		return err
	}
	closers = append(closers, func() { cs.Close() })
	fmt.Fprintf(out, "%-12s %-12s %s\n", "control", "unix", filepath.Join(cfg.DataDir, ctl.SocketName))
	log.Info("serving", slog.String("hostname", cfg.Hostname), slog.String("config", cfg.File))

	select {
	case <-ctx.Done():
		log.Info("shutting down")
		return nil
	case err := <-serveErr:
		log.Error("shutting down after a listener failed")
		return err
	}
}

// initialPasswords gives every account without a password a random one,
// with the secrets the mechanism plugins derive, and prints it, once: the
// first start of a new configuration is usable at once.
func initialPasswords(ctx context.Context, cfg *config.Config, st *store.Store, plugins *pluginhost.Manager, out io.Writer) error {
	for name := range cfg.Accounts {
		has, err := st.HasPassword(ctx, name)
		if err != nil {
			return err
		}
		if has {
			continue
		}
		// Base32 letters and digits: no '-' to read as an option and
		// nothing a shell or URL quotes, when pasted into a client.
		pw := rand.Text()
		if err := admin.SetPassword(ctx, st, plugins, name, pw); err != nil {
			return err
		}
		fmt.Fprintf(out, "account %s: generated password %s (shown once; change it with: mta account passwd %s)\n", name, pw, name)
	}
	return nil
}
