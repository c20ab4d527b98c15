// Package wiring wires the hub together: store, catalogue, operators, ledger
// writer, card service and HTTP API. The citycard command and the HTTP-level
// tests start the hub through it, so both run exactly the same assembly.
package wiring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/citycard/citycard/hub/internal/api"
	"github.com/citycard/citycard/hub/internal/bus"
	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/catalog"
	"github.com/citycard/citycard/hub/internal/checkpoint"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/operators"
	"github.com/citycard/citycard/hub/internal/pluginhost"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/drivers"
	"github.com/citycard/citycard/hub/internal/transit"
	"github.com/citycard/citycard/sdk"
)

// Defaults of `citycard serve`.
const (
	DefaultDB     = "sqlite://./citycard-data/citycard.db"
	DefaultListen = "127.0.0.1:8080"
)

// DefaultHoldSweep is how often expired holds are released.
const DefaultHoldSweep = 30 * time.Second

// ShutdownTimeout caps how long Serve waits for in-flight requests.
const ShutdownTimeout = 30 * time.Second

// Config is what the hub starts with.
type Config struct {
	// DB is the store DSN: sqlite://PATH or postgres://… (default DefaultDB).
	DB string
	// Listen is the address the command listens on; Serve takes a listener
	// and does not read it.
	Listen string
	// AdminToken, if set, ensures an admin operator holding it.
	AdminToken string
	Logger     *slog.Logger
	Ledger     ledger.Config
	Cards      cards.Options
	// HoldSweep is the period of the hold-expiry sweeper (default
	// DefaultHoldSweep).
	HoldSweep time.Duration

	// Plugins are launched, configured and supervised by the hub; their
	// messages travel through the router. None by default.
	Plugins []pluginhost.Spec
	// Bus selects the router's backend: "" or "gochannel" (in process),
	// "nats://…" or "postgres://…" (see ParseBus).
	Bus string
	// Router tunes the router (retries, timeouts, dead-letter store);
	// zero fields take the hub's defaults.
	Router bus.Config
	// PluginHost tunes the plugin host (health checks, backoff); its
	// Logger, Hub and Registerer are set by the hub.
	PluginHost pluginhost.Options
	// DenyPush is how often the hub looks for a new transit deny-list
	// version to announce to plugins (default DefaultDenyPush).
	DenyPush time.Duration
	// SagaStaleAfter is how long a payment with legs beyond the ledger (a
	// linked bank card's, an insurer's) may go without progress before the
	// hub takes it as abandoned by a stopped node and finishes or undoes it
	// (default DefaultSagaStaleAfter).
	SagaStaleAfter time.Duration
	// BankPlugin is the plugin that authorises bank cards (default: the
	// plugin named "unionpay", if there is one).
	BankPlugin string
	// BankTimeout bounds each call to the bank plugin (default 30s).
	BankTimeout time.Duration
	// Checkpoints: when its Log is set, a hub started by Open signs
	// checkpoints of the ledger's head into that log while it serves and
	// at shutdown (see package checkpoint).
	Checkpoints checkpoint.Config
}

// Hub is a running hub: its store is open and its ledger writer started.
type Hub struct {
	cfg     Config
	log     *slog.Logger
	st      store.Store
	eng     *ledger.Engine
	svc     *cards.Service
	handler http.Handler
	// ownStore: Close closes the store (Open opened it; New's caller did).
	ownStore bool
	// unlock releases the store's writer lock Open took; ckpt writes the
	// checkpoints (nil when off).
	unlock func() error
	ckpt   *checkpoint.Writer
	// plugins is nil when the hub runs none.
	plugins *plugins
	transit *transit.Service

	closeOnce sync.Once
	closeErr  error
}

