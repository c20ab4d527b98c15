// Package plugintest runs a CityCard plugin in-process against a fake hub,
// as net/http/httptest does for HTTP handlers, so plugin authors can test
// without a hub.
//
// The plugin is served and called through the real protocol (go-plugin's
// gRPC transport and broker, in memory instead of in a child process), so
// everything the hub would check is checked: the Descriptor, the
// configuration against its schema, and every message in either direction
// against its schema.
//
//	func TestMeter(t *testing.T) {
//		h := plugintest.Start(t, &Meter{})
//		if err := h.Configure(map[string]any{"zone": "a1", "rate_per_hour": 300}); err != nil {
//			t.Fatal(err)
//		}
//		replies, err := h.Handle(plugintest.NewMessage("parking.session.end.v1", map[string]any{…}))
//		…
//		got := h.Submitted() // what reached the hub
//	}
package plugintest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/citycard/citycard/internal/pluginwire"
	"github.com/citycard/citycard/sdk"
)

// DefaultTimeout bounds each Harness call unless WithTimeout says otherwise:
// long enough for a slow CI machine, short enough that a hung plugin fails
// the test rather than the test run.
const DefaultTimeout = 10 * time.Second

// Option adjusts a Harness.
type Option func(*options)

type options struct {
	timeout time.Duration
	hub     *FakeHub
}

// WithTimeout sets the deadline of each Harness call (Configure, Handle,
// …), which the plugin sees in its context and passes on to its hub calls.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithHub makes the Harness use hub instead of a new FakeHub, for a hub
// prepared before the plugin starts.
func WithHub(hub *FakeHub) Option { return func(o *options) { o.hub = hub } }

// Harness is a plugin running in-process, connected to a FakeHub.
type Harness struct {
	client  *pluginwire.Client
	conn    *plugin.GRPCClient
	server  *plugin.GRPCServer
	hub     *FakeHub
	desc    sdk.Descriptor
	timeout time.Duration

	closeOnce sync.Once
	closeErr  error
}

// Start serves p in-process and returns its Harness; the plugin is stopped
// and everything torn down when the test ends. It fails the test if p's
// Descriptor is invalid.
func Start(t testing.TB, p sdk.Plugin, opts ...Option) *Harness {
	t.Helper()
	h, err := start(t, p, opts)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("plugintest: stopping the plugin: %v", err)
		}
	})
	return h
}

// New is Start for use outside a test, such as in an Example or a tool;
// the caller must Close the Harness.
func New(p sdk.Plugin, opts ...Option) (h *Harness, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			h, err = nil, errors.New(string(f))
		}
	}()
	return start(fatalTB{}, p, opts)
}

// fatalTB lets New use go-plugin's in-process helper, which wants a
// testing.TB only to report a failed setup through Fatal or Fatalf. Those
// become a panic of type fatal, which New turns back into an error; any
// other use of the TB would panic on the nil interface and fail loudly.
type fatalTB struct{ testing.TB }

type fatal string

func (fatalTB) Helper()                        {}
func (fatalTB) Fatal(args ...any)              { panic(fatal(fmt.Sprint(args...))) }
func (fatalTB) Fatalf(format string, a ...any) { panic(fatal(fmt.Sprintf(format, a...))) }

func start(tb testing.TB, p sdk.Plugin, opts []Option) (*Harness, error) {
	o := options{timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if o.hub == nil {
		o.hub = NewFakeHub()
	}
	if p == nil {
		return nil, errors.New("no plugin")
	}
	// Checked here first for a clear message: go-plugin would report it as
	// a failure to register the service.
	d := p.Describe()
	d.ProtocolVersions = []uint32{sdk.ProtocolVersion}
	if _, err := pluginwire.NewValidator(d); err != nil {
		return nil, err
	}
	// TestPluginGRPCConn rather than plugin.Serve's test mode, which leaves
	// two goroutines reading its stdio pipes for the life of the process.
	conn, server := plugin.TestPluginGRPCConn(tb, false, map[string]plugin.Plugin{pluginwire.PluginName(): &pluginwire.GRPCPlugin{Impl: p}})
	h := &Harness{conn: conn, server: server, hub: o.hub, timeout: o.timeout}
	raw, err := conn.Dispense(pluginwire.PluginName())
	if err != nil {
		h.teardown()
		return nil, err
	}
	h.client = raw.(*pluginwire.Client)
	ctx, cancel := h.context()
	defer cancel()
	if h.desc, err = h.client.Describe(ctx); err != nil {
		h.teardown()
		return nil, err
	}
	return h, nil
}

func (h *Harness) context() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), h.timeout)
}

