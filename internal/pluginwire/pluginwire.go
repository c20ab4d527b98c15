// Package pluginwire is the hub's end of the plugin protocol: launching a
// plugin binary (ClientConfig, Dispense), the Client that calls it and
// serves the hub back to it, and the protocol's wire code and validation,
// which it takes from package sdk through internal/pluginwire/sdklink so
// that both ends run the very same code.
//
// It is shared by hub/internal/pluginhost, sdk/plugintest and the
// conformance kit, and so sits in the module root's internal folder: the
// only place Go's internal rule lets all three import it while plugin
// authors, who need none of it, cannot. Package sdk keeps only what a
// plugin author uses.
package pluginwire

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/citycard/citycard/internal/pluginwire/sdklink"
	"github.com/citycard/citycard/sdk"
	pluginv1 "github.com/citycard/citycard/sdk/proto/citycard/plugin/v1"
)

// sdkInternals is what package sdk lends through sdklink; see sdk/link.go.
type sdkInternals interface {
	Handshake() plugin.HandshakeConfig
	PluginName() string
	MaxMessageSize() int
	NewValidator(d sdk.Descriptor) (any, error)
	NewPluginServer(p sdk.Plugin, broker *plugin.GRPCBroker) (pluginv1.PluginServer, error)
	ToEnvelope(m sdk.Message) *pluginv1.Envelope
	FromEnvelope(e *pluginv1.Envelope) sdk.Message
	FromEnvelopes(es []*pluginv1.Envelope) []sdk.Message
	ToWireError(err error) *pluginv1.Error
	FromWireError(e *pluginv1.Error) *sdk.Error
	ToResult(r sdk.Result) *pluginv1.Result
	FromDescriptor(p *pluginv1.Descriptor) sdk.Descriptor
	NormalConfig(c json.RawMessage) json.RawMessage
	InBatch(err error, what string, i int) *sdk.Error
	TransportError(ctx context.Context, op string, err error) *sdk.Error
}

// wire is package sdk's protocol code. Importing sdk guarantees its init,
// which sets sdklink.Internals, has run before this variable is set.
var wire = sdklink.Internals.(sdkInternals)

// Handshake returns the go-plugin handshake of protocol v1: a copy, so a
// caller that changes it (the kit offers wrong ones on purpose) changes
// nobody else's.
func Handshake() plugin.HandshakeConfig { return wire.Handshake() }

// PluginName returns the name under which a plugin process serves its one
// plugin in go-plugin's plugin set.
func PluginName() string { return wire.PluginName() }

// MaxMessageSize bounds one gRPC message in either direction.
func MaxMessageSize() int { return wire.MaxMessageSize() }

// PluginMap returns the plugin set the hub passes as
// plugin.ClientConfig.Plugins; dispensing PluginName from it yields a
// *Client. Each call makes a new one, so nobody can change another's.
func PluginMap() map[string]plugin.Plugin {
	return map[string]plugin.Plugin{PluginName(): &GRPCPlugin{}}
}

// GRPCPlugin joins package sdk to go-plugin on both ends: in a plugin
// process it serves Impl with the sdk's own server; on the hub's side it
// makes a *Client. plugintest needs both in one process.
type GRPCPlugin struct {
	// go-plugin's net/rpc transport is refused: protocol v1 is gRPC only.
	plugin.NetRPCUnsupportedPlugin
	// Impl is the plugin being served; nil on the hub's side.
	Impl sdk.Plugin
}

// GRPCServer registers Impl with the plugin process's gRPC server. It fails
// if Impl's Descriptor is invalid, so a broken plugin never starts.
func (p *GRPCPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	srv, err := wire.NewPluginServer(p.Impl, broker)
	if err != nil {
		return err
	}
	pluginv1.RegisterPluginServer(s, srv)
	return nil
}

// GRPCClient returns the hub's *Client for a plugin connection.
func (p *GRPCPlugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &Client{rpc: pluginv1.NewPluginClient(c), broker: broker}, nil
}

