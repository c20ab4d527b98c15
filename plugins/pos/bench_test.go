package pos_test

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citycard/citycard/plugins/pos/sim"
)

// BenchmarkAuthorise measures POS authorisation over TCP: a signed-on
// terminal sends a purchase with a PIN block and a MAC, the plugin checks
// the MAC, decrypts the PIN, asks the hub (the in-memory hub double, over
// the plugin protocol's gRPC) and answers with a MACed 0210. It reports
// authorisations per second and the latency a terminal sees.
func BenchmarkAuthorise(b *testing.B) {
	for _, terminals := range []int{1, 16} {
		b.Run(fmt.Sprintf("terminals=%d", terminals), func(b *testing.B) {
			cfg := config()
			tids := make([]string, terminals)
			ts := map[string]any{}
			for i := range tids {
				tids[i] = fmt.Sprintf("BENCH%03d", i)
				ts[tids[i]] = map[string]any{"merchant": merchant, "master_key": tmkHex}
			}
			cfg["terminals"] = ts
			w := setupWith(b, cfg, slog.New(slog.DiscardHandler))
			w.bank.mu.Lock()
			w.bank.cards[dave].balance = 1 << 50
			w.bank.mu.Unlock()
			terms := make([]*sim.Terminal, terminals)
			for i, tid := range tids {
				term, err := sim.New(sim.Config{Addr: w.addr, TerminalID: tid, MerchantID: acceptor, MasterKey: key(b, tmkHex)})
				if err != nil {
					b.Fatal(err)
				}
				defer term.Close()
				if rc, err := term.SignOn(ctx(b)); err != nil || rc != "00" {
					b.Fatalf("sign-on: %s %v", rc, err)
				}
				terms[i] = term
			}
			var (
				mu   sync.Mutex
				lats []time.Duration
				next atomic.Int64
				fail atomic.Value
			)
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for _, term := range terms {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var mine []time.Duration
					for next.Add(1) <= int64(b.N) {
						t0 := time.Now()
						r, err := term.Purchase(ctx(b), sim.Card{PAN: dave, PIN: "111111"}, 100)
						if err != nil || r.RC != "00" {
							fail.Store(fmt.Sprintf("purchase: %s %v", r.RC, err))
							return
						}
						mine = append(mine, time.Since(t0))
					}
					mu.Lock()
					lats = append(lats, mine...)
					mu.Unlock()
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if f := fail.Load(); f != nil {
				b.Fatal(f)
			}
			slices.Sort(lats)
			pct := func(p float64) float64 {
				return float64(lats[min(len(lats)-1, int(float64(len(lats))*p))].Microseconds()) / 1000
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "auth/s")
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
		})
	}
}
