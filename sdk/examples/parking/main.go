// Command parking is an example CityCard plugin for on-street parking
// meters, used by the sdk's own tests and by the conformance kit's. It
// shows every part of the sdk: configuration with a schema, message schemas
// that reuse the hub's definitions, replies, single and batched submission,
// hub queries and a health check.
//
// A meter reports a finished parking session; the plugin prices it from the
// zone's hourly rate (every started hour) and submits the fee to the hub,
// which charges the card. Meters that were offline upload their sessions in
// batches.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/citycard/citycard/sdk"
)

func main() { sdk.Serve(&Meter{}) }

// Message types of this plugin.
const (
	typeQuote       = "parking.quote.v1"
	typeQuoteResult = "parking.quote.result.v1"
	typeSessionEnd  = "parking.session.end.v1"
	typeSessions    = "parking.session.batch.v1"
	typeFee         = "parking.fee.v1"
	typeReceipt     = "parking.receipt.v1"
	typeBatchResult = "parking.batch.result.v1"
)

// schemaBase is where this plugin's own schemas live: its own namespace,
// never the hub's.
const schemaBase = "https://parking.example/schemas/"

// hubDefs reuses the hub's definitions of money and currency, so a fee can
// never be a float or a lower-case currency.
const hubDefs = "https://citycard.example/schemas/card-product.json#/$defs/"

// Meter is the plugin.
type Meter struct {
	mu  sync.RWMutex
	cfg config
	hub sdk.Hub
}

type config struct {
	Zone            string `json:"zone"`
	RatePerHour     int64  `json:"rate_per_hour"`
	Currency        string `json:"currency"`
	CheckCardStatus bool   `json:"check_card_status"`
}

type session struct {
	Session string `json:"session"`
	Card    string `json:"card"`
	Minutes int64  `json:"minutes"`
	Plate   string `json:"plate,omitempty"`
}

// sessionSchema is deliberately lax about the card: meters send what the
// card reader gave them, and the hub, not the meter, decides what a card
// number is (the fee's schema is strict).
const sessionSchema = `{
	"type": "object",
	"required": ["session", "card", "minutes"],
	"properties": {
		"session": {"type": "string", "minLength": 1, "maxLength": 64},
		"card": {"type": "string", "minLength": 1, "maxLength": 64},
		"minutes": {"type": "integer", "minimum": 0, "maximum": 100000},
		"plate": {"type": "string", "maxLength": 16}
	},
	"additionalProperties": false
}`

func schema(name, body string) sdk.MessageType {
	return sdk.MessageType{Type: name, SchemaID: schemaBase + name + ".json", Schema: json.RawMessage(body)}
}

// Describe implements sdk.Plugin.
func (*Meter) Describe() sdk.Descriptor {
	return sdk.Descriptor{
		Name:         "parking",
		Version:      "0.1.0",
		Capabilities: []string{"batch", "idempotent"},
		Handles: []sdk.MessageType{
			schema(typeQuote, `{
				"type": "object",
				"required": ["minutes"],
				"properties": {"minutes": {"type": "integer", "minimum": 0, "maximum": 100000}},
				"additionalProperties": false
			}`),
			schema(typeSessionEnd, sessionSchema),
			schema(typeSessions, `{
				"type": "object",
				"required": ["sessions"],
				"properties": {
					"sessions": {"type": "array", "minItems": 1, "maxItems": 1000, "items": `+sessionSchema+`}
				},
				"additionalProperties": false
			}`),
		},
		Sends: []sdk.MessageType{
			schema(typeFee, `{
				"type": "object",
				"required": ["session", "card", "zone", "minutes", "amount", "currency"],
				"properties": {
					"session": {"type": "string", "minLength": 1},
					"card": {"type": "string", "pattern": "^[0-9]{16,19}$"},
					"zone": {"type": "string"},
					"minutes": {"type": "integer", "minimum": 0},
					"amount": {"$ref": "`+hubDefs+`money"},
					"currency": {"$ref": "`+hubDefs+`currency"}
				},
				"additionalProperties": false
			}`),
			schema(typeQuoteResult, `{
				"type": "object",
				"required": ["amount", "currency"],
				"properties": {"amount": {"$ref": "`+hubDefs+`money"}, "currency": {"$ref": "`+hubDefs+`currency"}},
				"additionalProperties": false
			}`),
			schema(typeReceipt, `{
				"type": "object",
				"required": ["session", "amount", "hub"],
				"properties": {
					"session": {"type": "string"},
					"amount": {"$ref": "`+hubDefs+`money"},
					"duplicate": {"type": "boolean"},
					"hub": {"type": "object"}
				},
				"additionalProperties": false
			}`),
			schema(typeBatchResult, `{
				"type": "object",
				"required": ["accepted", "refused"],
				"properties": {
					"accepted": {"type": "integer", "minimum": 0},
					"refused": {"type": "array", "items": {"type": "object"}}
				},
				"additionalProperties": false
			}`),
		},
		ConfigSchema: json.RawMessage(`{
			"type": "object",
			"required": ["zone", "rate_per_hour"],
			"properties": {
				"zone": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,15}$"},
				"rate_per_hour": {"type": "integer", "minimum": 1, "maximum": 100000},
				"currency": {"$ref": "` + hubDefs + `currency", "default": "CNY"},
				"check_card_status": {"type": "boolean", "default": false}
			},
			"additionalProperties": false
		}`),
	}
}

