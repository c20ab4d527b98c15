package sdk

import (
	"context"
	"encoding/json"
)

// ProtocolVersion is the major version of the plugin protocol this sdk
// speaks. It is both go-plugin's handshake version and the version a
// plugin lists in its Descriptor.
const ProtocolVersion = 1

// Plugin is the one interface a plugin author implements. The hub calls
// Describe, then Configure, then Handle many times (concurrently, but never
// while Configure runs), and Stop once before ending the process.
type Plugin interface {
	// Describe says what the plugin is and speaks. It must not depend on
	// configuration: the hub reads it before configuring the plugin.
	Describe() Descriptor
	// Configure receives the plugin's configuration, already validated
	// against Descriptor.ConfigSchema and with every "default" the schema
	// gives filled in where the configuration leaves it out, and the Hub to
	// submit messages to.
	// It may be called again to reconfigure a running plugin. An error
	// refuses the configuration; the hub reports it to the operator.
	Configure(ctx context.Context, config json.RawMessage, hub Hub) error
	// Handle processes one message from the hub, already validated against
	// the schema of its type in Descriptor.Handles. Replies must be of types
	// in Descriptor.Sends; the sdk fills their ids, source, schema id,
	// correlation id and time, and validates them before they leave.
	// Return a *Error to give the hub a stable code.
	Handle(ctx context.Context, m Message) ([]Message, error)
	// Stop finishes in-flight work and releases resources. It is called
	// once, even if no Configure succeeded, and the process is ended
	// shortly after it returns.
	Stop(ctx context.Context) error
}

// HealthChecker is implemented by plugins that can tell whether they are
// able to work now (for example, whether their partner's host answers).
// The hub polls it; a plugin without it is healthy whenever it is
// configured.
type HealthChecker interface {
	// Health returns nil when the plugin can serve, or why it cannot.
	Health(ctx context.Context) error
}

// Descriptor is a plugin's self-description: who it is, what it sends and
// handles, and what configuration it takes. The hub and the conformance
// kit check every message and configuration against it.
type Descriptor struct {
	// Name identifies the plugin and is stamped as Source on every message
	// it sends: lower case, digits and single dashes, e.g. "parking".
	Name string `json:"name,omitempty"`
	// Version is the plugin's semantic version, e.g. "1.2.0".
	Version string `json:"version,omitempty"`
	// ProtocolVersions lists the protocol versions spoken; the sdk fills it,
	// so plugins leave it empty.
	ProtocolVersions []uint32 `json:"protocol_versions,omitempty"`
	// Sends lists the message types the plugin submits or replies with.
	Sends []MessageType `json:"sends,omitempty"`
	// Handles lists the message types the plugin accepts in Handle.
	Handles []MessageType `json:"handles,omitempty"`
	// ConfigSchema is the JSON Schema (2020-12) of the configuration.
	// Without one, the plugin accepts only an empty configuration.
	ConfigSchema json.RawMessage `json:"config_schema,omitempty"`
	// Capabilities names optional features the plugin claims; the
	// conformance kit skips the checks of features not claimed.
	Capabilities []string `json:"capabilities,omitempty"`
}

// MessageType names one kind of message and the schema of its payload.
type MessageType struct {
	// Type is the versioned type name, e.g. "transit.tap.v1".
	Type string `json:"type"`
	// SchemaID identifies the payload's JSON Schema. With Schema set, it is
	// that schema's absolute URI (and must match its $id, if it has one).
	// Without, it names a schema the hub ships in package schemas, by file
	// stem ("card-product") or by URI (schemas.BaseURL + "card-product.json").
	SchemaID string `json:"schema_id"`
	// Schema optionally carries the payload's JSON Schema (2020-12), so a
	// partner can define message types the hub has never seen. It may $ref
	// the hub's own schemas by their URIs.
	Schema json.RawMessage `json:"schema,omitempty"`
}

// Hub is the plugin's view of the hub, given to Configure. Every message is
// validated by the sdk before it leaves the plugin's process; an invalid one
// fails with a *Error of code CodeSchemaInvalid and is never sent.
type Hub interface {
	// Submit hands one message to the hub and returns its answer.
	Submit(ctx context.Context, m Message) (Result, error)
	// SubmitBatch hands up to MaxBatch messages to the hub in one call. The
	// error is for the batch as a whole (nothing was applied); a message
	// the hub refused on its own has Result.Error set.
	SubmitBatch(ctx context.Context, ms []Message) ([]Result, error)
	// Query reads hub state, e.g. Query(ctx, QueryCardStatus, cardNumber).
	Query(ctx context.Context, kind, key string) (json.RawMessage, error)
}

// MaxBatch is the most messages one SubmitBatch call may carry: enough to
// amortise a call's cost, small enough to keep one call well under gRPC's
// message size limits.
const MaxBatch = 1000

// Query kinds the hub answers. Others may be added; a hub that does not
// know a kind answers with a *Error of code "not_found".
const (
	// QueryCardStatus reads a card's status; the key is the card number.
	QueryCardStatus = "card_status"
	// QueryDenylistVersion reads the current deny-list version; no key.
	QueryDenylistVersion = "denylist_version"
)

// Result is the hub's answer to one submitted message.
type Result struct {
	// MessageID is the id of the message answered.
	MessageID string `json:"message_id"`
	// Body is the answer, a JSON object whose shape depends on the type.
	Body json.RawMessage `json:"body,omitempty"`
	// Duplicate is true when the hub had already applied a message with the
	// same idempotency key; Body is then the earlier answer.
	Duplicate bool `json:"duplicate,omitempty"`
	// Error is set, in SubmitBatch results only, when the hub refused this
	// message; Submit returns such a refusal as its error instead.
	Error *Error `json:"error,omitempty"`
}
