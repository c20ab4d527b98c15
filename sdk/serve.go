package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pluginv1 "github.com/citycard/citycard/sdk/proto/citycard/plugin/v1"
)

// handshake is the go-plugin handshake shared by the hub and every plugin.
// The cookie is no secret and no security: it only stops a plugin binary
// run by hand from waiting forever for a hub that is not there. Plugins in
// other languages copy it from docs/writing-a-plugin.md.
var handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "CITYCARD_PLUGIN",
	MagicCookieValue: "bb9938c223a2c16fa8f95f3ab1848ef1b259ca9b5d24150e",
}

// pluginName is the name under which a plugin process serves its one
// plugin in go-plugin's plugin set.
const pluginName = "citycard"

// maxMessageSize bounds one gRPC message in either direction: room for a
// full batch of MaxBatch messages, where gRPC's default is 4 MiB.
const maxMessageSize = 64 << 20

// grpcPlugin joins the plugin's side of package sdk to go-plugin: it serves
// impl. The hub's side is internal/pluginwire.GRPCPlugin.
type grpcPlugin struct {
	// go-plugin's net/rpc transport is refused: protocol v1 is gRPC only.
	plugin.NetRPCUnsupportedPlugin
	impl Plugin
}

// GRPCServer registers impl with the plugin process's gRPC server. It fails
// if impl's Descriptor is invalid, so a broken plugin never starts.
func (p *grpcPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	srv, err := newPluginServer(p.impl, broker)
	if err != nil {
		return err
	}
	pluginv1.RegisterPluginServer(s, srv)
	return nil
}

// GRPCClient is never called in a plugin's process, which dispenses nothing.
func (p *grpcPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("sdk: a plugin process serves its plugin; the hub's side is not in package sdk")
}

// Serve runs p as a plugin process and returns when the hub is done with
// it; call it from main and nothing else. It exits with status 1 if p's
// Descriptor is invalid, saying why on stderr. Write logs to stderr: the
// hub forwards them under the plugin's name. Never write to stdout, which
// carries go-plugin's handshake.
func Serve(p Plugin) {
	if _, err := newPluginServer(p, nil); err != nil {
		fmt.Fprintf(os.Stderr, "citycard plugin: %v\n", err)
		os.Exit(1)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: handshake,
		Plugins:         plugin.PluginSet{pluginName: &grpcPlugin{impl: p}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(maxMessageSize))...)
		},
		// go-plugin's own chatter at trace level would drown the plugin's logs.
		Logger: hclog.New(&hclog.LoggerOptions{Name: "go-plugin", Level: hclog.Warn, Output: os.Stderr, JSONFormat: true}),
	})
}

// describe reads p's Descriptor with the protocol versions this sdk speaks.
func describe(p Plugin) (Descriptor, *validator, error) {
	if p == nil {
		return Descriptor{}, nil, &Error{Code: CodeDescriptorInvalid, Message: "no plugin to serve"}
	}
	d := p.Describe()
	d.ProtocolVersions = []uint32{ProtocolVersion}
	v, err := newValidator(d)
	return d, v, err
}

// pluginServer is the plugin process's side of the Plugin service: it
// validates what crosses the boundary and calls the author's Plugin.
type pluginServer struct {
	pluginv1.UnimplementedPluginServer
	impl   Plugin
	broker *plugin.GRPCBroker
	desc   Descriptor
	val    *validator

	// mu is held shared by Handle and exclusively by Configure and Stop, so
	// a plugin never sees a message while its configuration changes.
	mu         sync.RWMutex
	configured bool
	hubConn    *grpc.ClientConn
}

func newPluginServer(p Plugin, broker *plugin.GRPCBroker) (*pluginServer, error) {
	d, v, err := describe(p)
	if err != nil {
		return nil, err
	}
	return &pluginServer{impl: p, broker: broker, desc: d, val: v}, nil
}