// Open opens the store (creating and migrating it on first use), ensures
// the admin operator, starts the ledger writer and builds the API.
func Open(ctx context.Context, cfg Config) (*Hub, error) {
	if cfg.DB == "" {
		cfg.DB = DefaultDB
	}
	st, err := drivers.Open(ctx, cfg.DB)
	if err != nil {
		return nil, fmt.Errorf("hub: open store: %w", err)
	}
	// One writer per store: a second hub, or a verify, must not run beside
	// this one unknowingly.
	unlock, err := st.LockWriter(ctx)
	if err != nil {
		st.Close()
		if errors.Is(err, store.ErrLocked) {
			return nil, fmt.Errorf("hub: another hub is serving this store (it holds the writer lock): %w", err)
		}
		return nil, fmt.Errorf("hub: %w", err)
	}
	var ckpt *checkpoint.Writer
	if cfg.Checkpoints.Log != "" {
		if cfg.Checkpoints.Logger == nil {
			cfg.Checkpoints.Logger = cfg.Logger
		}
		if ckpt, err = checkpoint.NewWriter(st, cfg.Checkpoints); err != nil {
			return nil, errors.Join(err, st.Close(), unlock())
		}
		prev := cfg.Ledger.Observe
		cfg.Ledger.Observe = func(size int, d time.Duration, err error) {
			if err == nil {
				ckpt.Committed()
			}
			if prev != nil {
				prev(size, d, err)
			}
		}
	}
	a, err := New(ctx, st, cfg)
	if err != nil {
		return nil, errors.Join(err, st.Close(), unlock())
	}
	a.ownStore, a.unlock, a.ckpt = true, unlock, ckpt
	if ckpt != nil {
		if err := a.startCheckpoints(ctx); err != nil {
			return nil, errors.Join(err, a.Close())
		}
	}
	return a, nil
}

// startCheckpoints anchors the head the hub starts from, and warns when the
// store is behind its own checkpoint log (restored from an older copy?).
func (a *Hub) startCheckpoints(ctx context.Context) error {
	h, err := a.st.Head(ctx)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if last := a.ckpt.LastLogged(); h.LastBatch < last {
		a.log.Warn("hub: the store is behind its checkpoint log: restored from an older copy, or its tail deleted? run citycard ledger verify",
			"store_batch", h.LastBatch, "checkpoint_batch", last)
	}
	if _, err := a.ckpt.Write(ctx); err != nil {
		return fmt.Errorf("hub: first checkpoint: %w", err)
	}
	return nil
}

// New assembles the hub on a store that is already open. The caller keeps
// the store: Close stops the ledger writer but leaves the store open.
func New(ctx context.Context, st store.Store, cfg Config) (*Hub, error) {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HoldSweep <= 0 {
		cfg.HoldSweep = DefaultHoldSweep
	}
	cat, err := catalog.Default()
	if err != nil {
		return nil, fmt.Errorf("hub: catalogue: %w", err)
	}
	if cfg.AdminToken != "" {
		if err := operators.EnsureAdmin(ctx, st, cfg.AdminToken); err != nil {
			return nil, fmt.Errorf("hub: admin operator: %w", err)
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := api.NewMetrics(reg)
	lcfg := cfg.Ledger
	if lcfg.Logger == nil {
		lcfg.Logger = cfg.Logger
	}
	if err := outboxOnStore(st, &cfg, &lcfg); err != nil {
		return nil, err
	}
	if prev := lcfg.Observe; prev != nil {
		lcfg.Observe = func(size int, d time.Duration, err error) {
			metrics.Observe(size, d, err)
			prev(size, d, err)
		}
	} else {
		lcfg.Observe = metrics.Observe
	}
	eng, err := ledger.Open(ctx, st, lcfg)
	if err != nil {
		return nil, fmt.Errorf("hub: start ledger: %w", err)
	}
	svc := cards.New(eng, cat, cfg.Cards)
	tr, err := transit.New(eng, cat, transit.Options{Logger: cfg.Logger, Now: cfg.Ledger.Now,
		IssuerPrefix: cfg.Cards.IssuerPrefix})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("hub: %w", err), eng.Close())
	}
	a := &Hub{cfg: cfg, log: cfg.Logger, st: st, eng: eng, svc: svc, transit: tr}
	var pl api.Plugins
	if len(cfg.Plugins) > 0 {
		if err := a.startPlugins(ctx, reg); err != nil {
			return nil, errors.Join(err, eng.Close())
		}
		pl = a.plugins
	}
	a.handler = api.New(api.Options{Store: st, Service: svc, Logger: cfg.Logger, Metrics: metrics, Plugins: pl, Transit: tr,
		Ready: eng.Ready})
	return a, nil
}

