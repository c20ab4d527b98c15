package sdk

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Message is one message between the hub and a plugin. Its JSON form is
// the envelope described by schemas/message-envelope.json.
type Message struct {
	// ID is unique per message. The sdk fills it on messages a plugin sends.
	ID string `json:"id"`
	// Type is the versioned message type, e.g. "transit.tap.v1".
	Type string `json:"type"`
	// SchemaID identifies the payload's schema. The sdk fills it from the
	// plugin's Descriptor on messages a plugin sends.
	SchemaID string `json:"schema_id"`
	// CorrelationID ties together every message caused by one original
	// request. On messages a plugin sends while handling another, the sdk
	// copies it from the message being handled.
	CorrelationID string `json:"correlation_id,omitempty"`
	// IdempotencyKey makes a resend harmless: the hub applies a key once
	// and answers repeats with the first answer. Derive it from something
	// stable in your domain (terminal id and sequence number), never from
	// the time or a random number, so that a retry after a crash repeats it.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// Source is the sending plugin's name, or "hub". The sdk stamps it on
	// messages a plugin sends.
	Source string `json:"source"`
	// CreatedAt is when the message was made. The sdk fills it when zero.
	CreatedAt time.Time `json:"created_at"`
	// Payload is the body: one JSON object valid against SchemaID.
	Payload json.RawMessage `json:"payload"`
	// Metadata carries small string annotations (trace ids, terminal ids)
	// that routing and logs may use without decoding the payload.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// HubSource is the Source of messages the hub itself sends to plugins.
const HubSource = "hub"

// NewID returns a fresh message id. Ids are UUIDv7, so they sort by time
// in logs and indexes.
func NewID() string {
	id, err := uuid.NewV7()
	if err != nil {
		// Only a failing system random source gets here; v4 needs it too,
		// so there is no better fallback than to stop.
		panic("sdk: cannot make a message id: " + err.Error())
	}
	return id.String()
}

type correlationKey struct{}

// CorrelationID returns the correlation id of the message being handled,
// carried in ctx by the sdk, so a plugin can put it in its own logs. It is
// "" outside Handle.
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationKey{}).(string)
	return id
}

// withCorrelation makes messages sent while handling m part of m's story.
func withCorrelation(ctx context.Context, m Message) context.Context {
	id := m.CorrelationID
	if id == "" {
		id = m.ID
	}
	return context.WithValue(ctx, correlationKey{}, id)
}
