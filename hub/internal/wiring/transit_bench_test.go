package wiring_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
	"github.com/citycard/citycard/hub/internal/wiring"
	"github.com/citycard/citycard/sdk/transit/tap"
)

// BenchmarkTransitTaps posts offline batches of 500 signed taps from 1,000
// cards through the transit service straight into the ledger: the hub's
// own cost per tap (MAC, dedup, fare, posting, commit), without the plugin
// process or the router. One op is one tap.
func BenchmarkTransitTaps(b *testing.B) {
	const batch, riders = 500, 1000
	storetest.EachDriverB(b, func(b *testing.B, st store.Store) {
		b.Cleanup(pin.SetCostForTesting(1, 8))
		app, err := wiring.New(context.Background(), st, wiring.Config{AdminToken: token, Logger: quiet,
			Ledger: ledger.Config{Now: func() time.Time { return time.Now().Truncate(time.Microsecond) }}})
		if err != nil {
			b.Fatal(err)
		}
		c, stop, done := serve(b, app)
		b.Cleanup(func() { stop(); <-done; app.Close() })
		c.must("POST", "/v1/merchants", map[string]any{"id": "M-CITYBUS", "name": "City Bus", "mcc": "4131", "settlement_account": "1"}, 201)
		key, _ := hex.DecodeString(c.must("POST", "/v1/transit/devices", map[string]any{"id": "BUS-B", "operator": "city-bus"}, 201)["key"].(string))
		cardsList := make([]string, riders)
		for i := range cardsList {
			cardsList[i] = c.must("POST", "/v1/cards", map[string]any{"holder": map[string]any{"name": "Li", "id_type": "passport", "id_number": "E1"}}, 201)["number"].(string)
			c.must("POST", "/v1/cards/"+cardsList[i]+"/topups", map[string]any{"amount": 200000, "currency": "CNY"}, 201)
		}
		// Taps are spread over the past days so no daily cap makes them free.
		start := time.Now().Add(-29 * 24 * time.Hour)
		seq := int64(0)
		svc := app.Transit()
		b.ResetTimer()
		for i := 0; i < b.N; i += batch {
			n := min(batch, b.N-i)
			taps := make([]tap.Tap, n)
			for j := range taps {
				seq++
				tp := tap.Tap{Device: "BUS-B", Seq: seq, Card: cardsList[int(seq)%riders], At: start.Add(time.Duration(seq) * time.Second),
					Kind: tap.On, Route: "15", Offline: true}
				tp.MAC, _ = tap.Sign(key, tp)
				taps[j] = tp
			}
			r, err := svc.Taps(context.Background(), "bench", taps)
			if err != nil {
				b.Fatal(err)
			}
			if r.Results[0].Status != "charged" {
				b.Fatal(fmt.Sprintf("%+v", r.Results[0]))
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "taps/s")
	})
}
