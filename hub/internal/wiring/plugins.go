package wiring

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/citycard/citycard/hub/internal/api"
	"github.com/citycard/citycard/hub/internal/bus"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/gateway"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/payments"
	"github.com/citycard/citycard/hub/internal/pluginhost"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
)

// Router defaults for the hub: a plugin that crashed is back within about a
// second (the host's first restart backoff plus its launch), so a message
// for it is retried for longer than that before it becomes a dead letter.
const (
	routerMaxRetries   = 6
	routerRetryInitial = 100 * time.Millisecond
	routerRetryMax     = 2 * time.Second
	routerHandlerLimit = 15 * time.Second
)

// plugins is the hub's plugin host, message router and gateway.
type plugins struct {
	log      *slog.Logger
	router   *bus.Router
	gw       *gateway.Gateway
	pay      *payments.Processor
	host     *pluginhost.Host
	channels map[string]string
	pgPool   *pgxpool.Pool // the router's own pool, for a postgres:// bus

	stopPush     context.CancelFunc
	stopRecovery context.CancelFunc
	pushing      sync.WaitGroup
}

// BusStore is the --bus value that puts the router in the hub's own
// PostgreSQL store, where the ledger writes the messages it emits in its
// own transactions (the outbox).
const BusStore = "postgres"

// ParseBus turns the --bus flag into the router's backend: "" or
// "gochannel" (in process), "nats://…" (NATS JetStream, for several hub
// nodes), "postgres" (watermill-sql in the hub's own PostgreSQL store, with
// the ledger's outbox) or "postgres://…" (watermill-sql in another
// PostgreSQL database). The URL is returned for the two servers.
func ParseBus(s string) (backend, url string, err error) {
	switch {
	case s == "" || s == bus.BackendGoChannel:
		return bus.BackendGoChannel, "", nil
	case s == BusStore:
		return bus.BackendPostgres, "", nil
	case strings.HasPrefix(s, "nats://") || strings.HasPrefix(s, "tls://"):
		return bus.BackendNATS, s, nil
	case strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://"):
		return bus.BackendPostgres, s, nil
	}
	return "", "", fmt.Errorf("bus %q: want gochannel, nats://HOST:PORT, postgres (the store's own database) or postgres://…", s)
}

// outboxOnStore sets up the ledger's outbox when the router lives in the
// hub's own store: the router shares the store's database, and every ledger
// batch writes its transfer events in its own transaction. Only a store
// that shares its database (store.SharedDatabase) can hold the router.
func outboxOnStore(st store.Store, cfg *Config, lcfg *ledger.Config) error {
	backend, url, err := ParseBus(cfg.Bus)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if backend != bus.BackendPostgres || url != "" || cfg.Router.PostgresPool != nil {
		return nil
	}
	db, ok := st.(store.SharedDatabase)
	if !ok {
		return fmt.Errorf("hub: bus %q keeps the router in the store's PostgreSQL database, but the store is %s", BusStore, st.Driver())
	}
	cfg.Router.Backend = bus.BackendPostgres
	cfg.Router.PostgresPool = db.Pool()
	lcfg.TransferEvents = true
	db.SetOutbox(bus.OutboxStatements)
	return nil
}

