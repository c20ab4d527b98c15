// Package pluginhost runs the hub's out-of-process plugins: it launches
// each binary with go-plugin (checksum, AutoMTLS, gRPC only, killed with
// the hub), checks its configuration against the plugin's own schema before
// configuring it, forwards its stderr into the hub log, supervises it by
// watching its process (a pidfd on Linux) and with health pings, and
// restarts it with exponential backoff after a crash.
//
// Every plugin goes through one life cycle, enforced here: launch →
// Describe → config checked → Configure → Handle… → Stop → kill. A crash
// anywhere after launch starts the cycle again.
package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/citycard/citycard/sdk"
)

// Options configure a Host. Zero values take the documented defaults.
type Options struct {
	// Logger receives the host's records and the plugins' stderr, each
	// with plugin=<name>. Default: slog.Default().
	Logger *slog.Logger
	// Hub returns the hub side a plugin submits to and queries. It is
	// called once per plugin and the result is reused across restarts.
	// Nil, or a nil result, gives the plugin no hub.
	Hub func(pluginName string) sdk.Hub
	// HealthInterval is how often each plugin is pinged. Default 5s.
	HealthInterval time.Duration
	// HealthTimeout bounds one ping. Default 2s.
	HealthTimeout time.Duration
	// HealthFailures is how many pings in a row may fail before the plugin
	// is killed and restarted. Default 3.
	HealthFailures int
	// HandleTimeout bounds a Handle whose context has no deadline, so a
	// hung plugin never holds a caller forever. Default 30s.
	HandleTimeout time.Duration
	// StartTimeout bounds one launch: the handshake, Describe and
	// Configure. Default 30s.
	StartTimeout time.Duration
	// StopTimeout bounds a plugin's graceful Stop before it is killed.
	// Default 10s: a plugin that drains work to the hub on Stop (transit's
	// batches, its validators' long polls) needs more than a few seconds on
	// a loaded machine, and the hub's own shutdown allows 30.
	StopTimeout time.Duration
	// RestartBackoff spaces restarts of a crashing plugin.
	RestartBackoff Backoff
	// Registerer receives the per-plugin metrics; nil registers none.
	Registerer prometheus.Registerer
	// OnCrash, if set, is called after a plugin crashed or was killed for
	// failing its health checks, with the messages that were in flight to
	// it. Their callers get a retryable error; the plugin may or may not
	// have acted on them, so the hub compensates here (e.g. voids holds)
	// or relies on idempotency keys when they are retried. It runs on the
	// plugin's supervisor goroutine and delays the restart until it returns.
	OnCrash func(plugin string, inFlight []sdk.Message)
}

// Backoff is an exponential backoff between restarts.
type Backoff struct {
	// Initial is the first delay. Default 200ms.
	Initial time.Duration
	// Max caps the delay. Default 30s.
	Max time.Duration
	// Factor multiplies the delay after each restart. Default 2.
	Factor float64
	// Stable is how long a plugin must run before the delay falls back to
	// Initial: one crash a day should not inherit yesterday's backoff.
	// Default 1 minute.
	Stable time.Duration
}

// next returns the delay after d: d times Factor, capped at Max.
func (b Backoff) next(d time.Duration) time.Duration {
	return min(time.Duration(float64(d)*b.Factor), b.Max)
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.HealthInterval, 5*time.Second)
	def(&o.HealthTimeout, 2*time.Second)
	def(&o.HandleTimeout, 30*time.Second)
	def(&o.StartTimeout, 30*time.Second)
	def(&o.StopTimeout, 10*time.Second)
	def(&o.RestartBackoff.Initial, 200*time.Millisecond)
	def(&o.RestartBackoff.Max, 30*time.Second)
	def(&o.RestartBackoff.Stable, time.Minute)
	if o.RestartBackoff.Factor < 1 {
		o.RestartBackoff.Factor = 2
	}
	if o.HealthFailures <= 0 {
		o.HealthFailures = 3
	}
}

// State is where a plugin is in its life cycle.
type State string

// States a plugin can be in.
const (
	// StateStarting: being launched, described and configured.
	StateStarting State = "starting"
	// StateRunning: configured and accepting messages.
	StateRunning State = "running"
	// StateRestarting: it crashed; the host waits out the backoff and
	// launches it again.
	StateRestarting State = "restarting"
	// StateFailed: the last relaunch failed; the host keeps trying with
	// backoff, LastError says why.
	StateFailed State = "failed"
	// StateStopped: stopped by Stop.
	StateStopped State = "stopped"
)

// PluginStatus is a snapshot of one plugin, for operators and /healthz.
// It is never StateRunning once the plugin's process has exited: a read
// asks the kernel when the supervisor has not caught up yet.
type PluginStatus struct {
	Name      string
	State     State
	PID       int // 0 unless running; the exit status is then in LastError
	Restarts  int
	LastError string
	Since     time.Time // when State was entered
}

// Host manages the hub's plugins. Its methods are safe for concurrent use.
type Host struct {
	opts Options
	log  *slog.Logger
	met  *metrics

	// life bounds the supervisors; Stop cancels it.
	life   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	plugins map[string]*managed
	stopped bool
}