// Handler is the hub's HTTP handler.
func (a *Hub) Handler() http.Handler { return a.handler }

// Store is the hub's store.
func (a *Hub) Store() store.Store { return a.st }

// Service is the card service.
func (a *Hub) Service() *cards.Service { return a.svc }

// Transit is the transit service.
func (a *Hub) Transit() *transit.Service { return a.transit }

// Send hands m to the named plugin through the router, as the hub's
// services do, and returns the plugin's replies.
func (a *Hub) Send(ctx context.Context, plugin string, m sdk.Message) ([]sdk.Message, error) {
	if a.plugins == nil {
		return nil, fault.E(fault.NotFound, "plugin", "this hub runs no plugins")
	}
	return a.plugins.Send(ctx, plugin, m)
}

// Plugins lists the hub's plugins; nil when it runs none.
func (a *Hub) Plugins() []api.PluginView {
	if a.plugins == nil {
		return nil
	}
	return a.plugins.Status()
}

// Serve serves the API on ln until ctx is done, and runs the hold-expiry
// sweeper meanwhile. Then it shuts down in order: it stops accepting
// connections and waits (at most ShutdownTimeout) for requests in flight,
// so every acknowledged write has been answered; stops the sweeper; then
// closes the ledger writer, which commits what it has queued, and the
// store (as Close does). It returns nil after a shutdown asked for by ctx.
func (a *Hub) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	sweepCtx, stopSweep := context.WithCancel(context.WithoutCancel(ctx))
	var sweeping sync.WaitGroup
	sweeping.Go(func() { a.sweep(sweepCtx) })
	if a.ckpt != nil {
		sweeping.Go(func() { a.ckpt.Run(sweepCtx) })
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	var err error
	select {
	case err = <-served:
		// The listener failed on its own.
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
		if serr := srv.Shutdown(sctx); serr != nil {
			a.log.Warn("hub: requests still in flight at the shutdown deadline", "err", serr)
			srv.Close()
		}
		cancel()
		err = <-served
	}
	stopSweep()
	sweeping.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	if cerr := a.Close(); err == nil {
		err = cerr
	}
	return err
}

// sweep expires overdue holds every HoldSweep until ctx ends.
func (a *Hub) sweep(ctx context.Context) {
	t := time.NewTicker(a.cfg.HoldSweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := a.svc.ExpireHolds(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				a.log.Error("hub: hold sweep failed", "expired", n, "err", err)
			case n > 0:
				a.log.Info("hub: holds expired", "count", n)
			}
		}
	}
}

// Close stops the plugins and the router, then the ledger writer
// (committing what it has queued), and closes the store if Open opened it. It is safe to call more than once.
func (a *Hub) Close() error {
	a.closeOnce.Do(func() {
		// Refusals counted in memory reach the audit log while the store is open.
		if f, ok := a.handler.(interface{ FlushAudit(context.Context) error }); ok {
			_ = f.FlushAudit(context.Background()) // a failure is logged by the API
		}
		if a.plugins != nil {
			a.closeErr = a.plugins.close(context.Background())
		}
		a.closeErr = errors.Join(a.closeErr, a.eng.Close())
		if a.ckpt != nil {
			// After the writer: the last checkpoint names the final head.
			a.closeErr = errors.Join(a.closeErr, a.ckpt.Close(context.Background()))
		}
		if a.ownStore {
			a.closeErr = errors.Join(a.closeErr, a.st.Close())
		}
		if a.unlock != nil {
			a.closeErr = errors.Join(a.closeErr, a.unlock())
		}
	})
	return a.closeErr
}