// startPlugins builds the router and gateway, launches and configures the
// plugins, registers the handlers of every plugin's topics and starts the
// router. On failure everything started is stopped again.
func (a *Hub) startPlugins(ctx context.Context, reg prometheus.Registerer) (err error) {
	cfg := a.cfg
	rc := cfg.Router
	backend, url, err := ParseBus(cfg.Bus)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if rc.Backend == "" {
		rc.Backend = backend
	}
	if rc.Backend == bus.BackendNATS && rc.NATSURL == "" {
		rc.NATSURL = url
	}
	if rc.Logger == nil {
		rc.Logger = a.log
	}
	if rc.MaxRetries == 0 {
		rc.MaxRetries = routerMaxRetries
	}
	if rc.RetryInitialInterval == 0 {
		rc.RetryInitialInterval = routerRetryInitial
	}
	if rc.RetryMaxInterval == 0 {
		rc.RetryMaxInterval = routerRetryMax
	}
	if rc.HandlerTimeout == 0 {
		rc.HandlerTimeout = routerHandlerLimit
	}
	if rc.DeadLetters == nil {
		// Kept with the ledger, so they outlive a restart and every hub
		// node on one PostgreSQL database lists the same letters.
		// A bank card's number or a PIN block in a dead message is masked
		// before it rests there; the city's own card numbers stay whole,
		// so their letters can be replayed.
		prefix := a.svc.IssuerPrefix()
		rc.DeadLetters = bus.NewStoreDeadLetters(a.st).Redacting(func(b []byte) []byte {
			return cardcrypto.RedactJSON(b, func(n string) bool { return strings.HasPrefix(n, prefix) })
		})
	}
	p := &plugins{log: a.log, channels: map[string]string{}}
	defer func() {
		if err != nil {
			_ = p.close(context.WithoutCancel(ctx))
		}
	}()
	if rc.Backend == bus.BackendPostgres && rc.PostgresPool == nil {
		pool, perr := pgxpool.New(ctx, url)
		if perr != nil {
			return fmt.Errorf("hub: bus: %w", perr)
		}
		p.pgPool, rc.PostgresPool = pool, pool
	}
	if p.router, err = bus.New(ctx, rc); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	for _, s := range cfg.Plugins {
		if s.Channel != "" {
			p.channels[s.Name] = s.Channel
		}
	}
	bank := cfg.BankPlugin
	if bank == "" {
		for _, s := range cfg.Plugins {
			if s.Name == "unionpay" {
				bank = s.Name
			}
		}
	}
	p.pay = payments.New(payments.Options{Service: a.svc, Logger: a.log, Channels: p.channels,
		IssuerPrefix: a.svc.IssuerPrefix(), BankPlugin: bank, Sagas: a.st, BankTimeout: cfg.BankTimeout})
	p.gw = gateway.New(gateway.Options{Router: p.router, Service: a.svc, Logger: a.log, Registerer: reg,
		Transit: a.transit, Payments: p.pay})
	p.pay.SetPlugins(p.gw)
	for _, s := range cfg.Plugins {
		if err := p.gw.HandleSubmissions(s.Name); err != nil {
			return fmt.Errorf("hub: plugin %s: %w", s.Name, err)
		}
	}
	ho := cfg.PluginHost
	if ho.Logger == nil {
		ho.Logger = a.log
	}
	ho.Hub = p.gw.For
	ho.Registerer = reg
	prev := ho.OnCrash
	ho.OnCrash = func(plugin string, inFlight []sdk.Message) {
		p.crashed(plugin, inFlight)
		if prev != nil {
			prev(plugin, inFlight)
		}
	}
	p.host = pluginhost.New(ho)
	if err := p.host.Start(ctx, cfg.Plugins...); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	p.gw.SetPlugins(p.host)
	for _, s := range cfg.Plugins {
		d, _ := p.host.Describe(s.Name)
		if err := p.gw.HandleDeliveries(s.Name, d); err != nil {
			return fmt.Errorf("hub: plugin %s: %w", s.Name, err)
		}
	}
	if err := p.router.Start(ctx); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	p.startDenyPush(a.st, cfg.DenyPush)
	p.startSagaRecovery(cfg.SagaStaleAfter)
	a.plugins = p
	return nil
}

// TypeDenylistChanged is the message the hub sends plugins that handle it
// when the transit deny list moves to a new version.
const TypeDenylistChanged = "transit.denylist.changed.v1"

// DefaultDenyPush is how often the hub looks for a new deny-list version to
// announce.
const DefaultDenyPush = time.Second

// startDenyPush announces each new deny-list version to the plugins that
// handle TypeDenylistChanged, so that validators hear of a lost card within
// seconds rather than at the plugin's next poll.
func (p *plugins) startDenyPush(st store.Store, every time.Duration) {
	var targets []string
	for _, s := range p.host.Status() {
		if d, ok := p.host.Describe(s.Name); ok {
			for _, mt := range d.Handles {
				if mt.Type == TypeDenylistChanged {
					targets = append(targets, s.Name)
				}
			}
		}
	}
	if len(targets) == 0 {
		return
	}
	if every <= 0 {
		every = DefaultDenyPush
	}
	ctx, cancel := context.WithCancel(context.Background())
	// The plugins loaded the version of now when they were configured.
	var last int64
	if h, err := st.Head(ctx); err == nil {
		last = h.DenyVersion
	}
	p.stopPush = cancel
	p.pushing.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			h, err := st.Head(ctx)
			if err != nil {
				continue
			}
			if h.DenyVersion == last {
				continue
			}
			last = h.DenyVersion
			body, _ := json.Marshal(map[string]int64{"version": last})
			for _, name := range targets {
				sctx, done := context.WithTimeout(ctx, 10*time.Second)
				_, err := p.gw.Send(sctx, name, sdk.Message{Type: TypeDenylistChanged, Payload: body,
					IdempotencyKey: fmt.Sprintf("denylist-%d", last)})
				done()
				if err != nil && ctx.Err() == nil {
					p.log.Warn("hub: cannot announce the deny list's new version; the plugin will find it at its next poll",
						"plugin", name, "version", last, "err", err)
				}
			}
		}
	})
}

// DefaultSagaStaleAfter is how long a saga may go without progress before
// the hub's recovery finishes or undoes it: longer than a leg may take
// while its request still waits (a bank call, 30 s; an insurer's
// settlement with its correction and retry), so that a live payment is
// never taken over.
const DefaultSagaStaleAfter = 2 * time.Minute

