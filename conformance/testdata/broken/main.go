// Command broken is a plugin with one deliberate flaw per requirement of
// conformance/SPEC.md, for the kit's own tests: each flaw must make exactly
// its check fail. Run as `broken CC-PLUGIN-nnn`; without an argument it is
// a plugin that conforms.
//
// It is one program rather than one per check so the tests build it once.
// Flaws the sdk would prevent are made below it, as a plugin written
// without the sdk could have them: a gRPC interceptor rewrites what the
// sdk's server receives or answers.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/citycard/citycard/internal/pluginwire"
	"github.com/citycard/citycard/sdk"
	pluginv1 "github.com/citycard/citycard/sdk/proto/citycard/plugin/v1"
)

// flaws maps a requirement id to what breaks it.
var flaws = map[string]func(p *probe, o *serveOptions){
	// Speaks protocol v2 only.
	"CC-PLUGIN-001": func(_ *probe, o *serveOptions) { o.handshake.ProtocolVersion = 2 },
	// Claims every version the hub offers, even one that does not exist.
	"CC-PLUGIN-002": func(_ *probe, o *serveOptions) { o.alsoVersion = 99 },
	// A version that is not semantic.
	"CC-PLUGIN-003": func(_ *probe, o *serveOptions) {
		o.on("Describe", func(_ any, resp any) any {
			resp.(*pluginv1.Descriptor).Version = "latest"
			return resp
		})
	},
	// Handles messages before any configuration.
	"CC-PLUGIN-004": func(_ *probe, o *serveOptions) {
		var configured atomic.Bool
		o.before("Configure", func(any) any { configured.Store(true); return nil })
		o.before("Handle", func(any) any {
			if !configured.Load() {
				return &pluginv1.HandleResponse{}
			}
			return nil
		})
	},
	// A configuration schema that lets typos through.
	"CC-PLUGIN-005": func(p *probe, _ *serveOptions) { p.openConfig = true },
	// Accepts whatever configuration it is given.
	"CC-PLUGIN-006": func(_ *probe, o *serveOptions) {
		o.before("Configure", func(req any) any {
			if o.val.CheckConfig(req.(*pluginv1.ConfigureRequest).GetConfig()) != nil {
				return &pluginv1.ConfigureResponse{}
			}
			return nil
		})
	},
	// Refuses even a valid configuration.
	"CC-PLUGIN-007": func(p *probe, _ *serveOptions) { p.refuseConfig = true },
	// Never healthy.
	"CC-PLUGIN-008": func(p *probe, _ *serveOptions) { p.unhealthy = true },
	// Fails every message.
	"CC-PLUGIN-009": func(p *probe, _ *serveOptions) { p.failHandle = true },
	// Replies with a payload that breaks its schema.
	"CC-PLUGIN-010": func(_ *probe, o *serveOptions) {
		o.on("Handle", func(_ any, resp any) any {
			r := resp.(*pluginv1.HandleResponse)
			for _, e := range r.GetReplies() {
				e.Payload = []byte(`{"amount":"ten"}`)
			}
			return r
		})
	},
	// Quietly drops a message that breaks its schema.
	"CC-PLUGIN-011": func(_ *probe, o *serveOptions) {
		o.before("Handle", func(req any) any {
			e := req.(*pluginv1.Envelope)
			m := sdk.Message{ID: e.GetId(), Type: e.GetType(), SchemaID: e.GetSchemaId(), Source: e.GetSource(),
				CorrelationID: e.GetCorrelationId(), CreatedAt: e.GetCreatedAt().AsTime(), Payload: e.GetPayload()}
			if err := o.val.CheckHandled(m); errors.Is(err, &sdk.Error{Code: sdk.CodeSchemaInvalid}) {
				return &pluginv1.HandleResponse{}
			}
			return nil
		})
	},
	// Answers an unknown type as an internal error.
	"CC-PLUGIN-012": func(_ *probe, o *serveOptions) {
		o.before("Handle", func(req any) any {
			if req.(*pluginv1.Envelope).GetType() != typeCharge {
				return &pluginv1.HandleResponse{Error: &pluginv1.Error{Code: sdk.CodeInternal, Message: "no handler"}}
			}
			return nil
		})
	},
	// A fresh idempotency key on every delivery.
	"CC-PLUGIN-013": func(p *probe, _ *serveOptions) { p.randomKey = true },
	// Calls the hub without Handle's deadline.
	"CC-PLUGIN-014": func(p *probe, _ *serveOptions) { p.detach = true },
	// Turns the hub's retryable errors into plain ones.
	"CC-PLUGIN-015": func(p *probe, _ *serveOptions) { p.wrapErrors = true },
	// One message at a time; others are refused.
	"CC-PLUGIN-016": func(p *probe, _ *serveOptions) { p.single = true },
	// Remembers deliveries in memory only, with random keys.
	"CC-PLUGIN-017": func(p *probe, _ *serveOptions) { p.randomKey, p.remember = true, true },
	// Ignores Stop.
	"CC-PLUGIN-018": func(p *probe, _ *serveOptions) { p.hangStop = true },
	// Leaves a child process behind.
	"CC-PLUGIN-018/child": func(p *probe, _ *serveOptions) { p.child = true },
}

