package cards_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

// BenchmarkWritePath measures payments through the card service and the
// group-commit writer into a real store: every payment debits one of many
// cards and credits the same hot merchant account. "group" lets batches
// fill up to 1,000; "one-commit" caps them at one transfer per commit, the
// baseline. Report figures with transfers/s.
func BenchmarkWritePath(b *testing.B) {
	for _, mode := range []struct {
		name     string
		maxBatch int
		clients  int
		linger   time.Duration
	}{
		{"group", 1000, 512, 0},
		{"group-linger1ms", 1000, 512, time.Millisecond},
		{"one-commit", 1, 64, 0},
	} {
		b.Run(mode.name, func(b *testing.B) {
			storetest.EachDriverB(b, func(b *testing.B, st store.Store) {
				benchPayments(b, st, mode.maxBatch, mode.clients, mode.linger)
			})
		})
	}
}

func benchPayments(b *testing.B, st store.Store, maxBatch, clients int, linger time.Duration) {
	var batches, items atomic.Int64
	e := newEnv(b, st, ledger.Config{MaxBatch: maxBatch, Linger: linger, Observe: func(n int, _ time.Duration, _ error) {
		batches.Add(1)
		items.Add(int64(n))
	}})
	ctx := context.Background()
	const ncards = 2000
	nums := make([]string, ncards)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range nums {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			nums[i] = e.issue("standard")
			e.topUp(nums[i], 500_000)
		}()
	}
	wg.Wait()
	batches.Store(0)
	items.Store(0)
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				out, err := e.svc.Pay(ctx, cards.Call{}, cards.PaymentRequest{
					Card: nums[i%ncards], Channel: "transit", Merchant: "M1", Amount: 1, Currency: "CNY"})
				if err != nil {
					b.Error(err)
					return
				}
				if r := out.Result.(*cards.PaymentResult); r.Status != cards.Approved {
					b.Errorf("declined: %s", r.Reason)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "transfers/s")
	if n := batches.Load(); n > 0 {
		b.ReportMetric(float64(items.Load())/float64(n), "per-commit")
	}
}