// startSagaRecovery closes the sagas a stopped hub left open: at start,
// then every few seconds, for those not written for staleAfter. A saga
// still being carried on by a request is written at each leg, and a
// recovery that takes one over does so over the version it read.
func (p *plugins) startSagaRecovery(staleAfter time.Duration) {
	if staleAfter <= 0 {
		staleAfter = DefaultSagaStaleAfter
	}
	every := min(staleAfter/3, 5*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	p.stopRecovery = cancel
	p.pushing.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if n, err := p.pay.RecoverSagas(ctx, staleAfter); n > 0 || (err != nil && ctx.Err() == nil) {
				p.log.Info("hub: sagas recovered", "closed", n, "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
}

// crashed logs what was in flight to a plugin that died. Nothing is lost
// with it: a message the hub sent is retried by the router once the plugin
// is back (plugins apply an idempotency key once, which the conformance kit
// checks), and what the plugin submitted is either committed in the ledger
// or was never applied; the plugin resends it with the same key.
func (p *plugins) crashed(plugin string, inFlight []sdk.Message) {
	ids := make([]string, len(inFlight))
	for i, m := range inFlight {
		ids[i] = m.ID
	}
	p.log.Warn("hub: plugin crashed with messages in flight; they are retried when it is back",
		"plugin", plugin, "in_flight", len(inFlight), "messages", ids)
}

// close stops the plugins (which finish what they are doing, their last
// submissions still routed), then the router.
func (p *plugins) close(ctx context.Context) error {
	if p.stopPush != nil {
		p.stopPush()
	}
	if p.stopRecovery != nil {
		p.stopRecovery()
	}
	p.pushing.Wait()
	if p.pay != nil {
		p.pay.Close()
	}
	var errs []error
	if p.host != nil {
		sctx, cancel := context.WithTimeout(ctx, ShutdownTimeout)
		errs = append(errs, p.host.Stop(sctx))
		cancel()
	}
	if p.router != nil {
		errs = append(errs, p.router.Close())
	}
	if p.pgPool != nil {
		p.pgPool.Close()
	}
	return errors.Join(errs...)
}

// Tokenize implements api.Plugins.
func (p *plugins) Tokenize(ctx context.Context, pan, expiry string) (api.BankToken, error) {
	t, err := p.pay.Tokenize(ctx, pan, expiry)
	return api.BankToken(t), err
}

// ReconcileMedical implements api.Plugins.
func (p *plugins) ReconcileMedical(ctx context.Context, plugin, date string) (json.RawMessage, error) {
	r, err := p.pay.ReconcileMedical(ctx, plugin, date)
	if err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

// Status implements api.Plugins.
func (p *plugins) Status() []api.PluginView {
	st := p.host.Status()
	out := make([]api.PluginView, 0, len(st))
	for _, s := range st {
		v := api.PluginView{Name: s.Name, State: string(s.State), PID: s.PID, Restarts: s.Restarts,
			LastError: s.LastError, Since: s.Since, Channel: p.channels[s.Name], Handles: []string{}, Sends: []string{}}
		if d, ok := p.host.Describe(s.Name); ok {
			v.Version = d.Version
			for _, mt := range d.Handles {
				v.Handles = append(v.Handles, mt.Type)
			}
			for _, mt := range d.Sends {
				v.Sends = append(v.Sends, mt.Type)
			}
		}
		out = append(out, v)
	}
	return out
}

// Send implements api.Plugins.
func (p *plugins) Send(ctx context.Context, plugin string, m sdk.Message) ([]sdk.Message, error) {
	return p.gw.Send(ctx, plugin, m)
}

// DeadLetters implements api.Plugins.
func (p *plugins) DeadLetters(ctx context.Context, after int64, limit int) ([]api.DeadLetterView, error) {
	ls, err := p.router.DeadLetters().List(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	out := make([]api.DeadLetterView, len(ls))
	for i, l := range ls {
		msg := json.RawMessage(l.Payload)
		if !json.Valid(msg) {
			msg, _ = json.Marshal(string(l.Payload))
		}
		out[i] = api.DeadLetterView{ID: l.ID, Topic: l.Topic, Handler: l.Handler, Reason: l.Reason,
			MessageUUID: l.MessageUUID, Message: msg, Metadata: l.Metadata, At: l.At, ReplayedAt: l.ReplayedAt}
		if out[i].Metadata == nil {
			out[i].Metadata = map[string]string{}
		}
	}
	return out, nil
}

// Replay implements api.Plugins.
func (p *plugins) Replay(ctx context.Context, id int64) error {
	err := p.router.Replay(ctx, id)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bus.ErrDeadLetterNotFound):
		return fault.E(fault.NotFound, "id", fmt.Sprintf("no dead letter %d", id))
	case errors.Is(err, bus.ErrAlreadyReplayed):
		return fault.E(fault.Conflict, "id", fmt.Sprintf("dead letter %d was replayed already", id))
	}
	return fault.Wrap(fault.Unavailable, err)
}