// variants are not flaws: plugins that conform but give some checks
// nothing to check.
var variants = map[string]func(p *probe){
	// Handles no message type, as a plugin that only uploads on its own.
	"handles-nothing": func(p *probe) { p.handlesNothing = true },
}

// childArg makes the program a child process that only sleeps.
const childArg = "child-sleep"

func main() {
	p := &probe{seen: map[string][]sdk.Message{}}
	o := &serveOptions{handshake: pluginwire.Handshake()}
	if len(os.Args) > 1 {
		if os.Args[1] == childArg {
			time.Sleep(5 * time.Minute)
			return
		}
		if v, ok := variants[os.Args[1]]; ok {
			v(p)
		} else if f, ok := flaws[os.Args[1]]; ok {
			f(p, o)
		} else {
			fmt.Fprintf(os.Stderr, "broken: no flaw %q\n", os.Args[1])
			os.Exit(2)
		}
	}
	d := p.Describe()
	d.ProtocolVersions = []uint32{sdk.ProtocolVersion}
	v, err := pluginwire.NewValidator(d)
	if err != nil {
		fmt.Fprintf(os.Stderr, "broken: %v\n", err)
		os.Exit(1)
	}
	o.val = v
	o.serve(p)
}

// serveOptions is how the program serves its plugin.
type serveOptions struct {
	handshake   plugin.HandshakeConfig
	alsoVersion int
	val         pluginwire.Validator
	// Rewrites of Plugin service calls, by method name: before may answer
	// instead of the sdk, after may change the sdk's answer.
	befores map[string]func(req any) any
	afters  map[string]func(req, resp any) any
}

func (o *serveOptions) before(method string, f func(req any) any) {
	if o.befores == nil {
		o.befores = map[string]func(any) any{}
	}
	o.befores[method] = f
}

func (o *serveOptions) on(method string, f func(req, resp any) any) {
	if o.afters == nil {
		o.afters = map[string]func(any, any) any{}
	}
	o.afters[method] = f
}

const service = "/citycard.plugin.v1.Plugin/"

func (o *serveOptions) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	name := info.FullMethod[len(service):]
	if len(info.FullMethod) <= len(service) || info.FullMethod[:len(service)] != service {
		return handler(ctx, req)
	}
	if f := o.befores[name]; f != nil {
		if resp := f(req); resp != nil {
			return resp, nil
		}
	}
	resp, err := handler(ctx, req)
	if f := o.afters[name]; f != nil && err == nil {
		resp = f(req, resp)
	}
	return resp, err
}

func (o *serveOptions) serve(p *probe) {
	set := plugin.PluginSet{pluginwire.PluginName(): &pluginwire.GRPCPlugin{Impl: p}}
	cfg := &plugin.ServeConfig{
		HandshakeConfig: o.handshake,
		Plugins:         set,
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpc.UnaryInterceptor(o.intercept))...)
		},
		Logger: hclog.New(&hclog.LoggerOptions{Name: "go-plugin", Level: hclog.Warn, Output: os.Stderr}),
	}
	if o.alsoVersion != 0 {
		cfg.VersionedPlugins = map[int]plugin.PluginSet{o.alsoVersion: set}
	}
	plugin.Serve(cfg)
}

const typeCharge = "probe.charge.v1"

// probe is the plugin: it charges a ride to a card through the hub's
// card.payment.v1, like sdk/examples/bikes, with switches for the flaws.
type probe struct {
	openConfig, refuseConfig, unhealthy, failHandle, randomKey, detach,
	wrapErrors, single, remember, hangStop, child, handlesNothing bool

	mu       sync.Mutex
	hub      sdk.Hub
	merchant string
	fare     int64
	seen     map[string][]sdk.Message // by message id, with remember
	busy     atomic.Bool
	sleeper  *exec.Cmd
}

