// Command fakebank is a test plugin standing in for the bank acquirer
// (plugins/unionpay): it authorises bank cards by simple rules, applies each
// idempotency key once, and counts what it was asked.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/citycard/citycard/sdk"
)

func main() { sdk.Serve(&bank{answers: map[string]json.RawMessage{}, reversed: map[string]bool{}}) }

type bank struct {
	mu       sync.Mutex
	answers  map[string]json.RawMessage // by idempotency key
	asked    int
	reversed map[string]bool
}

const lax = `{"type": "object"}`

func (b *bank) Describe() sdk.Descriptor {
	mt := func(t string) sdk.MessageType {
		return sdk.MessageType{Type: t, SchemaID: "https://fakebank.test/" + t + ".json", Schema: json.RawMessage(lax)}
	}
	return sdk.Descriptor{Name: "fakebank", Version: "0.1.0",
		Handles: []sdk.MessageType{mt("unionpay.authorize.v1"), mt("unionpay.reverse.v1"), mt("fakebank.count.v1")},
		Sends:   []sdk.MessageType{mt("unionpay.authorization.v1"), mt("unionpay.reversal.v1"), mt("fakebank.counts.v1")}}
}

func (b *bank) Configure(context.Context, json.RawMessage, sdk.Hub) error { return nil }

func (b *bank) Handle(_ context.Context, m sdk.Message) ([]sdk.Message, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch m.Type {
	case "fakebank.count.v1":
		body, _ := json.Marshal(map[string]int{"authorised": b.asked, "reversed": len(b.reversed)})
		return []sdk.Message{{Type: "fakebank.counts.v1", Payload: body}}, nil
	case "unionpay.reverse.v1":
		var r struct {
			Key string `json:"authorization_key"`
		}
		_ = json.Unmarshal(m.Payload, &r)
		b.reversed[r.Key] = true
		body, _ := json.Marshal(map[string]string{"status": "reversed"})
		return []sdk.Message{{Type: "unionpay.reversal.v1", Payload: body}}, nil
	}
	if a, ok := b.answers[m.IdempotencyKey]; ok {
		return []sdk.Message{{Type: "unionpay.authorization.v1", Payload: a}}, nil
	}
	var req struct {
		PAN    string `json:"pan"`
		Amount int64  `json:"amount"`
	}
	if err := json.Unmarshal(m.Payload, &req); err != nil {
		return nil, err
	}
	b.asked++
	ans := map[string]string{"status": "approved", "response_code": "00", "auth_code": fmt.Sprintf("A%05d", b.asked),
		"rrn": fmt.Sprintf("R%011d", b.asked)}
	switch {
	case strings.HasSuffix(req.PAN, "0051") || req.Amount > 100000:
		ans = map[string]string{"status": "declined", "response_code": "51"}
	case strings.HasSuffix(req.PAN, "0054"):
		ans = map[string]string{"status": "declined", "response_code": "54"}
	}
	a, _ := json.Marshal(ans)
	b.answers[m.IdempotencyKey] = a
	return []sdk.Message{{Type: "unionpay.authorization.v1", Payload: a}}, nil
}

func (b *bank) Stop(context.Context) error { return nil }
