package sdk

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/citycard/citycard/schemas"
)

// testDescriptor declares one carried schema each way and one of the hub's.
func testDescriptor() Descriptor {
	return Descriptor{
		Name:             "probe",
		Version:          "1.0.0",
		ProtocolVersions: []uint32{ProtocolVersion},
		Sends: []MessageType{
			{Type: "probe.out.v1", SchemaID: "https://probe.example/out.json", Schema: json.RawMessage(`{
				"type": "object", "required": ["n"],
				"properties": {"n": {"type": "integer", "minimum": 0}, "amount": {"$ref": "https://citycard.example/schemas/card-product.json#/$defs/money"}},
				"additionalProperties": false}`)},
			{Type: "probe.product.v1", SchemaID: "card-product"},
		},
		Handles: []MessageType{
			{Type: "probe.in.v1", SchemaID: "https://probe.example/in.json", Schema: json.RawMessage(`{"type": "object", "required": ["op"], "properties": {"op": {"enum": ["a", "b"]}}}`)},
			// The same carried schema under two types is fine.
			{Type: "probe.in2.v1", SchemaID: "https://probe.example/in.json", Schema: json.RawMessage(`{"type":"object","required":["op"],"properties":{"op":{"enum":["a","b"]}}}`)},
		},
		ConfigSchema: json.RawMessage(`{"type": "object", "required": ["zone"], "properties": {"zone": {"type": "string", "minLength": 1}}, "additionalProperties": false}`),
	}
}

func mustValidator(t *testing.T, d Descriptor) *validator {
	t.Helper()
	v, err := newValidator(d)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestValidatorRefusesBadDescriptors(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(d *Descriptor)
		field string
		says  string
	}{
		{"bad name", func(d *Descriptor) { d.Name = "Probe" }, "/name", "pattern"},
		{"no version", func(d *Descriptor) { d.Version = "" }, "", "required"},
		{"bad version", func(d *Descriptor) { d.Version = "v1" }, "/version", "pattern"},
		{"no protocol", func(d *Descriptor) { d.ProtocolVersions = nil }, "", "protocol_versions"},
		{"other protocol", func(d *Descriptor) { d.ProtocolVersions = []uint32{2} }, "/protocol_versions", "speaks protocol versions [2]"},
		{"bad type", func(d *Descriptor) { d.Sends[0].Type = "probe.out" }, "/sends/0/type", "pattern"},
		{"duplicate type", func(d *Descriptor) { d.Sends[1].Type = d.Sends[0].Type }, "/sends/1/type", "listed twice"},
		{"unknown hub schema", func(d *Descriptor) { d.Sends[1].SchemaID = "no-such-schema" }, "/sends/1/schema_id", "not one of the hub's schemas"},
		{"relative carried id", func(d *Descriptor) { d.Sends[0].SchemaID = "out.json" }, "/sends/0/schema", "absolute URI"},
		{"carried in hub namespace", func(d *Descriptor) { d.Sends[0].SchemaID = schemas.BaseURL + "mine.json" }, "/sends/0/schema", "hub's own schemas"},
		{"$id mismatch", func(d *Descriptor) {
			d.Sends[0].Schema = json.RawMessage(`{"$id": "https://probe.example/other.json", "type": "object"}`)
		}, "/sends/0/schema", "must match"},
		{"schema not JSON", func(d *Descriptor) { d.Sends[0].Schema = json.RawMessage(`{"type":`) }, "", ""},
		{"schema not a schema", func(d *Descriptor) { d.Sends[0].Schema = json.RawMessage(`{"type": 5}`) }, "/sends/0/schema", "probe.example/out.json"},
		{"schema refs the network", func(d *Descriptor) {
			d.Sends[0].Schema = json.RawMessage(`{"$ref": "https://elsewhere.example/x.json"}`)
		}, "/sends/0/schema", "may only reference the hub's schemas"},
		{"one id two schemas", func(d *Descriptor) { d.Handles[1].Schema = json.RawMessage(`{"type":"object"}`) }, "/handles/1/schema", "two different schemas"},
		{"config schema not a schema", func(d *Descriptor) { d.ConfigSchema = json.RawMessage(`{"minimum": "x"}`) }, "/config_schema", ""},
		{"bad capability", func(d *Descriptor) { d.Capabilities = []string{"Batch"} }, "/capabilities/0", "pattern"},
		{"unknown field", func(d *Descriptor) { d.Sends[0].Schema = json.RawMessage(`[]`) }, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := testDescriptor()
			tc.edit(&d)
			_, err := newValidator(d)
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeDescriptorInvalid {
				t.Fatalf("got %v, want descriptor_invalid", err)
			}
			if tc.field != "" && e.Field != tc.field {
				t.Errorf("field = %q, want %q (%s)", e.Field, tc.field, e.Message)
			}
			if !strings.Contains(e.Message, tc.says) {
				t.Errorf("message %q does not say %q", e.Message, tc.says)
			}
		})
	}
}

