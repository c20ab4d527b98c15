package pluginwire

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime/debug"
	"sync"
	"sync/atomic"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/citycard/citycard/sdk"
	pluginv1 "github.com/citycard/citycard/sdk/proto/citycard/plugin/v1"
)

// Client is the hub's handle on one running plugin: the Plugin service as
// Go methods. The hub's plugin host gets one from Dispense. Every method
// validates what it sends and what comes back against the plugin's
// Descriptor, so the hub never acts on a message that breaks its schema.
// Errors are *Error; a plugin that crashed or timed out yields a retryable
// CodeUnavailable or CodeTimeout. It is safe for concurrent use.
type Client struct {
	rpc    pluginv1.PluginClient
	broker *plugin.GRPCBroker

	// configuring serialises Configure: the plugin applies configurations
	// one at a time, and the hub connection it keeps must be the one this
	// side keeps serving, so two calls must not finish in another order.
	configuring sync.Mutex

	mu        sync.Mutex
	val       Validator
	callbacks []*HubService // Hub services started by Configure, newest last

	// hubCalls counts calls that reached the hub's side, so tests can prove
	// an invalid message was stopped in the plugin's process.
	hubCalls atomic.Int64
}

// ClientConfig returns the go-plugin configuration that launches the plugin
// binary cmd, as the hub's plugin host and the conformance kit do: gRPC
// only, the binary checked against its SHA-256 sum before it runs, mutual
// TLS with certificates made fresh for each launch, and PluginMap(). The
// plugin does not inherit the hub's environment, which holds database
// credentials that a partner's code has no business reading; give it what
// it needs in cmd.Env. Callers may adjust the rest (Logger, Stderr,
// SyncStderr, StartTimeout, cmd.SysProcAttr) before plugin.NewClient.
func ClientConfig(cmd *exec.Cmd, sha256Sum []byte) *plugin.ClientConfig {
	return &plugin.ClientConfig{
		HandshakeConfig:  Handshake(),
		Plugins:          PluginMap(),
		Cmd:              cmd,
		SecureConfig:     &plugin.SecureConfig{Checksum: sha256Sum, Hash: sha256.New()},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SkipHostEnv:      true,
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "plugin", Level: hclog.Warn, Output: os.Stderr}),
	}
}

// Dispense connects to a launched plugin (starting it if need be) and
// returns its Client.
func Dispense(pc *plugin.Client) (*Client, error) {
	proto, err := pc.Client()
	if err != nil {
		return nil, err
	}
	raw, err := proto.Dispense(PluginName())
	if err != nil {
		return nil, err
	}
	c, ok := raw.(*Client)
	if !ok {
		return nil, fmt.Errorf("pluginwire: plugin dispensed %T, not *pluginwire.Client; was PluginMap used?", raw)
	}
	return c, nil
}

// Describe asks the plugin what it is and checks the answer; later calls
// validate against it.
func (c *Client) Describe(ctx context.Context) (sdk.Descriptor, error) {
	resp, err := c.rpc.Describe(ctx, &pluginv1.DescribeRequest{})
	if err != nil {
		return sdk.Descriptor{}, wire.TransportError(ctx, "describe", err)
	}
	d := FromDescriptor(resp)
	v, err := NewValidator(d)
	if err != nil {
		return d, err
	}
	c.mu.Lock()
	c.val = v
	c.mu.Unlock()
	return d, nil
}

