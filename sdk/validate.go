package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v5"

	"github.com/citycard/citycard/schemas"
)

// Schemas of package schemas this package relies on.
const (
	envelopeSchema   = "message-envelope"
	descriptorSchema = "plugin-descriptor"
)

// validator checks messages and configuration against one plugin's
// Descriptor. Both ends of the protocol use it: the plugin's side checks
// what the plugin sends before it leaves the process, and the hub's side
// (internal/pluginwire, which gets it through internal/pluginwire/sdklink)
// checks it again on arrival, since a plugin need not be built with this
// sdk. The conformance kit uses it to judge a plugin's output. It is safe
// for concurrent use.
type validator struct {
	desc    Descriptor
	sends   map[string]*payloadSchema
	handles map[string]*payloadSchema
	config  *jsonschema.Schema // nil: the plugin takes no configuration
}

// newValidator checks d and compiles every schema it names or carries. It
// fails with a *Error of code CodeDescriptorInvalid saying what is wrong.
func newValidator(d Descriptor) (*validator, error) {
	doc, err := json.Marshal(d)
	if err != nil {
		return nil, &Error{Code: CodeDescriptorInvalid, Message: err.Error()}
	}
	if err := schemas.Validate(descriptorSchema, doc); err != nil {
		var ve *schemas.ValidationError
		if errors.As(err, &ve) {
			return nil, violationError(CodeDescriptorInvalid, "descriptor of plugin "+d.Name, "", ve.Violations)
		}
		return nil, &Error{Code: CodeDescriptorInvalid, Message: err.Error()}
	}
	if !slices.Contains(d.ProtocolVersions, ProtocolVersion) {
		return nil, &Error{Code: CodeDescriptorInvalid, Field: "/protocol_versions",
			Message: fmt.Sprintf("plugin %s speaks protocol versions %v; this side speaks %d", d.Name, d.ProtocolVersions, ProtocolVersion)}
	}
	v := &validator{desc: d}
	c := schemaCompiler()
	carried := map[string][]byte{} // schema id → compacted schema, to catch one id with two schemas
	compiled := map[string]*jsonschema.Schema{}
	build := func(list string, mts []MessageType) (map[string]*payloadSchema, error) {
		out := make(map[string]*payloadSchema, len(mts))
		for i, mt := range mts {
			field := fmt.Sprintf("/%s/%d", list, i)
			if _, dup := out[mt.Type]; dup {
				return nil, &Error{Code: CodeDescriptorInvalid, Field: field + "/type",
					Message: fmt.Sprintf("message type %s is listed twice in %s", mt.Type, list)}
			}
			ps := &payloadSchema{id: mt.SchemaID}
			if len(mt.Schema) == 0 {
				ps.embedded = embeddedName(mt.SchemaID)
				if _, err := schemas.Source(ps.embedded); err != nil {
					return nil, &Error{Code: CodeDescriptorInvalid, Field: field + "/schema_id",
						Message: fmt.Sprintf("%s: schema %q is not one of the hub's schemas; carry it in schema", mt.Type, mt.SchemaID)}
				}
				out[mt.Type] = ps
				continue
			}
			var buf bytes.Buffer
			if err := json.Compact(&buf, mt.Schema); err != nil {
				return nil, &Error{Code: CodeDescriptorInvalid, Field: field + "/schema", Message: err.Error()}
			}
			if prev, seen := carried[mt.SchemaID]; seen {
				if !bytes.Equal(prev, buf.Bytes()) {
					return nil, &Error{Code: CodeDescriptorInvalid, Field: field + "/schema",
						Message: fmt.Sprintf("schema id %s is given two different schemas", mt.SchemaID)}
				}
				ps.carried = compiled[mt.SchemaID]
				out[mt.Type] = ps
				continue
			}
			s, err := compileCarried(c, mt.SchemaID, mt.Schema)
			if err != nil {
				return nil, &Error{Code: CodeDescriptorInvalid, Field: field + "/schema", Message: err.Error()}
			}
			carried[mt.SchemaID], compiled[mt.SchemaID], ps.carried = buf.Bytes(), s, s
			out[mt.Type] = ps
		}
		return out, nil
	}
	if v.sends, err = build("sends", d.Sends); err != nil {
		return nil, err
	}
	if v.handles, err = build("handles", d.Handles); err != nil {
		return nil, err
	}
	if len(d.ConfigSchema) > 0 {
		id := "https://citycard.example/plugins/" + d.Name + "/config.json"
		var head struct {
			ID string `json:"$id"`
		}
		if json.Unmarshal(d.ConfigSchema, &head) == nil && head.ID != "" {
			id = head.ID
		}
		if v.config, err = compileCarried(c, id, d.ConfigSchema); err != nil {
			return nil, &Error{Code: CodeDescriptorInvalid, Field: "/config_schema", Message: err.Error()}
		}
	}
	return v, nil
}

