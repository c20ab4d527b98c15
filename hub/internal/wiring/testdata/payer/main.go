// Command payer is a test plugin for the hub's plugin routing: it charges
// cards through the hub's card.payment.v1, undoes them with
// card.reversal.v1, and misbehaves on request.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/citycard/citycard/sdk"
)

func main() { sdk.Serve(&payer{seen: map[string]bool{}}) }

type payer struct {
	hub      sdk.Hub
	merchant string

	mu   sync.Mutex
	seen map[string]bool
}

const lax = `{"type": "object"}`

func (p *payer) Describe() sdk.Descriptor {
	charge := `{"type": "object", "required": ["key", "card", "amount"],
		"properties": {"key": {"type": "string"}, "card": {"type": "string"}, "amount": {"type": "integer"}}}`
	return sdk.Descriptor{
		Name:    "payer",
		Version: "0.1.0",
		Handles: []sdk.MessageType{
			{Type: "payer.charge.v1", SchemaID: "https://payer.test/charge.json", Schema: json.RawMessage(charge)},
			{Type: "payer.reverse.v1", SchemaID: "https://payer.test/reverse.json", Schema: json.RawMessage(lax)},
			{Type: "payer.smuggle.v1", SchemaID: "https://payer.test/smuggle.json", Schema: json.RawMessage(lax)},
			{Type: "payer.flaky.v1", SchemaID: "https://payer.test/flaky.json", Schema: json.RawMessage(lax)},
			{Type: "payer.batch.v1", SchemaID: "https://payer.test/batch.json", Schema: json.RawMessage(lax)},
			{Type: "payer.preauth.v1", SchemaID: "https://payer.test/preauth.json", Schema: json.RawMessage(lax)},
			{Type: "payer.complete.v1", SchemaID: "https://payer.test/complete.json", Schema: json.RawMessage(lax)},
			{Type: "payer.cancel.v1", SchemaID: "https://payer.test/cancel.json", Schema: json.RawMessage(lax)},
			{Type: "payer.balance.v1", SchemaID: "https://payer.test/balance.json", Schema: json.RawMessage(lax)},
			{Type: "payer.inquiry.v1", SchemaID: "https://payer.test/inquiry.json", Schema: json.RawMessage(lax)},
		},
		Sends: []sdk.MessageType{
			// Declared with a lax schema of the plugin's own, so that the
			// hub's check of the payload is what refuses a bad one.
			{Type: "card.payment.v1", SchemaID: "https://payer.test/lax-payment.json", Schema: json.RawMessage(lax)},
			{Type: "card.reversal.v1", SchemaID: "msg-card-reversal-v1"},
			{Type: "card.hold.v1", SchemaID: "msg-card-hold-v1"},
			{Type: "card.capture.v1", SchemaID: "msg-card-capture-v1"},
			{Type: "card.void.v1", SchemaID: "msg-card-void-v1"},
			{Type: "card.balance_inquiry.v1", SchemaID: "msg-card-balance-inquiry-v1"},
			{Type: "payer.receipt.v1", SchemaID: "https://payer.test/receipt.json", Schema: json.RawMessage(lax)},
		},
		ConfigSchema: json.RawMessage(`{"type": "object", "required": ["merchant"],
			"properties": {"merchant": {"type": "string"}}, "additionalProperties": false}`),
	}
}

func (p *payer) Configure(_ context.Context, config json.RawMessage, hub sdk.Hub) error {
	var c struct {
		Merchant string `json:"merchant"`
	}
	if err := json.Unmarshal(config, &c); err != nil {
		return err
	}
	p.hub, p.merchant = hub, c.Merchant
	return nil
}

