// Command fakebank is a test plugin standing in for the bank acquirer
// (plugins/unionpay): it authorises bank cards by simple rules, keeps
// tokens for linked cards, applies each idempotency key once, and counts
// what it was asked.
//
// Cards ending 0051 are declined 51, 0054 declined 54, 0068 declined 68
// (the acquirer's own timeout); a card ending 0091 is approved after three
// seconds, later than the hub waits in the tests.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/citycard/citycard/sdk"
)

func main() {
	sdk.Serve(&bank{answers: map[string]json.RawMessage{}, reversed: map[string]bool{}, vault: map[string]string{},
		amounts: map[string]int64{}, cancels: map[string]string{}})
}

type bank struct {
	mu       sync.Mutex
	answers  map[string]json.RawMessage // by idempotency key
	asked    int
	reversed map[string]bool
	vault    map[string]string // token → card number
	amounts  map[string]int64  // approved authorisations' amounts, by key
	cancels  map[string]string // authorisation key → how it was undone
}

const lax = `{"type": "object"}`

func (b *bank) Describe() sdk.Descriptor {
	mt := func(t string) sdk.MessageType {
		return sdk.MessageType{Type: t, SchemaID: "https://fakebank.test/" + t + ".json", Schema: json.RawMessage(lax)}
	}
	return sdk.Descriptor{Name: "fakebank", Version: "0.1.0",
		Handles: []sdk.MessageType{mt("unionpay.authorize.v1"), mt("unionpay.reverse.v1"), mt("unionpay.tokenize.v1"),
			mt("unionpay.complete.v1"), mt("unionpay.cancel.v1"), mt("unionpay.balance.v1"), mt("fakebank.count.v1")},
		Sends: []sdk.MessageType{mt("unionpay.authorization.v1"), mt("unionpay.reversal.v1"), mt("unionpay.token.v1"), mt("fakebank.counts.v1")}}
}

func (b *bank) Configure(context.Context, json.RawMessage, sdk.Hub) error { return nil }

func (b *bank) Handle(ctx context.Context, m sdk.Message) ([]sdk.Message, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch m.Type {
	case "fakebank.count.v1":
		var keys []string
		for k := range b.reversed {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		body, _ := json.Marshal(map[string]any{"authorised": b.asked, "reversed": len(b.reversed), "reversed_keys": keys,
			"cancels": b.cancels})
		return []sdk.Message{{Type: "fakebank.counts.v1", Payload: body}}, nil
	case "unionpay.reverse.v1":
		var r struct {
			Key string `json:"authorization_key"`
		}
		_ = json.Unmarshal(m.Payload, &r)
		b.reversed[r.Key] = true
		body, _ := json.Marshal(map[string]string{"status": "reversed", "authorization_key": r.Key})
		return []sdk.Message{{Type: "unionpay.reversal.v1", Payload: body}}, nil
	case "unionpay.tokenize.v1":
		var r struct {
			PAN    string `json:"pan"`
			Expiry string `json:"expiry"`
		}
		_ = json.Unmarshal(m.Payload, &r)
		sum := sha256.Sum256([]byte(r.PAN))
		tok := "tok_" + hex.EncodeToString(sum[:16])
		b.vault[tok] = r.PAN
		body, _ := json.Marshal(map[string]string{"token": tok, "masked_pan": r.PAN[:6] + strings.Repeat("*", len(r.PAN)-10) + r.PAN[len(r.PAN)-4:],
			"last4": r.PAN[len(r.PAN)-4:], "expiry": r.Expiry})
		return []sdk.Message{{Type: "unionpay.token.v1", Payload: body}}, nil
	}
	if a, ok := b.answers[m.IdempotencyKey]; ok && m.IdempotencyKey != "" {
		return []sdk.Message{{Type: "unionpay.authorization.v1", Payload: a}}, nil
	}
	reply := func(ans map[string]any) []sdk.Message {
		a, _ := json.Marshal(ans)
		b.answers[m.IdempotencyKey] = a
		return []sdk.Message{{Type: "unionpay.authorization.v1", Payload: a}}
	}
	var use struct {
		Key    string `json:"authorization_key"`
		Kind   string `json:"kind"`
		Amount int64  `json:"amount"`
	}
	_ = json.Unmarshal(m.Payload, &use)
	switch m.Type {
	case "unionpay.balance.v1":
		return reply(map[string]any{"status": "approved", "response_code": "00", "balance": 88800}), nil
	case "unionpay.complete.v1", "unionpay.cancel.v1":
		orig, ok := b.amounts[use.Key]
		switch {
		case !ok || (b.cancels[use.Key] != "" && b.cancels[use.Key] != "refund"):
			return reply(map[string]any{"status": "declined", "response_code": "25"}), nil
		case use.Amount > orig:
			return reply(map[string]any{"status": "declined", "response_code": "64"}), nil
		}
		if use.Kind == "refund" {
			// Refunds may come in parts, up to what was paid.
			b.amounts[use.Key] = orig - use.Amount
		}
		if m.Type == "unionpay.cancel.v1" {
			b.cancels[use.Key] = use.Kind
		} else {
			b.cancels[use.Key] = "completed"
			b.amounts[m.IdempotencyKey] = use.Amount
		}
		return reply(map[string]any{"status": "approved", "response_code": "00", "auth_code": "C00001", "rrn": "RC0000000001"}), nil
	}
	var req struct {
		PAN    string `json:"pan"`
		Token  string `json:"token"`
		Amount int64  `json:"amount"`
	}
	if err := json.Unmarshal(m.Payload, &req); err != nil {
		return nil, err
	}
	if req.Token != "" {
		pan, ok := b.vault[req.Token]
		if !ok {
			a, _ := json.Marshal(map[string]string{"status": "declined", "response_code": "14"})
			return []sdk.Message{{Type: "unionpay.authorization.v1", Payload: a}}, nil
		}
		req.PAN = pan
	}
	b.asked++
	ans := map[string]string{"status": "approved", "response_code": "00", "auth_code": fmt.Sprintf("A%05d", b.asked),
		"rrn": fmt.Sprintf("R%011d", b.asked)}
	switch {
	case strings.HasSuffix(req.PAN, "0051") || req.Amount > 100000:
		ans = map[string]string{"status": "declined", "response_code": "51"}
	case strings.HasSuffix(req.PAN, "0054"):
		ans = map[string]string{"status": "declined", "response_code": "54"}
	case strings.HasSuffix(req.PAN, "0068"):
		ans = map[string]string{"status": "declined", "response_code": "68"}
	case strings.HasSuffix(req.PAN, "0091"):
		// Approved, but too late for the hub: it must reverse it.
		b.mu.Unlock()
		select {
		case <-time.After(3 * time.Second):
		case <-ctx.Done():
		}
		b.mu.Lock()
	}
	if ans["status"] == "approved" {
		b.amounts[m.IdempotencyKey] = req.Amount
	}
	a, _ := json.Marshal(ans)
	b.answers[m.IdempotencyKey] = a
	return []sdk.Message{{Type: "unionpay.authorization.v1", Payload: a}}, nil
}

func (b *bank) Stop(context.Context) error { return nil }