// Describe returns the plugin's Descriptor as the hub received it.
func (h *Harness) Describe() sdk.Descriptor { return h.desc }

// Configure configures the plugin with cfg: a json.RawMessage or []byte is
// sent as it is, nil as no configuration, anything else marshalled to JSON.
// The configuration is checked against the plugin's ConfigSchema first, as
// the hub does; the plugin is given the Harness's FakeHub.
func (h *Harness) Configure(cfg any) error {
	var raw json.RawMessage
	switch c := cfg.(type) {
	case nil:
	case json.RawMessage:
		raw = c
	case []byte:
		raw = c
	default:
		var err error
		if raw, err = json.Marshal(cfg); err != nil {
			return fmt.Errorf("plugintest: configuration: %w", err)
		}
	}
	ctx, cancel := h.context()
	defer cancel()
	return h.client.Configure(ctx, raw, h.hub)
}

// Handle delivers m to the plugin as the hub would, filling the fields left
// empty as the hub does (a fresh ID, Source "hub", the declared SchemaID,
// CorrelationID = ID and the time), and returns the plugin's replies.
func (h *Harness) Handle(m sdk.Message) ([]sdk.Message, error) {
	ctx, cancel := h.context()
	defer cancel()
	return h.client.Handle(ctx, m)
}

// Health asks the plugin whether it can serve.
func (h *Harness) Health() error {
	ctx, cancel := h.context()
	defer cancel()
	return h.client.Health(ctx)
}

// Hub returns the FakeHub the plugin talks to.
func (h *Harness) Hub() *FakeHub { return h.hub }

// Submitted returns the messages the plugin submitted and the hub accepted.
func (h *Harness) Submitted() []sdk.Message { return h.hub.Submitted() }

// Client returns the hub's handle on the plugin, for calls with a context
// of the test's choosing: Describe, Configure, Handle, Health and Stop, as
// the Harness's own methods but each with a ctx first.
func (h *Harness) Client() *pluginwire.Client { return h.client }

// Close calls the plugin's Stop and tears the connection down, returning
// Stop's error. Later calls return the same. Start's Harness closes itself
// when the test ends.
func (h *Harness) Close() error {
	h.closeOnce.Do(func() {
		ctx, cancel := h.context()
		defer cancel()
		h.closeErr = h.client.Stop(ctx)
		h.teardown()
	})
	return h.closeErr
}

// teardown closes both ends and waits for the server to finish, so no
// goroutine of the harness outlives it. The server goes first: closing the
// client asks a live server to stop itself, and go-plugin's two Stop calls
// would then race.
func (h *Harness) teardown() {
	h.server.Stop()
	_ = h.conn.Close()
	<-h.server.DoneCh
}

// NewMessage returns a message of type typ with payload marshalled to JSON
// (a json.RawMessage is used as it is), for Harness.Handle; the Harness
// fills the rest. It panics if payload cannot be marshalled, as that is a
// mistake in the test itself.
func NewMessage(typ string, payload any) sdk.Message {
	body, ok := payload.(json.RawMessage)
	if !ok {
		var err error
		if body, err = json.Marshal(payload); err != nil {
			panic(fmt.Sprintf("plugintest: NewMessage(%s): %v", typ, err))
		}
	}
	return sdk.Message{Type: typ, Payload: body}
}
