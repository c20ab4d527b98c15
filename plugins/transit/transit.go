// Package transit is the CityCard channel plugin for bus and metro
// validators: the front end they talk to over a small HTTP/JSON protocol of
// our own (PROTOCOL.md).
//
// A validator signs every tap with its device key (package tap) and asks
// online, waiting at most its deadline (300 ms by default); the plugin
// gathers the online taps of many validators into micro-batches, each one
// transit.taps.v1 message to the hub, and answers each validator its own
// tap's result. A validator that hears nothing in time decides offline from
// its local deny list and uploads the tap later; the plugin splits uploads
// into messages of at most 1,000 taps and answers per tap. It keeps the
// hub's deny list in memory, refreshed incrementally, and serves validators
// full and incremental downloads from it. README.md tells the whole story.
package transit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/citycard/citycard/sdk"
)

// Name is the plugin's name, and the hub's channel for it.
const Name = "transit"

// Version is the plugin's version.
const Version = "1.0.0"

// Plugin is the transit plugin. Make it with New.
type Plugin struct {
	log  *slog.Logger
	deny *denylist // kept across configurations: it is the hub's, not the configuration's

	mu sync.RWMutex
	st *state // nil until configured
}

// Option adjusts a Plugin.
type Option func(*Plugin)

// WithLogger makes the plugin log to l instead of JSON on stderr.
func WithLogger(l *slog.Logger) Option { return func(p *Plugin) { p.log = l } }

