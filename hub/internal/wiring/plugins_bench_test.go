package wiring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/bus"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/hub/internal/pluginhost"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
	"github.com/citycard/citycard/hub/internal/wiring"
	"github.com/citycard/citycard/sdk"
)

// benchHub is a hub with the payer plugin and a card holding enough for
// every payment of a run, driven in process (no HTTP).
func benchHub(b *testing.B, st store.Store) (*wiring.Hub, string) {
	b.Helper()
	b.Cleanup(pin.SetCostForTesting(1, 8))
	bin, sum := payerPlugin(b)
	app, err := wiring.New(context.Background(), st, wiring.Config{AdminToken: token, Logger: quiet,
		Ledger:  ledger.Config{Now: func() time.Time { return time.Now().Truncate(time.Microsecond) }},
		Plugins: []pluginhost.Spec{{Name: "payer", Path: bin, SHA256: sum, Channel: "transit", Config: json.RawMessage(`{"merchant": "M-PAYER"}`)}},
		Router:  bus.Config{},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { app.Close() })
	c, stop, done := serve(b, app)
	b.Cleanup(func() { stop(); <-done })
	c.must("POST", "/v1/merchants", map[string]any{"id": "M-PAYER", "name": "Payer", "mcc": "4111", "settlement_account": "1"}, 201)
	card := c.must("POST", "/v1/cards", map[string]any{"holder": map[string]any{"name": "Li", "id_type": "passport", "id_number": "E1"}}, 201)["number"].(string)
	// The transit channel lets the purse go below zero down to the
	// product's limit, so a long run never runs out of balance.
	c.must("POST", "/v1/cards/"+card+"/topups", map[string]any{"amount": 500000, "currency": "CNY"}, 201)
	return app, card
}

var benchRun atomic.Int64

// BenchmarkPluginPayment: the hub sends the plugin a message through the
// router, the plugin submits card.payment.v1 back, the gateway checks it
// and the card service commits it in the ledger. One op is one payment, end
// to end through the plugin process; 64 callers at once, so the ledger
// commits them in groups.
func BenchmarkPluginPayment(b *testing.B) {
	storetest.EachDriverB(b, func(b *testing.B, st store.Store) {
		app, card := benchHub(b, st)
		run := benchRun.Add(1)
		var n atomic.Int64
		b.SetParallelism(32)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				key := fmt.Sprintf("b%d-%d", run, n.Add(1))
				payload, _ := json.Marshal(map[string]any{"key": key, "card": card, "amount": 1})
				if _, err := app.Send(context.Background(), "payer", sdk.Message{Type: "payer.charge.v1", Payload: payload}); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "payments/s")
	})
}

// BenchmarkPluginBatch: as BenchmarkPluginPayment, but the plugin hands
// the hub 500 payments in one SubmitBatch. One op is one payment.
func BenchmarkPluginBatch(b *testing.B) {
	const per = 500
	storetest.EachDriverB(b, func(b *testing.B, st store.Store) {
		app, card := benchHub(b, st)
		run := benchRun.Add(1)
		b.ResetTimer()
		for i := 0; i < b.N; i += per {
			n := min(per, b.N-i)
			payload, _ := json.Marshal(map[string]any{"key": fmt.Sprintf("r%d-%d", run, i), "card": card, "amount": 1, "n": n})
			replies, err := app.Send(context.Background(), "payer", sdk.Message{Type: "payer.batch.v1", Payload: payload})
			if err != nil {
				b.Fatal(err)
			}
			var r struct {
				Hub struct {
					Answered int `json:"answered"`
				} `json:"hub"`
			}
			if err := json.Unmarshal(replies[0].Payload, &r); err != nil || r.Hub.Answered != n {
				b.Fatalf("batch of %d: %s %v", n, replies[0].Payload, err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "payments/s")
	})
}

// BenchmarkSplitPayment: payments on the retail channel by a card with a
// linked bank card, end to end through the payer plugin and the fake
// acquirer plugin, 32 callers at once. "card-pays" has the city card pay
// it all (a hold and its posting, with the saga written at each step);
// "bank-pays" has an empty card, so the bank card pays it all (the hold
// declined, the acquirer asked, the posting).
func BenchmarkSplitPayment(b *testing.B) {
	for _, c := range []struct {
		name    string
		balance int
	}{{"card-pays", 500000}, {"bank-pays", 0}} {
		b.Run(c.name, func(b *testing.B) {
			storetest.EachDriverB(b, func(b *testing.B, st store.Store) {
				h := startSplitHub(b, st, time.Hour)
				h.seed(b, max(c.balance, 1))
				if c.balance == 0 {
					h.c.must("POST", "/v1/payments", map[string]any{"card": h.card, "channel": "retail", "merchant": "M-PAYER",
						"amount": 1, "currency": "CNY"}, 201)
				}
				h.link(b, bankPAN(b, "0019"))
				run := benchRun.Add(1)
				var n atomic.Int64
				b.SetParallelism(32)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						key := fmt.Sprintf("s%d-%d", run, n.Add(1))
						payload, _ := json.Marshal(map[string]any{"key": key, "card": h.card, "amount": 1, "terminal": "T-PAYER"})
						replies, err := h.app.Send(context.Background(), "payer", sdk.Message{Type: "payer.charge.v1", Payload: payload})
						if err != nil {
							b.Error(err)
							return
						}
						var r struct {
							Hub struct {
								Status string `json:"status"`
							} `json:"hub"`
						}
						if json.Unmarshal(replies[0].Payload, &r) != nil || r.Hub.Status != "approved" {
							b.Errorf("payment %s: %s", key, replies[0].Payload)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "payments/s")
			})
		})
	}
}