// sent returns a complete, valid outgoing message of the test descriptor.
func sent() Message {
	return Message{
		ID: "m-1", Type: "probe.out.v1", SchemaID: "https://probe.example/out.json", Source: "probe",
		CorrelationID: "c-1", IdempotencyKey: "k-1", CreatedAt: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC),
		Payload: json.RawMessage(`{"n": 1, "amount": 250}`), Metadata: map[string]string{"terminal": "T-9"},
	}
}

func TestCheckSent(t *testing.T) {
	v := mustValidator(t, testDescriptor())
	type want struct{ code, field, says string }
	ok := want{}
	cases := []struct {
		name string
		edit func(m *Message)
		want want
	}{
		{"valid", func(m *Message) {}, ok},
		{"hub schema by stem", func(m *Message) {
			m.Type, m.SchemaID = "probe.product.v1", "card-product"
			m.Payload = json.RawMessage(`{"code":"anon","name":"A","named":false,"currency":"CNY","deposit":0,"max_balance":1,"purses":[{"name":"cash","refundable":true}]}`)
		}, ok},
		{"hub schema by URI", func(m *Message) {
			m.Type, m.SchemaID = "probe.product.v1", schemas.BaseURL+"card-product.json"
			m.Payload = json.RawMessage(`{"code":"anon","name":"A","named":false,"currency":"CNY","deposit":0,"max_balance":1,"purses":[{"name":"cash","refundable":true}]}`)
		}, ok},
		{"hub schema violated", func(m *Message) {
			m.Type, m.SchemaID = "probe.product.v1", "card-product"
			m.Payload = json.RawMessage(`{"code":"anon","name":"A","named":false,"currency":"CNY","deposit":-1,"max_balance":1,"purses":[{"name":"cash","refundable":true}]}`)
		}, want{CodeSchemaInvalid, "/payload/deposit", "minimum"}},
		{"no id", func(m *Message) { m.ID = "" }, want{CodeSchemaInvalid, "", "required"}},
		{"id with space", func(m *Message) { m.ID = "a b" }, want{CodeSchemaInvalid, "/id", "pattern"}},
		{"id too long", func(m *Message) { m.ID = strings.Repeat("x", 129) }, want{CodeSchemaInvalid, "/id", "maxLength"}},
		{"no time", func(m *Message) { m.CreatedAt = time.Time{} }, want{CodeSchemaInvalid, "", "created_at"}},
		{"no payload", func(m *Message) { m.Payload = nil }, want{CodeSchemaInvalid, "", "payload"}},
		{"payload not object", func(m *Message) { m.Payload = json.RawMessage(`[1]`) }, want{CodeSchemaInvalid, "/payload", "JSON object"}},
		{"payload not JSON", func(m *Message) { m.Payload = json.RawMessage(`{"n":`) }, want{CodeSchemaInvalid, "/payload", "not valid JSON"}},
		{"payload violation", func(m *Message) { m.Payload = json.RawMessage(`{"n": -1}`) }, want{CodeSchemaInvalid, "/payload/n", "minimum"}},
		{"payload fraction via hub def", func(m *Message) { m.Payload = json.RawMessage(`{"n": 1, "amount": 2.5}`) }, want{CodeSchemaInvalid, "/payload/amount", "type"}},
		{"payload unknown property", func(m *Message) { m.Payload = json.RawMessage(`{"n": 1, "colour": "red", "size": 2}`) },
			want{CodeSchemaInvalid, "/payload/colour", "/payload/size: additionalProperties: unknown property"}},
		{"undeclared type", func(m *Message) { m.Type = "probe.secret.v1" }, want{CodeSchemaInvalid, "/type", "does not declare"}},
		{"bad type", func(m *Message) { m.Type = "Probe" }, want{CodeSchemaInvalid, "/type", "does not declare"}},
		{"other source", func(m *Message) { m.Source = "bank" }, want{CodeSchemaInvalid, "/source", "only send as itself"}},
		{"no source", func(m *Message) { m.Source = "" }, want{CodeSchemaInvalid, "", "source"}},
		{"wrong schema id", func(m *Message) { m.SchemaID = "https://probe.example/in.json" }, want{CodeSchemaInvalid, "/schema_id", "declared with schema"}},
		{"metadata key", func(m *Message) { m.Metadata = map[string]string{"Terminal": "x"} }, want{CodeSchemaInvalid, "/metadata/Terminal", "pattern"}},
		{"metadata value too long", func(m *Message) { m.Metadata = map[string]string{"t": strings.Repeat("é", 1025)} }, want{CodeSchemaInvalid, "/metadata/t", "maxLength"}},
		{"metadata not UTF-8", func(m *Message) { m.Metadata = map[string]string{"t": "\xff"} }, want{CodeSchemaInvalid, "/metadata/t", "UTF-8"}},
		{"many at once", func(m *Message) { m.ID = ""; m.Payload = json.RawMessage(`{"n": -1}`) }, want{CodeSchemaInvalid, "", "/payload/n: minimum"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := sent()
			tc.edit(&m)
			err := v.CheckSent(m)
			if tc.want == ok {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want %s", err, tc.want.code)
			}
			if e.Code != tc.want.code || e.Field != tc.want.field || !strings.Contains(e.Message, tc.want.says) {
				t.Errorf("got %s at %q: %s\nwant %s at %q saying %q", e.Code, e.Field, e.Message, tc.want.code, tc.want.field, tc.want.says)
			}
		})
	}
}

