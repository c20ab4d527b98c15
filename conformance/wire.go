package conformance

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/citycard/citycard/sdk"
	pluginv1 "github.com/citycard/citycard/sdk/proto/citycard/plugin/v1"
)

// The kit speaks protocol v1 itself rather than through sdk.Client, which
// refuses to send an invalid message and to pass on an invalid answer: the
// kit must do both to see what the plugin does with them.

func toEnvelope(m sdk.Message) *pluginv1.Envelope {
	e := &pluginv1.Envelope{
		Id:             m.ID,
		Type:           m.Type,
		SchemaId:       m.SchemaID,
		CorrelationId:  m.CorrelationID,
		IdempotencyKey: m.IdempotencyKey,
		Source:         m.Source,
		Payload:        m.Payload,
		Metadata:       m.Metadata,
	}
	if !m.CreatedAt.IsZero() {
		e.CreatedAt = timestamppb.New(m.CreatedAt)
	}
	return e
}

func fromEnvelope(e *pluginv1.Envelope) sdk.Message {
	m := sdk.Message{
		ID:             e.GetId(),
		Type:           e.GetType(),
		SchemaID:       e.GetSchemaId(),
		CorrelationID:  e.GetCorrelationId(),
		IdempotencyKey: e.GetIdempotencyKey(),
		Source:         e.GetSource(),
		Payload:        e.GetPayload(),
		Metadata:       e.GetMetadata(),
	}
	if ts := e.GetCreatedAt(); ts != nil {
		m.CreatedAt = ts.AsTime().UTC()
	}
	return m
}

func fromEnvelopes(es []*pluginv1.Envelope) []sdk.Message {
	out := make([]sdk.Message, len(es))
	for i, e := range es {
		out[i] = fromEnvelope(e)
	}
	return out
}

// fromWireError returns nil for nil; an error without a code is internal,
// as the sdk reads it.
func fromWireError(e *pluginv1.Error) *sdk.Error {
	if e == nil {
		return nil
	}
	code := e.GetCode()
	if code == "" {
		code = sdk.CodeInternal
	}
	return &sdk.Error{Code: code, Message: e.GetMessage(), Field: e.GetField(), Retryable: e.GetRetryable()}
}

func toWireError(err error) *pluginv1.Error {
	e := sdk.AsError(err)
	if e == nil {
		return nil
	}
	return &pluginv1.Error{Code: e.Code, Message: e.Message, Field: e.Field, Retryable: e.Retryable}
}

func fromDescriptor(p *pluginv1.Descriptor) sdk.Descriptor {
	types := func(ps []*pluginv1.MessageType) []sdk.MessageType {
		if len(ps) == 0 {
			return nil
		}
		out := make([]sdk.MessageType, len(ps))
		for i, p := range ps {
			out[i] = sdk.MessageType{Type: p.GetType(), SchemaID: p.GetSchemaId(), Schema: p.GetSchema()}
		}
		return out
	}
	return sdk.Descriptor{
		Name:             p.GetName(),
		Version:          p.GetVersion(),
		ProtocolVersions: p.GetProtocolVersions(),
		Sends:            types(p.GetSends()),
		Handles:          types(p.GetHandles()),
		ConfigSchema:     p.GetConfigSchema(),
		Capabilities:     p.GetCapabilities(),
	}
}
