// Command legacyplugin is sdk/examples/bikes as a partner wrote it against
// the sdk before the host side left it, kept unchanged in its own module so
// CI fails when the sdk breaks a plugin built outside this repository. It is
// a CityCard plugin for a bike-share dock: it charges each
// ride to the rider's city card.
package main

import (
	"context"
	"encoding/json"

	"github.com/citycard/citycard/sdk"
)

func main() { sdk.Serve(&Dock{}) }

// Dock is a bike-share dock. When a bike comes back it charges the ride to
// the rider's card through the hub and answers with a receipt.
type Dock struct {
	hub      sdk.Hub
	fare     int64  // per started half hour, in fen
	merchant string // the bike-share operator's merchant id at the hub
}

// Describe declares the messages the dock handles and sends, each with the
// JSON Schema of its payload, and the schema of its configuration.
func (d *Dock) Describe() sdk.Descriptor {
	return sdk.Descriptor{
		Name:    "bikes",
		Version: "1.0.0",
		Handles: []sdk.MessageType{{
			Type:     "bikes.return.v1",
			SchemaID: "https://bikes.example/schemas/return.v1.json",
			Schema: json.RawMessage(`{
				"type": "object",
				"required": ["ride", "card", "minutes"],
				"properties": {
					"ride": {"type": "string", "minLength": 1},
					"card": {"type": "string", "pattern": "^[0-9]{16,19}$"},
					"minutes": {"type": "integer", "minimum": 0}
				},
				"additionalProperties": false
			}`),
		}},
		Sends: []sdk.MessageType{{
			// The hub's own message type for charging a card, with the
			// hub's schema: named, not carried.
			Type:     "card.payment.v1",
			SchemaID: "msg-card-payment-v1",
		}, {
			Type:     "bikes.receipt.v1",
			SchemaID: "https://bikes.example/schemas/receipt.v1.json",
			Schema: json.RawMessage(`{
				"type": "object",
				"required": ["amount", "hub"],
				"properties": {
					"amount": {"type": "integer"},
					"hub": {"type": "object"}
				}
			}`),
		}},
		ConfigSchema: json.RawMessage(`{
			"type": "object",
			"required": ["fare_per_half_hour", "merchant"],
			"properties": {
				"fare_per_half_hour": {"type": "integer", "minimum": 1},
				"merchant": {"type": "string", "minLength": 1}
			},
			"additionalProperties": false
		}`),
	}
}

// Configure keeps the fare, the merchant and the hub. The sdk has already checked the
// configuration against ConfigSchema.
func (d *Dock) Configure(ctx context.Context, config json.RawMessage, hub sdk.Hub) error {
	var c struct {
		FarePerHalfHour int64  `json:"fare_per_half_hour"`
		Merchant        string `json:"merchant"`
	}
	if err := json.Unmarshal(config, &c); err != nil {
		return err
	}
	d.hub, d.fare, d.merchant = hub, c.FarePerHalfHour, c.Merchant
	return nil
}

// Handle charges one returned bike's ride.
func (d *Dock) Handle(ctx context.Context, m sdk.Message) ([]sdk.Message, error) {
	var ride struct {
		Ride    string `json:"ride"`
		Card    string `json:"card"`
		Minutes int64  `json:"minutes"`
	}
	if err := json.Unmarshal(m.Payload, &ride); err != nil {
		return nil, err
	}
	amount := (ride.Minutes/30 + 1) * d.fare
	fare, err := json.Marshal(map[string]any{"card": ride.Card, "merchant": d.merchant, "amount": amount, "currency": "CNY"})
	if err != nil {
		return nil, err
	}
	// The ride id makes the charge idempotent: if this message is delivered
	// again, the hub answers with the first charge instead of a second one.
	res, err := d.hub.Submit(ctx, sdk.Message{Type: "card.payment.v1", IdempotencyKey: "bikes-" + ride.Ride, Payload: fare})
	if err != nil {
		return nil, err
	}
	receipt, err := json.Marshal(map[string]any{"amount": amount, "hub": res.Body})
	if err != nil {
		return nil, err
	}
	return []sdk.Message{{Type: "bikes.receipt.v1", Payload: receipt}}, nil
}

// Stop has nothing to release.
func (d *Dock) Stop(ctx context.Context) error { return nil }