func TestCheckHandled(t *testing.T) {
	v := mustValidator(t, testDescriptor())
	m := sent()
	m.Type, m.SchemaID, m.Source, m.Payload = "probe.in.v1", "https://probe.example/in.json", HubSource, json.RawMessage(`{"op":"a"}`)
	if err := v.CheckHandled(m); err != nil {
		t.Fatal(err)
	}
	m.Payload = json.RawMessage(`{"op":"c"}`)
	if err := v.CheckHandled(m); !errors.Is(err, &Error{Code: CodeSchemaInvalid}) {
		t.Errorf("bad payload: %v", err)
	}
	m.Type = "probe.out.v1" // sent, not handled
	if err := v.CheckHandled(m); !errors.Is(err, &Error{Code: CodeUnsupportedMessageType}) {
		t.Errorf("unhandled type: %v", err)
	}
}

func TestCheckConfig(t *testing.T) {
	v := mustValidator(t, testDescriptor())
	none := testDescriptor()
	none.ConfigSchema = nil
	vNone := mustValidator(t, none)
	cases := []struct {
		name   string
		v      *validator
		config string
		field  string // "-": valid
	}{
		{"valid", v, `{"zone":"a"}`, "-"},
		{"missing", v, `{}`, ""},
		{"empty is {}", v, ``, ""},
		{"null is {}", v, `null`, ""},
		{"unknown field", v, `{"zone":"a","colour":"red"}`, "/colour"},
		{"bad value", v, `{"zone":""}`, "/zone"},
		{"not JSON", v, `{"zone":`, ""},
		{"no schema, empty", vNone, ``, "-"},
		{"no schema, {}", vNone, ` {} `, "-"},
		{"no schema, something", vNone, `{"a":1}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.v.CheckConfig(json.RawMessage(tc.config))
			if tc.field == "-" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeConfigInvalid || e.Field != tc.field {
				t.Fatalf("got %v (field %q), want config_invalid at %q", err, e.Field, tc.field)
			}
		})
	}
}

// envelopeCases vary one envelope field at a time around a valid message.
func envelopeCases() []Message {
	base := sent()
	var out []Message
	add := func(edit func(m *Message)) {
		m := base
		m.Metadata = map[string]string{"terminal": "T-9"}
		edit(&m)
		out = append(out, m)
	}
	for _, id := range []string{"", "x", "a b", "é", strings.Repeat("x", 128), strings.Repeat("x", 129), "~!{}"} {
		add(func(m *Message) { m.ID = id })
		add(func(m *Message) { m.CorrelationID = id })
		add(func(m *Message) { m.IdempotencyKey = id })
		add(func(m *Message) { m.SchemaID = id })
	}
	for _, typ := range []string{"", "a.v1", "a.b_c.v12", "a.v0", "A.v1", "a..v1", "a.v1.", "1a.v1", "a.b", strings.Repeat("a", 126) + ".v1"} {
		add(func(m *Message) { m.Type = typ })
	}
	for _, src := range []string{"", "hub", "a-b", "a--b", "-a", "a-", "A", strings.Repeat("a", 65)} {
		add(func(m *Message) { m.Source = src })
	}
	for _, at := range []time.Time{{}, time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("x", 3600)), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		add(func(m *Message) { m.CreatedAt = at })
	}
	for _, md := range []map[string]string{nil, {}, {"a.b-c_d": "v"}, {"A": "v"}, {"a": strings.Repeat("é", 1024)}, {strings.Repeat("k", 65): "v"}} {
		add(func(m *Message) { m.Metadata = md })
	}
	return out
}

// The fast envelope check may be stricter than message-envelope.json but
// never looser; on these cases it must agree exactly.
func TestEnvelopeFastPathMatchesSchema(t *testing.T) {
	for i, m := range envelopeCases() {
		fast := envelopeValid(m)
		slow := envelopeSchemaValid(t, m)
		if fast != slow {
			t.Errorf("case %d %+v: fast path %v, schema %v", i, m, fast, slow)
		}
	}
}

func FuzzEnvelopeFastPath(f *testing.F) {
	for _, m := range envelopeCases() {
		f.Add(m.ID, m.Type, m.Source, m.CorrelationID, "k", "v")
	}
	f.Fuzz(func(t *testing.T, id, typ, source, corr, mk, mv string) {
		m := sent()
		m.ID, m.Type, m.Source, m.CorrelationID = id, typ, source, corr
		m.Metadata = map[string]string{mk: mv}
		if envelopeValid(m) && !envelopeSchemaValid(t, m) {
			t.Fatalf("fast path accepts what the schema refuses: %+v", m)
		}
	})
}

func envelopeSchemaValid(t *testing.T, m Message) bool {
	t.Helper()
	env := envelope{ID: m.ID, Type: m.Type, SchemaID: m.SchemaID, CorrelationID: m.CorrelationID,
		IdempotencyKey: m.IdempotencyKey, Source: m.Source, Metadata: m.Metadata, Payload: emptyObject}
	if !m.CreatedAt.IsZero() {
		env.CreatedAt = m.CreatedAt.Format(time.RFC3339Nano)
	}
	doc, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return schemas.Validate(envelopeSchema, doc) == nil
}

func TestUnknownPropertiesQuoting(t *testing.T) {
	v := mustValidator(t, testDescriptor())
	m := sent()
	m.Payload = json.RawMessage(`{"n": 1, "it's": 1, "a/b": 2, "q\"": 3}`)
	err := v.CheckSent(m)
	for _, want := range []string{"/payload/it's", "/payload/a~1b", `/payload/q"`} {
		if err == nil || !strings.Contains(err.Error(), want+": additionalProperties: unknown property") {
			t.Errorf("%v does not report %s", err, want)
		}
	}
}