// Descriptor returns the descriptor the validator was built from.
func (v *validator) Descriptor() Descriptor { return v.desc }

// CheckSent checks a message the plugin sends: a well-formed envelope, the
// plugin's own name as Source, a type declared in Descriptor.Sends with its
// schema id, and a payload valid against that schema. It fails with a
// *Error of code CodeSchemaInvalid whose Field is a JSON pointer into the
// envelope, e.g. "/payload/card".
func (v *validator) CheckSent(m Message) error {
	if m.Source != "" && m.Source != v.desc.Name {
		return &Error{Code: CodeSchemaInvalid, Field: "/source",
			Message: fmt.Sprintf("source is %q; plugin %s may only send as itself", m.Source, v.desc.Name)}
	}
	ps, ok := v.sends[m.Type]
	if !ok && m.Type != "" {
		return &Error{Code: CodeSchemaInvalid, Field: "/type",
			Message: fmt.Sprintf("plugin %s does not declare message type %s in Descriptor.Sends", v.desc.Name, m.Type)}
	}
	return check(m, ps, CodeSchemaInvalid)
}

// CheckHandled checks a message delivered to the plugin: a well-formed
// envelope, a type declared in Descriptor.Handles (else CodeUnsupportedMessageType)
// with its schema id, and a payload valid against that schema (else
// CodeSchemaInvalid).
func (v *validator) CheckHandled(m Message) error {
	ps, ok := v.handles[m.Type]
	if !ok && m.Type != "" {
		return &Error{Code: CodeUnsupportedMessageType, Field: "/type",
			Message: fmt.Sprintf("plugin %s does not handle message type %s", v.desc.Name, m.Type)}
	}
	return check(m, ps, CodeSchemaInvalid)
}

// CheckConfig checks a configuration against Descriptor.ConfigSchema; an
// empty or null configuration is checked as {}. It fails with a *Error of
// code CodeConfigInvalid whose Field points into the configuration.
func (v *validator) CheckConfig(config json.RawMessage) error {
	config = normalConfig(config)
	if v.config == nil {
		if !bytes.Equal(config, emptyObject) {
			return &Error{Code: CodeConfigInvalid,
				Message: fmt.Sprintf("plugin %s takes no configuration (its Descriptor has no ConfigSchema)", v.desc.Name)}
		}
		return nil
	}
	doc, err := decodeJSON(config)
	if err != nil {
		return &Error{Code: CodeConfigInvalid, Message: "configuration of plugin " + v.desc.Name + ": " + err.Error()}
	}
	if vs := violations(v.config.Validate(doc)); len(vs) > 0 {
		return violationError(CodeConfigInvalid, "configuration of plugin "+v.desc.Name, "", vs)
	}
	return nil
}

var emptyObject = []byte("{}")

// normalConfig makes "no configuration" one thing, {}, whatever the hub's
// config file said.
func normalConfig(config json.RawMessage) json.RawMessage {
	t := bytes.TrimSpace(config)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) || bytes.Equal(t, emptyObject) {
		return emptyObject
	}
	return config
}

// envelope is Message as the envelope schema sees it: empty fields are
// left out so that they fail as "required" rather than as empty strings,
// and the payload stands in as {} because it is checked on its own.
type envelope struct {
	ID             string            `json:"id,omitempty"`
	Type           string            `json:"type,omitempty"`
	SchemaID       string            `json:"schema_id,omitempty"`
	CorrelationID  string            `json:"correlation_id,omitempty"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	Source         string            `json:"source,omitempty"`
	CreatedAt      string            `json:"created_at,omitempty"`
	Payload        json.RawMessage   `json:"payload,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
}