func (p *probe) Describe() sdk.Descriptor {
	closed := `,"additionalProperties": false`
	if p.openConfig {
		closed = ""
	}
	d := sdk.Descriptor{
		Name:    "probe",
		Version: "1.0.0",
		Handles: []sdk.MessageType{{Type: typeCharge, SchemaID: "https://probe.example/charge.v1.json", Schema: json.RawMessage(`{
			"type": "object",
			"required": ["ride", "card", "minutes"],
			"properties": {
				"ride": {"type": "string", "minLength": 1, "maxLength": 64},
				"card": {"type": "string", "pattern": "^[0-9]{16,19}$"},
				"minutes": {"type": "integer", "minimum": 0}
			},
			"additionalProperties": false}`)}},
		Sends: []sdk.MessageType{
			{Type: "card.payment.v1", SchemaID: "msg-card-payment-v1"},
			{Type: "probe.receipt.v1", SchemaID: "https://probe.example/receipt.v1.json", Schema: json.RawMessage(`{
				"type": "object",
				"required": ["amount", "hub"],
				"properties": {"amount": {"type": "integer"}, "hub": {"type": "object"}},
				"additionalProperties": false}`)},
		},
		ConfigSchema: json.RawMessage(`{
			"type": "object",
			"required": ["merchant", "fare"],
			"properties": {
				"merchant": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
				"fare": {"type": "integer", "minimum": 1}
			}` + closed + `}`),
	}
	if p.handlesNothing {
		d.Handles = nil
	}
	return d
}

func (p *probe) Configure(_ context.Context, raw json.RawMessage, hub sdk.Hub) error {
	if p.refuseConfig {
		return errors.New("cannot reach the partner host")
	}
	var c struct {
		Merchant string `json:"merchant"`
		Fare     int64  `json:"fare"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hub, p.merchant, p.fare = hub, c.Merchant, c.Fare
	if p.child && p.sleeper == nil {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		p.sleeper = exec.Command(self, childArg)
		if err := p.sleeper.Start(); err != nil {
			return err
		}
	}
	return nil
}

func (p *probe) Handle(ctx context.Context, m sdk.Message) ([]sdk.Message, error) {
	if p.failHandle {
		return nil, errors.New("out of order")
	}
	if p.single {
		if !p.busy.CompareAndSwap(false, true) {
			return nil, sdk.Errorf("busy", "probe handles one message at a time")
		}
		defer p.busy.Store(false)
		time.Sleep(50 * time.Millisecond)
	}
	p.mu.Lock()
	hub, merchant, fare := p.hub, p.merchant, p.fare
	if prev, ok := p.seen[m.ID]; ok && p.remember {
		p.mu.Unlock()
		return prev, nil
	}
	p.mu.Unlock()
	var ride struct {
		Ride    string `json:"ride"`
		Card    string `json:"card"`
		Minutes int64  `json:"minutes"`
	}
	if err := json.Unmarshal(m.Payload, &ride); err != nil {
		return nil, err
	}
	amount := (ride.Minutes/30 + 1) * fare
	pay, err := json.Marshal(map[string]any{"card": ride.Card, "merchant": merchant, "amount": amount, "currency": "CNY"})
	if err != nil {
		return nil, err
	}
	key := "probe-" + ride.Ride
	if p.randomKey {
		key = "probe-" + sdk.NewID()
	}
	hctx := ctx
	if p.detach {
		hctx = context.Background()
	}
	res, err := hub.Submit(hctx, sdk.Message{Type: "card.payment.v1", IdempotencyKey: key, Payload: pay})
	if err != nil {
		if p.wrapErrors {
			return nil, fmt.Errorf("charging ride %s: %v", ride.Ride, err)
		}
		return nil, err
	}
	receipt, err := json.Marshal(map[string]any{"amount": amount, "hub": res.Body})
	if err != nil {
		return nil, err
	}
	replies := []sdk.Message{{Type: "probe.receipt.v1", Payload: receipt}}
	if p.remember {
		p.mu.Lock()
		p.seen[m.ID] = replies
		p.mu.Unlock()
	}
	return replies, nil
}

func (p *probe) Health(context.Context) error {
	if p.unhealthy {
		return errors.New("the partner host does not answer")
	}
	return nil
}

func (p *probe) Stop(context.Context) error {
	if p.hangStop {
		select {}
	}
	return nil
}