// validator returns the Validator of the plugin's Descriptor, asking for
// the Descriptor on first use.
func (c *Client) validator(ctx context.Context) (Validator, error) {
	c.mu.Lock()
	v := c.val
	c.mu.Unlock()
	if v != nil {
		return v, nil
	}
	if _, err := c.Describe(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.val, nil
}

// Configure checks config against the plugin's ConfigSchema and, if it
// holds, hands it to the plugin together with hub: the Hub service is
// served to the plugin through go-plugin's GRPCBroker, and every message
// the plugin submits is validated before hub sees it. A nil hub gives the
// plugin none. Calling Configure again reconfigures the plugin and retires
// the previous hub connection.
func (c *Client) Configure(ctx context.Context, config json.RawMessage, hub sdk.Hub) error {
	c.configuring.Lock()
	defer c.configuring.Unlock()
	v, err := c.validator(ctx)
	if err != nil {
		return err
	}
	config = wire.NormalConfig(config)
	if err := v.CheckConfig(config); err != nil {
		return err
	}
	var id uint32
	var cb *HubService
	if hub != nil {
		id, cb = ServeHub(c.broker, &hubServer{hub: hub, val: v, calls: &c.hubCalls})
	}
	resp, err := c.rpc.Configure(ctx, &pluginv1.ConfigureRequest{Config: config, HubBrokerId: id})
	if err == nil {
		err = fromWireError(resp.GetError())
	} else {
		err = wire.TransportError(ctx, "configure", err)
	}
	if err != nil {
		if cb != nil {
			cb.Stop()
		}
		return err
	}
	c.mu.Lock()
	old := c.callbacks
	c.callbacks = nil
	if cb != nil {
		c.callbacks = append(c.callbacks, cb)
	}
	c.mu.Unlock()
	// The plugin has already let go of the old connection.
	for _, o := range old {
		o.Stop()
	}
	return nil
}

// Handle delivers m to the plugin and returns its replies. Empty fields of
// m are filled as a hub message: a fresh ID, Source "hub", the SchemaID the
// plugin declared for the type, CorrelationID = ID and the time.
func (c *Client) Handle(ctx context.Context, m sdk.Message) ([]sdk.Message, error) {
	v, err := c.validator(ctx)
	if err != nil {
		return nil, err
	}
	v.FillHubMessage(&m)
	if err := v.CheckHandled(m); err != nil {
		return nil, err
	}
	resp, err := c.rpc.Handle(ctx, ToEnvelope(m))
	if err != nil {
		return nil, wire.TransportError(ctx, "handle "+m.Type, err)
	}
	if err := fromWireError(resp.GetError()); err != nil {
		return nil, err
	}
	replies := FromEnvelopes(resp.GetReplies())
	for i, r := range replies {
		if err := v.CheckSent(r); err != nil {
			return nil, wire.InBatch(err, "reply", i)
		}
	}
	return replies, nil
}

// Health returns nil if the plugin is configured and able to serve, a
// retryable CodeUnavailable *Error saying why not, or the transport error.
func (c *Client) Health(ctx context.Context) error {
	resp, err := c.rpc.Health(ctx, &pluginv1.HealthRequest{})
	if err != nil {
		return wire.TransportError(ctx, "health", err)
	}
	if resp.GetStatus() != pluginv1.HealthResponse_STATUS_SERVING {
		return &sdk.Error{Code: sdk.CodeUnavailable, Message: resp.GetMessage(), Retryable: true}
	}
	return nil
}

// Stop asks the plugin to finish and release its resources, then closes
// its hub connection. The host ends the process afterwards (plugin.Client's
// Kill).
func (c *Client) Stop(ctx context.Context) error {
	resp, err := c.rpc.Stop(ctx, &pluginv1.StopRequest{})
	c.mu.Lock()
	cbs := c.callbacks
	c.callbacks = nil
	c.mu.Unlock()
	for _, cb := range cbs {
		cb.Stop()
	}
	if err != nil {
		return wire.TransportError(ctx, "stop", err)
	}
	return fromWireError(resp.GetError())
}

// hubServer is the hub's side of the Hub service: it checks every message
// from the plugin, as the plugin may not have used this sdk, and calls the
// hub's implementation.
type hubServer struct {
	pluginv1.UnimplementedHubServer
	hub   sdk.Hub
	val   Validator
	calls *atomic.Int64
}

// recovered keeps a panic in the hub's own implementation from taking the
// whole hub down with one plugin's request.
func recovered(op string, r any) *pluginv1.Error {
	slog.Error("hub panicked serving a plugin", "op", op, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	return &pluginv1.Error{Code: sdk.CodeInternal, Message: fmt.Sprintf("hub panicked in %s: %v", op, r)}
}

func (s *hubServer) Submit(ctx context.Context, e *pluginv1.Envelope) (resp *pluginv1.SubmitResponse, _ error) {
	defer func() {
		if r := recover(); r != nil {
			resp = &pluginv1.SubmitResponse{Error: recovered("Submit", r)}
		}
	}()
	s.calls.Add(1)
	m := FromEnvelope(e)
	if err := s.val.CheckSent(m); err != nil {
		return &pluginv1.SubmitResponse{Error: ToWireError(err)}, nil
	}
	r, err := s.hub.Submit(ctx, m)
	if err != nil {
		return &pluginv1.SubmitResponse{Error: ToWireError(err)}, nil
	}
	if r.MessageID == "" {
		r.MessageID = m.ID
	}
	return &pluginv1.SubmitResponse{Result: wire.ToResult(r)}, nil
}

func (s *hubServer) SubmitBatch(ctx context.Context, b *pluginv1.Batch) (resp *pluginv1.BatchResponse, _ error) {
	defer func() {
		if r := recover(); r != nil {
			resp = &pluginv1.BatchResponse{Error: recovered("SubmitBatch", r)}
		}
	}()
	s.calls.Add(1)
	if n := len(b.GetMessages()); n > sdk.MaxBatch {
		return &pluginv1.BatchResponse{Error: ToWireError(sdk.Errorf(sdk.CodeInvalidRequest, "a batch holds at most %d messages, not %d", sdk.MaxBatch, n))}, nil
	}
	ms := FromEnvelopes(b.GetMessages())
	// All or nothing: one bad message refuses the batch before any of it
	// is applied, so nothing is half-processed.
	for i, m := range ms {
		if err := s.val.CheckSent(m); err != nil {
			return &pluginv1.BatchResponse{Error: ToWireError(wire.InBatch(err, "message", i))}, nil
		}
	}
	if len(ms) == 0 {
		return &pluginv1.BatchResponse{}, nil
	}
	rs, err := s.hub.SubmitBatch(ctx, ms)
	if err != nil {
		return &pluginv1.BatchResponse{Error: ToWireError(err)}, nil
	}
	if len(rs) != len(ms) {
		return &pluginv1.BatchResponse{Error: ToWireError(sdk.Errorf(sdk.CodeInternal, "the hub answered %d results for %d messages", len(rs), len(ms)))}, nil
	}
	out := make([]*pluginv1.SubmitResponse, len(rs))
	for i, r := range rs {
		if r.Error != nil {
			out[i] = &pluginv1.SubmitResponse{Error: ToWireError(r.Error)}
			continue
		}
		if r.MessageID == "" {
			r.MessageID = ms[i].ID
		}
		out[i] = &pluginv1.SubmitResponse{Result: wire.ToResult(r)}
	}
	return &pluginv1.BatchResponse{Results: out}, nil
}

func (s *hubServer) Query(ctx context.Context, q *pluginv1.QueryRequest) (resp *pluginv1.QueryResponse, _ error) {
	defer func() {
		if r := recover(); r != nil {
			resp = &pluginv1.QueryResponse{Error: recovered("Query", r)}
		}
	}()
	s.calls.Add(1)
	if q.GetKind() == "" {
		return &pluginv1.QueryResponse{Error: ToWireError(sdk.Errorf(sdk.CodeInvalidRequest, "a query needs a kind"))}, nil
	}
	body, err := s.hub.Query(ctx, q.GetKind(), q.GetKey())
	if err != nil {
		return &pluginv1.QueryResponse{Error: ToWireError(err)}, nil
	}
	return &pluginv1.QueryResponse{Body: body}, nil
}