// check validates m's envelope and, when its type is known (ps != nil),
// its schema id and payload; every violation found is reported at once.
func check(m Message, ps *payloadSchema, code string) error {
	env := envelope{ID: m.ID, Type: m.Type, SchemaID: m.SchemaID, CorrelationID: m.CorrelationID,
		IdempotencyKey: m.IdempotencyKey, Source: m.Source, Metadata: m.Metadata}
	if !m.CreatedAt.IsZero() {
		env.CreatedAt = m.CreatedAt.Format(time.RFC3339Nano)
	}
	var vs []schemas.Violation
	payload := bytes.TrimSpace(m.Payload)
	switch {
	case len(payload) == 0:
		// Left out of env: the schema reports it as required.
	case payload[0] != '{':
		env.Payload = emptyObject
		vs = append(vs, schemas.Violation{InstancePath: "/payload", Keyword: "type", Message: "must be a JSON object"})
	default:
		env.Payload = emptyObject
	}
	if len(payload) == 0 || !envelopeValid(m) {
		doc, err := json.Marshal(env)
		if err != nil {
			return &Error{Code: code, Message: err.Error()}
		}
		if err := schemas.Validate(envelopeSchema, doc); err != nil {
			var ve *schemas.ValidationError
			if !errors.As(err, &ve) {
				return &Error{Code: CodeInternal, Message: err.Error()}
			}
			vs = append(vs, ve.Violations...)
		}
	}
	for k, val := range m.Metadata {
		// JSON would quietly mend it, but protobuf refuses to send it.
		if !utf8.ValidString(val) {
			vs = append(vs, schemas.Violation{InstancePath: "/metadata/" + schemas.EscapePointer(k), Keyword: "type", Message: "must be valid UTF-8"})
		}
	}
	if ps != nil {
		if m.SchemaID != "" && !sameSchema(ps, m.SchemaID) {
			vs = append(vs, schemas.Violation{InstancePath: "/schema_id", Keyword: "const",
				Message: fmt.Sprintf("%s is declared with schema %s, not %s", m.Type, ps.id, m.SchemaID)})
		}
		if len(payload) > 0 && payload[0] == '{' {
			for _, pv := range ps.validate(payload) {
				pv.InstancePath = "/payload" + pv.InstancePath
				vs = append(vs, pv)
			}
		}
	}
	if len(vs) == 0 {
		return nil
	}
	return violationError(code, "message "+m.Type+" "+m.ID, "", vs)
}

// sameSchema accepts either spelling of a hub schema's id.
func sameSchema(ps *payloadSchema, id string) bool {
	if ps.carried != nil {
		return id == ps.id
	}
	return embeddedName(id) == ps.embedded
}

// Patterns of message-envelope.json that a byte loop cannot check simply.
var (
	typePattern     = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.v[1-9][0-9]*$`)
	namePattern     = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)
	metadataPattern = regexp.MustCompile(`^[a-z][a-z0-9_.-]*$`)
)

// envelopeValid is the fast path of the envelope check: the same rules as
// message-envelope.json, in Go, because the general validator costs tens
// of microseconds a message and every message is checked several times.
// It may only ever be stricter than the schema, never looser (tests hold
// it to that); when it says no, the schema is asked, both to be sure and
// to explain.
func envelopeValid(m Message) bool {
	if !token(m.ID, 128) || !token(m.SchemaID, 256) ||
		(m.CorrelationID != "" && !token(m.CorrelationID, 128)) ||
		(m.IdempotencyKey != "" && !token(m.IdempotencyKey, 128)) {
		return false
	}
	if len(m.Type) > 128 || !typePattern.MatchString(m.Type) {
		return false
	}
	if len(m.Source) > 64 || !namePattern.MatchString(m.Source) {
		return false
	}
	if y := m.CreatedAt.UTC().Year(); m.CreatedAt.IsZero() || y < 0 || y > 9999 {
		return false
	}
	if len(m.Metadata) > 32 {
		return false
	}
	for k, v := range m.Metadata {
		if len(k) > 64 || !metadataPattern.MatchString(k) || !utf8.ValidString(v) || utf8.RuneCountInString(v) > 1024 {
			return false
		}
	}
	return true
}

// token checks a printable-ASCII identifier of 1 to max bytes.
func token(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