// New returns an unconfigured plugin.
func New(opts ...Option) *Plugin {
	p := &Plugin{deny: newDenylist()}
	for _, o := range opts {
		o(p)
	}
	if p.log == nil {
		p.log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	p.log = p.log.With("plugin", Name)
	return p
}

// Describe implements sdk.Plugin.
func (*Plugin) Describe() sdk.Descriptor {
	return sdk.Descriptor{
		Name:         Name,
		Version:      Version,
		Capabilities: []string{"batch", "idempotent"},
		Handles:      []sdk.MessageType{denylistChangedSchema, statusQuerySchema},
		Sends:        []sdk.MessageType{tapsType, denylistSchema, statusSchema},
		ConfigSchema: json.RawMessage(configSchema),
	}
}

// settings is a configuration, its defaults filled in by the sdk from
// configSchema.
type settings struct {
	listen         string
	onlineDeadline time.Duration
	batchWindow    time.Duration
	batchSize      int
	maxInFlight    int
	refresh        time.Duration
	uploadTimeout  time.Duration
	maxUploadTaps  int
}

// ms reads a setting given in milliseconds.
func ms(v int64) time.Duration { return time.Duration(v) * time.Millisecond }

func parseConfig(raw json.RawMessage) (settings, error) {
	var c config
	if err := json.Unmarshal(raw, &c); err != nil {
		return settings{}, &sdk.Error{Code: sdk.CodeConfigInvalid, Message: err.Error()}
	}
	s := settings{
		listen:         c.Listen,
		onlineDeadline: ms(c.OnlineDeadlineMS),
		batchWindow:    ms(c.BatchWindowMS),
		batchSize:      c.BatchSize,
		maxInFlight:    c.MaxInFlight,
		refresh:        ms(c.DenylistRefreshMS),
		uploadTimeout:  ms(c.UploadTimeoutMS),
		maxUploadTaps:  c.MaxUploadTaps,
	}
	if _, _, err := net.SplitHostPort(s.listen); err != nil {
		return settings{}, &sdk.Error{Code: sdk.CodeConfigInvalid, Field: "/listen", Message: fmt.Sprintf("%q is not host:port: %v", s.listen, err)}
	}
	return s, nil
}

// state is one configuration in force: the front end, its batcher and the
// deny list's refresher.
type state struct {
	hub  sdk.Hub
	log  *slog.Logger
	set  settings
	deny *denylist

	ln      net.Listener
	srv     *http.Server
	batcher *batcher

	ctx     context.Context // cancelled when the state is closed
	cancel  context.CancelFunc
	closing chan struct{} // closed first, to end long polls
	work    sync.WaitGroup
	kick    chan struct{} // asks the refresher to refresh now
	refresh chan struct{} // one refresh at a time, so versions apply in order
	stats   stats
}

// stats count what the front end did, for the log and the tests.
type stats struct {
	onlineTaps, onlineBatches, submits, uploads, uploadedTaps atomic.Int64
}

// Configure implements sdk.Plugin: it starts the validator front end on the
// configured address, then fetches the deny list (within Configure's
// deadline; the refresher keeps trying if the hub does not answer).
func (p *Plugin) Configure(ctx context.Context, raw json.RawMessage, hub sdk.Hub) error {
	set, err := parseConfig(raw)
	if err != nil {
		return err
	}
	p.mu.Lock()
	old := p.st
	p.st = nil
	p.mu.Unlock()
	if old != nil {
		// The old front end finishes what it took in while its hub
		// connection still works: the sdk closes it when Configure returns.
		old.close(ctx)
	}
	ln, err := net.Listen("tcp", set.listen)
	if err != nil {
		return &sdk.Error{Code: sdk.CodeConfigInvalid, Field: "/listen", Message: fmt.Sprintf("cannot listen on %s: %v", set.listen, err)}
	}
	st := &state{hub: hub, set: set, deny: p.deny, ln: ln, closing: make(chan struct{}),
		kick: make(chan struct{}, 1), refresh: make(chan struct{}, 1)}
	st.log = p.log.With("listen", ln.Addr().String())
	st.ctx, st.cancel = context.WithCancel(context.Background())
	st.batcher = newBatcher(st, set.batchWindow, set.batchSize, set.maxInFlight)
	st.srv = &http.Server{Handler: st.routes(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(st.log.Handler(), slog.LevelWarn)}
	st.work.Add(1)
	go func() {
		defer st.work.Done()
		if err := st.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			st.log.Error("validator front end stopped", "err", err)
		}
	}()
	st.log.Info("validator front end listening", "online_deadline_ms", set.onlineDeadline.Milliseconds(),
		"batch_window_ms", set.batchWindow.Milliseconds(), "batch_size", set.batchSize, "max_in_flight", set.maxInFlight,
		"denylist_refresh_ms", set.refresh.Milliseconds())

	fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := st.refreshDenylist(fctx, -1); err != nil {
		st.log.Warn("no deny list from the hub yet; the front end serves taps and keeps asking", "err", err)
	}
	// Started only now, so that its first call is a refresh interval away
	// (or a second, without a list) rather than racing the fetch above.
	st.work.Add(1)
	go func() {
		defer st.work.Done()
		st.refresher()
	}()
	p.mu.Lock()
	p.st = st
	p.mu.Unlock()
	return nil
}

func (p *Plugin) state() *state {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.st
}

// Addr returns the address the validator front end listens on, or "" when
// the plugin is not configured.
func (p *Plugin) Addr() string {
	if st := p.state(); st != nil {
		return st.ln.Addr().String()
	}
	return ""
}

// Handle implements sdk.Plugin.
func (p *Plugin) Handle(ctx context.Context, m sdk.Message) ([]sdk.Message, error) {
	// Never nil: the sdk answers not_configured itself, and never calls
	// Handle while Configure or Stop runs.
	st := p.state()
	log := st.log.With("correlation_id", sdk.CorrelationID(ctx), "message_id", m.ID, "type", m.Type)
	switch m.Type {
	case TypeDenylistChanged:
		var in denylistChanged
		if err := json.Unmarshal(m.Payload, &in); err != nil {
			return nil, err
		}
		// Idempotent: a version the plugin has reached asks nothing.
		if v, _, loaded := st.deny.state(); !loaded || v < in.Version {
			if err := st.refreshDenylist(ctx, in.Version); err != nil {
				log.Warn("deny list refresh failed", "version", in.Version, "err", err)
				return nil, retryable(err)
			}
		}
		v, n, _ := st.deny.state()
		log.Info("deny list change announced", "announced", in.Version, "version", v, "size", n)
		return reply(TypeDenylist, denylistInfo{Version: v, Size: n})
	case TypeStatusQuery:
		v, n, loaded := st.deny.state()
		return reply(TypeStatus, Status{Listen: st.ln.Addr().String(), Serving: loaded, DenylistVersion: v, DenylistSize: n})
	}
	// The sdk delivers only declared types; getting here is a bug in Describe.
	return nil, sdk.Errorf(sdk.CodeUnsupportedMessageType, "transit: no handler for %s", m.Type)
}

// retryable makes a failed hub call the hub's to retry: the plugin did
// nothing it could not do again.
func retryable(err error) *sdk.Error {
	e := sdk.AsError(err)
	if e.Code == sdk.CodeInternal || e.Retryable {
		return &sdk.Error{Code: e.Code, Message: e.Message, Field: e.Field, Retryable: true}
	}
	return e
}

// Health implements sdk.HealthChecker: the plugin serves once it has a
// deny list to give validators.
func (p *Plugin) Health(ctx context.Context) error {
	st := p.state()
	if st == nil {
		return errors.New("transit: not configured")
	}
	if _, _, loaded := st.deny.state(); !loaded {
		return fmt.Errorf("transit: validator front end at %s has no deny list from the hub yet", st.ln.Addr())
	}
	return nil
}

// Stop implements sdk.Plugin: the front end stops taking taps, answers
// those it holds (or tells their validators to decide offline), and closes.
func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	st := p.st
	p.st = nil
	p.mu.Unlock()
	if st != nil {
		st.close(ctx)
	}
	return nil
}

// close shuts the front end down: long polls end, requests in progress
// finish within ctx, batches at the hub are answered, the refresher stops.
func (st *state) close(ctx context.Context) {
	close(st.closing)
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := st.srv.Shutdown(sctx); err != nil {
		_ = st.srv.Close()
	}
	st.batcher.close()
	st.cancel()
	st.work.Wait()
	st.log.Info("validator front end closed", "online_taps", st.stats.onlineTaps.Load(), "online_batches", st.stats.onlineBatches.Load(),
		"uploads", st.stats.uploads.Load(), "uploaded_taps", st.stats.uploadedTaps.Load(), "submits", st.stats.submits.Load())
}

func reply(typ string, payload any) ([]sdk.Message, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	return []sdk.Message{{Type: typ, Payload: body}}, nil
}