// New returns a Host with no plugins; Start launches them.
func New(opts Options) *Host {
	opts.defaults()
	life, cancel := context.WithCancel(context.Background())
	return &Host{
		opts:    opts,
		log:     opts.Logger,
		met:     newMetrics(opts.Registerer),
		life:    life,
		cancel:  cancel,
		plugins: map[string]*managed{},
	}
}

// ErrStopped is returned by Start after Stop.
var ErrStopped = errors.New("pluginhost: host stopped")

// Start launches, describes, checks the configuration of and configures
// each plugin, then supervises it until Stop. It is all or nothing: if one
// plugin fails to start, those this call started are stopped again and
// the error names the plugin. It may be called again to add plugins.
func (h *Host) Start(ctx context.Context, specs ...Spec) error {
	h.mu.Lock()
	if h.stopped {
		h.mu.Unlock()
		return ErrStopped
	}
	names := map[string]bool{}
	for _, s := range specs {
		if err := s.validate(); err != nil {
			h.mu.Unlock()
			return fmt.Errorf("pluginhost: spec%s", err)
		}
		if names[s.Name] || h.plugins[s.Name] != nil {
			h.mu.Unlock()
			return fmt.Errorf("pluginhost: plugin %s started twice", s.Name)
		}
		names[s.Name] = true
	}
	h.mu.Unlock()

	var started []*managed
	for _, s := range specs {
		p := h.newManaged(s)
		if err := p.start(ctx); err != nil {
			for _, q := range started {
				h.undo(q)
			}
			return err
		}
		started = append(started, p)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	err := error(nil)
	if h.stopped {
		// Stop ran meanwhile and did not see these.
		err = ErrStopped
	}
	for _, p := range started {
		if h.plugins[p.spec.Name] != nil {
			// A concurrent Start won the name.
			err = fmt.Errorf("pluginhost: plugin %s started twice", p.spec.Name)
		}
	}
	if err != nil {
		for _, p := range started {
			h.undo(p)
		}
		return err
	}
	for _, p := range started {
		h.plugins[p.spec.Name] = p
		h.wg.Add(1)
		go p.supervise()
	}
	return nil
}

// undo stops a plugin Start launched but could not hand to supervision.
func (h *Host) undo(p *managed) {
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.StopTimeout)
	defer cancel()
	_ = p.shutdown(ctx)
}

func (h *Host) plugin(name string) *managed {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.plugins[name]
}

// Handle delivers m to the named plugin and returns its replies. It is
// bounded by ctx and, when ctx has no deadline, by Options.HandleTimeout.
//
// While the plugin is restarting, Handle fails at once with a retryable
// *sdk.Error of code sdk.CodeUnavailable rather than waiting: the router's
// retry middleware already waits with backoff, and a worker parked here
// would hold up messages for healthy plugins. A call in flight when the
// plugin crashes fails with the same error, and its message is passed to
// Options.OnCrash.
func (h *Host) Handle(ctx context.Context, plugin string, m sdk.Message) ([]sdk.Message, error) {
	p := h.plugin(plugin)
	if p == nil {
		return nil, &sdk.Error{Code: sdk.CodeInvalidRequest, Message: fmt.Sprintf("no plugin named %q", plugin)}
	}
	begin := time.Now()
	replies, err := p.handle(ctx, m)
	h.met.latency.WithLabelValues(plugin).Observe(time.Since(begin).Seconds())
	h.met.calls.WithLabelValues(plugin, outcome(err)).Inc()
	return replies, err
}

// outcome classifies a Handle result for the metrics.
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	switch sdk.AsError(err).Code {
	case sdk.CodeUnavailable:
		return "unavailable"
	case sdk.CodeTimeout:
		return "timeout"
	}
	return "error"
}

// Describe returns the named plugin's Descriptor as it gave it at its
// latest launch.
func (h *Host) Describe(plugin string) (sdk.Descriptor, bool) {
	p := h.plugin(plugin)
	if p == nil {
		return sdk.Descriptor{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.desc, true
}

// Status returns a snapshot of every plugin, sorted by name.
func (h *Host) Status() []PluginStatus {
	h.mu.Lock()
	ps := make([]*managed, 0, len(h.plugins))
	for _, p := range h.plugins {
		ps = append(ps, p)
	}
	h.mu.Unlock()
	out := make([]PluginStatus, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.status())
	}
	slices.SortFunc(out, func(a, b PluginStatus) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// Stop ends supervision, asks every plugin to stop gracefully (bounded by
// ctx and Options.StopTimeout), then ends its process and waits for it.
// Calls still in flight when the plugin's Stop returns fail with a
// retryable error. It returns the plugins'
// Stop errors; the processes are gone either way.
func (h *Host) Stop(ctx context.Context) error {
	h.mu.Lock()
	h.stopped = true
	ps := make([]*managed, 0, len(h.plugins))
	for _, p := range h.plugins {
		ps = append(ps, p)
	}
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()

	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, h.opts.StopTimeout)
			defer cancel()
			errs[i] = p.shutdown(sctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