// Validator checks messages and configuration against one plugin's
// Descriptor, with the same code the sdk runs in the plugin's process. It
// is safe for concurrent use.
type Validator interface {
	// Descriptor returns the descriptor the validator was built from.
	Descriptor() sdk.Descriptor
	// CheckSent checks a message the plugin sends; it fails with a
	// *sdk.Error of code sdk.CodeSchemaInvalid whose Field points into the
	// envelope, e.g. "/payload/card".
	CheckSent(m sdk.Message) error
	// CheckHandled checks a message delivered to the plugin: an undeclared
	// type fails with sdk.CodeUnsupportedMessage, a bad one with
	// sdk.CodeSchemaInvalid.
	CheckHandled(m sdk.Message) error
	// CheckConfig checks a configuration against the ConfigSchema; an empty
	// or null one is checked as {}. It fails with sdk.CodeConfigInvalid.
	CheckConfig(config json.RawMessage) error
	// FillHubMessage completes a message the hub sends: a fresh id, Source
	// "hub", the declared schema id, the correlation id and the time.
	FillHubMessage(m *sdk.Message)
}

// NewValidator checks d and compiles every schema it names or carries. It
// fails with a *sdk.Error of code sdk.CodeDescriptorInvalid saying what is
// wrong.
func NewValidator(d sdk.Descriptor) (Validator, error) {
	v, err := wire.NewValidator(d)
	if err != nil {
		return nil, err
	}
	return v.(Validator), nil
}

// ToEnvelope converts a message to protocol v1.
func ToEnvelope(m sdk.Message) *pluginv1.Envelope { return wire.ToEnvelope(m) }

// FromEnvelope converts a protocol v1 envelope to a message; its time is
// UTC with no monotonic reading, so what was sent compares equal.
func FromEnvelope(e *pluginv1.Envelope) sdk.Message { return wire.FromEnvelope(e) }

// FromEnvelopes converts a list of envelopes; none gives nil.
func FromEnvelopes(es []*pluginv1.Envelope) []sdk.Message { return wire.FromEnvelopes(es) }

// ToWireError converts any error as sdk.AsError does; nil gives nil.
func ToWireError(err error) *pluginv1.Error { return wire.ToWireError(err) }

// FromWireError converts a protocol v1 error; nil gives nil, and one
// without a code is sdk.CodeInternal, since guessing retryable could double
// a payment.
func FromWireError(e *pluginv1.Error) *sdk.Error { return wire.FromWireError(e) }

// fromWireError is FromWireError as an error that is nil for nil, never a
// non-nil interface holding a nil *sdk.Error.
func fromWireError(e *pluginv1.Error) error {
	if e == nil {
		return nil
	}
	return wire.FromWireError(e)
}

// FromDescriptor converts a protocol v1 descriptor.
func FromDescriptor(p *pluginv1.Descriptor) sdk.Descriptor { return wire.FromDescriptor(p) }

// HubService is one Hub service served to a plugin through go-plugin's
// broker. It can be stopped before go-plugin has created its server, hence
// the bookkeeping.
type HubService struct {
	mu      sync.Mutex
	srv     *grpc.Server
	stopped bool
}

// ServeHub serves hub to the plugin under a new broker id, which goes in
// the ConfigureRequest, and returns the id and the service.
func ServeHub(broker *plugin.GRPCBroker, hub pluginv1.HubServer) (uint32, *HubService) {
	id := broker.NextId()
	svc := &HubService{}
	go broker.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(MaxMessageSize()))...)
		pluginv1.RegisterHubServer(s, hub)
		svc.started(s)
		return s
	})
	return id, svc
}

func (h *HubService) started(s *grpc.Server) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.srv = s
	if h.stopped {
		s.Stop()
	}
}

// Stop ends the service gracefully: a submission in flight is answered,
// not cut off, as the hub owes the plugin its answer.
func (h *HubService) Stop() { h.end(false) }

// Abort ends the service at once, cutting off calls in flight. The kit
// uses it: it has judged the calls already, and a plugin's call held by
// its slow hub must not hold up the next check.
func (h *HubService) Abort() { h.end(true) }

func (h *HubService) end(abort bool) {
	h.mu.Lock()
	s := h.srv
	h.stopped = true
	h.mu.Unlock()
	switch {
	case s == nil:
	case abort:
		s.Stop()
	default:
		s.GracefulStop()
	}
}