// Configure implements sdk.Plugin. It swaps the whole configuration at
// once; the sdk guarantees no Handle runs meanwhile, the lock is for the
// plugin's own future background work. The sdk has filled in the schema's
// defaults (currency, check_card_status), so none is repeated here.
func (m *Meter) Configure(ctx context.Context, raw json.RawMessage, hub sdk.Hub) error {
	var c config
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg, m.hub = c, hub
	return nil
}

// Handle implements sdk.Plugin.
func (m *Meter) Handle(ctx context.Context, msg sdk.Message) ([]sdk.Message, error) {
	m.mu.RLock()
	cfg, hub := m.cfg, m.hub
	m.mu.RUnlock()
	switch msg.Type {
	case typeQuote:
		var q struct {
			Minutes int64 `json:"minutes"`
		}
		if err := json.Unmarshal(msg.Payload, &q); err != nil {
			return nil, err
		}
		return reply(typeQuoteResult, map[string]any{"amount": cfg.price(q.Minutes), "currency": cfg.Currency})
	case typeSessionEnd:
		var s session
		if err := json.Unmarshal(msg.Payload, &s); err != nil {
			return nil, err
		}
		return m.end(ctx, cfg, hub, s)
	case typeSessions:
		var b struct {
			Sessions []session `json:"sessions"`
		}
		if err := json.Unmarshal(msg.Payload, &b); err != nil {
			return nil, err
		}
		return m.upload(ctx, cfg, hub, b.Sessions)
	}
	// The sdk only delivers declared types; this is a bug in Describe.
	return nil, sdk.Errorf(sdk.CodeUnsupportedMessageType, "parking: no handler for %s", msg.Type)
}

// price charges every started hour; a session of zero minutes is free.
func (c config) price(minutes int64) int64 {
	return (minutes + 59) / 60 * c.RatePerHour
}

func (m *Meter) end(ctx context.Context, cfg config, hub sdk.Hub, s session) ([]sdk.Message, error) {
	if cfg.CheckCardStatus {
		body, err := hub.Query(ctx, sdk.QueryCardStatus, s.Card)
		if err != nil {
			return nil, err
		}
		var st struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(body, &st); err != nil {
			return nil, err
		}
		if st.Status != "active" {
			return nil, sdk.Errorf(sdk.CodeCardNotActive, "card %s is %s", s.Card, st.Status)
		}
	}
	fee, err := cfg.fee(s)
	if err != nil {
		return nil, err
	}
	res, err := hub.Submit(ctx, fee)
	if err != nil {
		return nil, err
	}
	return reply(typeReceipt, map[string]any{"session": s.Session, "amount": cfg.price(s.Minutes),
		"duplicate": res.Duplicate, "hub": json.RawMessage(res.Body)})
}

func (m *Meter) upload(ctx context.Context, cfg config, hub sdk.Hub, ss []session) ([]sdk.Message, error) {
	fees := make([]sdk.Message, len(ss))
	for i, s := range ss {
		var err error
		if fees[i], err = cfg.fee(s); err != nil {
			return nil, err
		}
	}
	results, err := hub.SubmitBatch(ctx, fees)
	if err != nil {
		return nil, err
	}
	accepted, refused := 0, []map[string]any{}
	for i, r := range results {
		if r.Error != nil {
			refused = append(refused, map[string]any{"session": ss[i].Session, "code": r.Error.Code})
			continue
		}
		accepted++
	}
	return reply(typeBatchResult, map[string]any{"accepted": accepted, "refused": refused})
}

// fee is the message that charges a session. Its idempotency key is the
// zone and the meter's session id, so a meter re-uploading after a lost
// answer never charges twice.
func (c config) fee(s session) (sdk.Message, error) {
	body, err := json.Marshal(map[string]any{"session": s.Session, "card": s.Card, "zone": c.Zone,
		"minutes": s.Minutes, "amount": c.price(s.Minutes), "currency": c.Currency})
	if err != nil {
		return sdk.Message{}, err
	}
	return sdk.Message{Type: typeFee, IdempotencyKey: fmt.Sprintf("parking-%s-%s", c.Zone, s.Session), Payload: body}, nil
}

func reply(typ string, payload map[string]any) ([]sdk.Message, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	return []sdk.Message{{Type: typ, Payload: body}}, nil
}

// Health implements sdk.HealthChecker. A real meter plugin would check its
// link to the meters here.
func (m *Meter) Health(ctx context.Context) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.hub == nil {
		return fmt.Errorf("parking: not configured")
	}
	return nil
}

// Stop implements sdk.Plugin; there is nothing buffered to flush.
func (m *Meter) Stop(ctx context.Context) error { return nil }