// recovered turns a panic in the author's code into an internal error, so
// one poison message is answered (and dead-lettered by the hub) instead of
// taking down the process and every request in flight with it.
func (s *pluginServer) recovered(op string, r any) *pluginv1.Error {
	slog.Error("plugin panicked", "plugin", s.desc.Name, "op", op, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	return &pluginv1.Error{Code: CodeInternal, Message: fmt.Sprintf("plugin %s panicked in %s: %v", s.desc.Name, op, r)}
}

func (s *pluginServer) Describe(context.Context, *pluginv1.DescribeRequest) (*pluginv1.Descriptor, error) {
	return toDescriptor(s.desc), nil
}

func (s *pluginServer) Configure(ctx context.Context, req *pluginv1.ConfigureRequest) (resp *pluginv1.ConfigureResponse, _ error) {
	defer func() {
		if r := recover(); r != nil {
			resp = &pluginv1.ConfigureResponse{Error: s.recovered("Configure", r)}
		}
	}()
	config := normalConfig(req.GetConfig())
	// Checked here too, not only by the hub: a plugin trusts nothing it did
	// not check itself.
	if err := s.val.CheckConfig(config); err != nil {
		return &pluginv1.ConfigureResponse{Error: toWireError(err)}, nil
	}
	// The plugin reads its defaults from its schema, never from its code.
	config, err := s.val.withDefaults(config)
	if err != nil {
		return &pluginv1.ConfigureResponse{Error: toWireError(err)}, nil
	}
	var hub Hub = noHub{}
	var conn *grpc.ClientConn
	if id := req.GetHubBrokerId(); id != 0 {
		if conn, err = s.broker.Dial(id); err != nil {
			return &pluginv1.ConfigureResponse{Error: &pluginv1.Error{Code: CodeUnavailable, Retryable: true,
				Message: fmt.Sprintf("plugin %s cannot reach the hub: %v", s.desc.Name, err)}}, nil
		}
		hub = &hubClient{rpc: pluginv1.NewHubClient(conn), val: s.val}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.impl.Configure(ctx, config, hub); err != nil {
		if conn != nil {
			_ = conn.Close()
		}
		e := AsError(err)
		if e.Code == CodeInternal && e.cause != nil {
			// A plain error from Configure is the plugin refusing the
			// configuration, which is what the operator must hear.
			e = &Error{Code: CodeConfigInvalid, Message: err.Error()}
		}
		return &pluginv1.ConfigureResponse{Error: toWireError(e)}, nil
	}
	old := s.hubConn
	s.hubConn, s.configured = conn, true
	if old != nil {
		_ = old.Close()
	}
	return &pluginv1.ConfigureResponse{}, nil
}

func (s *pluginServer) Handle(ctx context.Context, e *pluginv1.Envelope) (resp *pluginv1.HandleResponse, _ error) {
	defer func() {
		if r := recover(); r != nil {
			resp = &pluginv1.HandleResponse{Error: s.recovered("Handle", r)}
		}
	}()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.configured {
		return &pluginv1.HandleResponse{Error: &pluginv1.Error{Code: CodeNotConfigured, Retryable: true,
			Message: fmt.Sprintf("plugin %s has no configuration yet", s.desc.Name)}}, nil
	}
	m := fromEnvelope(e)
	if err := s.val.CheckHandled(m); err != nil {
		return &pluginv1.HandleResponse{Error: toWireError(err)}, nil
	}
	ctx = withCorrelation(ctx, m)
	replies, err := s.impl.Handle(ctx, m)
	if err != nil {
		return &pluginv1.HandleResponse{Error: toWireError(err)}, nil
	}
	for i := range replies {
		s.val.fill(ctx, &replies[i])
		if err := s.val.CheckSent(replies[i]); err != nil {
			return &pluginv1.HandleResponse{Error: toWireError(inBatch(err, "reply", i))}, nil
		}
	}
	return &pluginv1.HandleResponse{Replies: toEnvelopes(replies)}, nil
}

func (s *pluginServer) Health(ctx context.Context, _ *pluginv1.HealthRequest) (resp *pluginv1.HealthResponse, _ error) {
	defer func() {
		if r := recover(); r != nil {
			resp = &pluginv1.HealthResponse{Status: pluginv1.HealthResponse_STATUS_NOT_SERVING, Message: s.recovered("Health", r).Message}
		}
	}()
	s.mu.RLock()
	configured := s.configured
	s.mu.RUnlock()
	if !configured {
		return &pluginv1.HealthResponse{Status: pluginv1.HealthResponse_STATUS_NOT_SERVING, Message: "not configured"}, nil
	}
	if hc, ok := s.impl.(HealthChecker); ok {
		if err := hc.Health(ctx); err != nil {
			return &pluginv1.HealthResponse{Status: pluginv1.HealthResponse_STATUS_NOT_SERVING, Message: err.Error()}, nil
		}
	}
	return &pluginv1.HealthResponse{Status: pluginv1.HealthResponse_STATUS_SERVING}, nil
}

func (s *pluginServer) Stop(ctx context.Context, _ *pluginv1.StopRequest) (resp *pluginv1.StopResponse, _ error) {
	defer func() {
		if r := recover(); r != nil {
			resp = &pluginv1.StopResponse{Error: s.recovered("Stop", r)}
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.impl.Stop(ctx)
	if s.hubConn != nil {
		_ = s.hubConn.Close()
		s.hubConn = nil
	}
	s.configured = false
	return &pluginv1.StopResponse{Error: toWireError(err)}, nil
}

// fill completes a message the plugin sends with what the sdk knows better
// than the author: a fresh id, the plugin's name, the declared schema id,
// the correlation id of the message being handled (or its own id, starting
// a new story) and the time.
func (v *validator) fill(ctx context.Context, m *Message) {
	if m.ID == "" {
		m.ID = NewID()
	}
	if m.Source == "" {
		m.Source = v.desc.Name
	}
	if m.SchemaID == "" {
		if ps, ok := v.sends[m.Type]; ok {
			m.SchemaID = ps.id
		}
	}
	if m.CorrelationID == "" {
		m.CorrelationID = CorrelationID(ctx)
		if m.CorrelationID == "" {
			m.CorrelationID = m.ID
		}
	}
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now().UTC()
	}
}

// inBatch says which message of several an error is about, keeping Field a
// pointer into the list ("/3/payload/card").
func inBatch(err error, what string, i int) *Error {
	e := AsError(err)
	return &Error{Code: e.Code, Retryable: e.Retryable, Field: fmt.Sprintf("/%d%s", i, e.Field),
		Message: fmt.Sprintf("%s %d: %s", what, i, e.Message), cause: e.cause}
}

// hubClient is the plugin's Hub: it validates, then calls the hub over the
// broker connection.
type hubClient struct {
	rpc pluginv1.HubClient
	val *validator
}

func (h *hubClient) Submit(ctx context.Context, m Message) (Result, error) {
	h.val.fill(ctx, &m)
	if err := h.val.CheckSent(m); err != nil {
		return Result{}, err
	}
	resp, err := h.rpc.Submit(ctx, toEnvelope(m))
	if err != nil {
		return Result{}, transportError(ctx, "submit "+m.Type, err)
	}
	if err := fromWireError(resp.GetError()); err != nil {
		return Result{}, err
	}
	return fromResult(resp.GetResult()), nil
}

func (h *hubClient) SubmitBatch(ctx context.Context, ms []Message) ([]Result, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	if len(ms) > MaxBatch {
		return nil, Errorf(CodeInvalidRequest, "a batch holds at most %d messages, not %d", MaxBatch, len(ms))
	}
	batch := &pluginv1.Batch{Messages: make([]*pluginv1.Envelope, len(ms))}
	for i := range ms {
		m := ms[i] // the caller's slice is left as it was
		h.val.fill(ctx, &m)
		if err := h.val.CheckSent(m); err != nil {
			return nil, inBatch(err, "message", i)
		}
		batch.Messages[i] = toEnvelope(m)
	}
	resp, err := h.rpc.SubmitBatch(ctx, batch)
	if err != nil {
		return nil, transportError(ctx, "submit batch", err)
	}
	if err := fromWireError(resp.GetError()); err != nil {
		return nil, err
	}
	return fromSubmitResponses(resp.GetResults(), len(ms))
}

func (h *hubClient) Query(ctx context.Context, kind, key string) (json.RawMessage, error) {
	resp, err := h.rpc.Query(ctx, &pluginv1.QueryRequest{Kind: kind, Key: key})
	if err != nil {
		return nil, transportError(ctx, "query "+kind, err)
	}
	if err := fromWireError(resp.GetError()); err != nil {
		return nil, err
	}
	return resp.GetBody(), nil
}

func fromSubmitResponses(rs []*pluginv1.SubmitResponse, want int) ([]Result, error) {
	if len(rs) != want {
		return nil, Errorf(CodeInternal, "the hub answered %d results for %d messages", len(rs), want)
	}
	out := make([]Result, len(rs))
	for i, r := range rs {
		out[i] = fromResult(r.GetResult())
		out[i].Error = wireError(r.GetError())
	}
	return out, nil
}

// noHub is the Hub of a plugin configured without one (as the conformance
// kit may do); it fails plainly rather than leaving the plugin a nil.
type noHub struct{}

var errNoHub = &Error{Code: CodeUnavailable, Message: "this plugin was configured without a hub connection"}

func (noHub) Submit(context.Context, Message) (Result, error)                { return Result{}, errNoHub }
func (noHub) SubmitBatch(context.Context, []Message) ([]Result, error)       { return nil, errNoHub }
func (noHub) Query(context.Context, string, string) (json.RawMessage, error) { return nil, errNoHub }
