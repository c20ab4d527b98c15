package sdk

import (
	"context"
	"encoding/json"

	"github.com/hashicorp/go-plugin"

	"github.com/citycard/citycard/internal/pluginwire/sdklink"
	pluginv1 "github.com/citycard/citycard/sdk/proto/citycard/plugin/v1"
)

// The hub, sdk/plugintest and the conformance kit speak the protocol with
// this package's own code rather than a copy of it, reached through
// internal/pluginwire: one implementation, so the two ends cannot drift.
func init() { sdklink.Internals = internals{} }

// internals hands the protocol code to internal/pluginwire. Its methods are
// exported only so that pluginwire's interface can name them; the type is
// not, so plugin authors never see them.
type internals struct{}

func (internals) Handshake() plugin.HandshakeConfig { return handshake }
func (internals) PluginName() string                { return pluginName }
func (internals) MaxMessageSize() int               { return maxMessageSize }

// NewValidator returns a *validator, which pluginwire asserts to its own
// Validator interface: pluginwire cannot name the type.
func (internals) NewValidator(d Descriptor) (any, error) {
	v, err := newValidator(d)
	if err != nil {
		return nil, err
	}
	return v, nil
}

func (internals) NewPluginServer(p Plugin, broker *plugin.GRPCBroker) (pluginv1.PluginServer, error) {
	return newPluginServer(p, broker)
}

func (internals) ToEnvelope(m Message) *pluginv1.Envelope          { return toEnvelope(m) }
func (internals) FromEnvelope(e *pluginv1.Envelope) Message        { return fromEnvelope(e) }
func (internals) FromEnvelopes(es []*pluginv1.Envelope) []Message  { return fromEnvelopes(es) }
func (internals) ToWireError(err error) *pluginv1.Error            { return toWireError(err) }
func (internals) FromWireError(e *pluginv1.Error) *Error           { return wireError(e) }
func (internals) ToResult(r Result) *pluginv1.Result               { return toResult(r) }
func (internals) FromDescriptor(p *pluginv1.Descriptor) Descriptor { return fromDescriptor(p) }
func (internals) NormalConfig(c json.RawMessage) json.RawMessage   { return normalConfig(c) }
func (internals) InBatch(err error, what string, i int) *Error     { return inBatch(err, what, i) }
func (internals) TransportError(ctx context.Context, op string, err error) *Error {
	return transportError(ctx, op, err)
}

// FillHubMessage completes a message the hub sends, so callers set only
// what matters: type, payload and, for writes, the idempotency key.
func (v *validator) FillHubMessage(m *Message) {
	if m.Source == "" {
		m.Source = HubSource
	}
	if m.SchemaID == "" {
		if ps, ok := v.handles[m.Type]; ok {
			m.SchemaID = ps.id
		}
	}
	v.fill(context.Background(), m)
}
