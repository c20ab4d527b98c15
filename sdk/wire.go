package sdk

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	pluginv1 "github.com/citycard/citycard/sdk/proto/citycard/plugin/v1"
)

// The conversions between the Go API and protocol v1 live here, so the rest
// of the package never touches generated types more than it must.

func toEnvelope(m Message) *pluginv1.Envelope {
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

func fromEnvelope(e *pluginv1.Envelope) Message {
	m := Message{
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
		// UTC and no monotonic reading: what was sent is what compares equal.
		m.CreatedAt = ts.AsTime().UTC()
	}
	return m
}

func toEnvelopes(ms []Message) []*pluginv1.Envelope {
	out := make([]*pluginv1.Envelope, len(ms))
	for i, m := range ms {
		out[i] = toEnvelope(m)
	}
	return out
}

func fromEnvelopes(es []*pluginv1.Envelope) []Message {
	if len(es) == 0 {
		return nil
	}
	out := make([]Message, len(es))
	for i, e := range es {
		out[i] = fromEnvelope(e)
	}
	return out
}

func toWireError(err error) *pluginv1.Error {
	e := AsError(err)
	if e == nil {
		return nil
	}
	return &pluginv1.Error{Code: e.Code, Message: e.Message, Field: e.Field, Retryable: e.Retryable}
}

// fromWireError returns nil for a nil *pluginv1.Error, so that the result
// can be returned as an error without becoming a non-nil interface.
func fromWireError(e *pluginv1.Error) error {
	if e == nil {
		return nil
	}
	return wireError(e)
}

func wireError(e *pluginv1.Error) *Error {
	if e == nil {
		return nil
	}
	code := e.GetCode()
	if code == "" {
		// A peer that set an error must say what kind; guessing retryable
		// could double a payment, so it is internal.
		code = CodeInternal
	}
	return &Error{Code: code, Message: e.GetMessage(), Field: e.GetField(), Retryable: e.GetRetryable()}
}

func toResult(r Result) *pluginv1.Result {
	return &pluginv1.Result{MessageId: r.MessageID, Body: r.Body, Duplicate: r.Duplicate}
}

func fromResult(r *pluginv1.Result) Result {
	return Result{MessageID: r.GetMessageId(), Body: r.GetBody(), Duplicate: r.GetDuplicate()}
}

func toDescriptor(d Descriptor) *pluginv1.Descriptor {
	return &pluginv1.Descriptor{
		Name:             d.Name,
		Version:          d.Version,
		ProtocolVersions: d.ProtocolVersions,
		Sends:            toMessageTypes(d.Sends),
		Handles:          toMessageTypes(d.Handles),
		ConfigSchema:     d.ConfigSchema,
		Capabilities:     d.Capabilities,
	}
}

func fromDescriptor(p *pluginv1.Descriptor) Descriptor {
	return Descriptor{
		Name:             p.GetName(),
		Version:          p.GetVersion(),
		ProtocolVersions: p.GetProtocolVersions(),
		Sends:            fromMessageTypes(p.GetSends()),
		Handles:          fromMessageTypes(p.GetHandles()),
		ConfigSchema:     p.GetConfigSchema(),
		Capabilities:     p.GetCapabilities(),
	}
}

func toMessageTypes(mts []MessageType) []*pluginv1.MessageType {
	out := make([]*pluginv1.MessageType, len(mts))
	for i, mt := range mts {
		out[i] = &pluginv1.MessageType{Type: mt.Type, SchemaId: mt.SchemaID, Schema: mt.Schema}
	}
	return out
}

func fromMessageTypes(ps []*pluginv1.MessageType) []MessageType {
	if len(ps) == 0 {
		return nil
	}
	out := make([]MessageType, len(ps))
	for i, p := range ps {
		out[i] = MessageType{Type: p.GetType(), SchemaID: p.GetSchemaId(), Schema: p.GetSchema()}
	}
	return out
}