func (p *payer) Handle(ctx context.Context, m sdk.Message) ([]sdk.Message, error) {
	var in struct {
		Key      string `json:"key"`
		Card     string `json:"card"`
		Amount   int64  `json:"amount"`
		Terminal string `json:"terminal"`
		Expiry   string `json:"expiry"`
		PINBlock string `json:"pin_block"`
		Kind     string `json:"kind"`
		RKey     string `json:"rkey"`
	}
	if err := json.Unmarshal(m.Payload, &in); err != nil {
		return nil, err
	}
	var out sdk.Message
	switch m.Type {
	case "payer.batch.v1":
		// n charges of amount, keys <key>-0 … <key>-(n-1), in one SubmitBatch.
		var b struct {
			N int `json:"n"`
		}
		_ = json.Unmarshal(m.Payload, &b)
		ms := make([]sdk.Message, b.N)
		for i := range ms {
			body, _ := json.Marshal(map[string]any{"card": in.Card, "merchant": p.merchant, "amount": in.Amount, "currency": "CNY"})
			ms[i] = sdk.Message{Type: "card.payment.v1", IdempotencyKey: fmt.Sprintf("batch-%s-%d", in.Key, i), Payload: body}
		}
		rs, err := p.hub.SubmitBatch(ctx, ms)
		if err != nil {
			return nil, err
		}
		approved := 0
		for _, r := range rs {
			if r.Error == nil {
				approved++
			}
		}
		receipt, _ := json.Marshal(map[string]any{"hub": map[string]any{"answered": approved}, "duplicate": false})
		return []sdk.Message{{Type: "payer.receipt.v1", Payload: receipt}}, nil
	case "payer.charge.v1":
		pay := map[string]any{"card": in.Card, "merchant": p.merchant, "amount": in.Amount, "currency": "CNY"}
		if in.PINBlock != "" {
			pay["pin_block"] = in.PINBlock
		}
		if in.Terminal != "" {
			pay["terminal"] = in.Terminal
		}
		if in.Expiry != "" {
			pay["expiry"] = in.Expiry
		}
		body, _ := json.Marshal(pay)
		out = sdk.Message{Type: "card.payment.v1", IdempotencyKey: "charge-" + in.Key, Payload: body}
	case "payer.preauth.v1":
		hold := map[string]any{"card": in.Card, "merchant": p.merchant, "amount": in.Amount, "currency": "CNY"}
		if in.Terminal != "" {
			hold["terminal"] = in.Terminal
		}
		if in.Expiry != "" {
			hold["expiry"] = in.Expiry
		}
		body, _ := json.Marshal(hold)
		out = sdk.Message{Type: "card.hold.v1", IdempotencyKey: "hold-" + in.Key, Payload: body}
	case "payer.complete.v1":
		body, _ := json.Marshal(map[string]any{"hold_key": "hold-" + in.Key, "amount": in.Amount, "currency": "CNY"})
		out = sdk.Message{Type: "card.capture.v1", IdempotencyKey: "capture-" + in.Key, Payload: body}
	case "payer.cancel.v1":
		body, _ := json.Marshal(map[string]any{"hold_key": "hold-" + in.Key})
		out = sdk.Message{Type: "card.void.v1", IdempotencyKey: "void-" + in.Key, Payload: body}
	case "payer.balance.v1":
		bal, err := p.hub.Query(ctx, "card_balance", in.Card)
		if err != nil {
			return nil, err
		}
		receipt, _ := json.Marshal(map[string]any{"hub": json.RawMessage(bal), "duplicate": false})
		return []sdk.Message{{Type: "payer.receipt.v1", Payload: receipt}}, nil
	case "payer.inquiry.v1":
		q := map[string]any{"card": in.Card}
		if in.Expiry != "" {
			q["expiry"] = in.Expiry
		}
		if in.PINBlock != "" {
			q["pin_block"] = in.PINBlock
		}
		body, _ := json.Marshal(q)
		out = sdk.Message{Type: "card.balance_inquiry.v1", Payload: body}
	case "payer.reverse.v1":
		rev := map[string]any{"payment_key": "charge-" + in.Key}
		if in.Kind != "" {
			rev["kind"] = in.Kind
		}
		if in.Amount != 0 {
			rev["amount"] = in.Amount
		}
		body, _ := json.Marshal(rev)
		key := "reverse-" + in.Key
		if in.RKey != "" {
			key = "reverse-" + in.RKey
		}
		out = sdk.Message{Type: "card.reversal.v1", IdempotencyKey: key, Payload: body}
	case "payer.smuggle.v1":
		// An amount as a string: the plugin's own schema lets it through.
		body, _ := json.Marshal(map[string]any{"card": in.Card, "merchant": p.merchant, "amount": "100", "currency": "CNY"})
		out = sdk.Message{Type: "card.payment.v1", IdempotencyKey: "smuggle-" + in.Key, Payload: body}
	case "payer.flaky.v1":
		// Panics the first time it sees a key: a poison message until the
		// plugin is "fixed", which a replay then finds.
		p.mu.Lock()
		first := !p.seen[in.Key]
		p.seen[in.Key] = true
		p.mu.Unlock()
		if first {
			panic(fmt.Sprintf("payer: cannot handle %s yet", in.Key))
		}
		body, _ := json.Marshal(map[string]any{"card": in.Card, "merchant": p.merchant, "amount": in.Amount, "currency": "CNY"})
		out = sdk.Message{Type: "card.payment.v1", IdempotencyKey: "flaky-" + in.Key, Payload: body}
	}
	res, err := p.hub.Submit(ctx, out)
	if err != nil {
		return nil, err
	}
	receipt, _ := json.Marshal(map[string]any{"hub": res.Body, "duplicate": res.Duplicate})
	return []sdk.Message{{Type: "payer.receipt.v1", Payload: receipt}}, nil
}

func (p *payer) Stop(context.Context) error { return nil }
