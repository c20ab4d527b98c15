package transit_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citycard/citycard/plugins/transit/sim"
	"github.com/citycard/citycard/sdk/transit/tap"
)

// BenchmarkOnlineTap measures online taps from many validators at once,
// through the front end and the plugin protocol (in-process) to the hub
// double: taps/s, and the p50 and p99 a validator waits.
func BenchmarkOnlineTap(b *testing.B) {
	f := startB(b)
	tr := &http.Transport{MaxIdleConnsPerHost: 1024}
	defer tr.CloseIdleConnections()
	c := sim.NewClient(f.base, &http.Client{Transport: tr})
	var next atomic.Int64
	var mu sync.Mutex
	var waits []time.Duration
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		dev := fmt.Sprintf("BENCH-%04d", next.Add(1))
		key, _ := f.hub.register(context.Background(), sim.Device{ID: dev})
		var mine []time.Duration
		for seq := int64(1); pb.Next(); seq++ {
			tp := tap.Tap{Device: dev, Seq: seq, Card: alice, At: time.Now().UTC(), Kind: tap.On, Route: "1", Stop: "S01"}
			tp.MAC, _ = tap.Sign(key, tp)
			start := time.Now()
			if _, err := c.Tap(context.Background(), tp, time.Second); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(start))
		}
		mu.Lock()
		waits = append(waits, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	slices.Sort(waits)
	if len(waits) > 0 {
		b.ReportMetric(float64(waits[len(waits)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(waits[len(waits)*99/100].Microseconds()), "p99-µs")
	}
	b.ReportMetric(float64(len(waits))/b.Elapsed().Seconds(), "taps/s")
}

// BenchmarkUpload measures offline uploads of 1,000 taps each.
func BenchmarkUpload(b *testing.B) {
	f := startB(b)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := sim.NewClient(f.base, &http.Client{Transport: tr})
	key, _ := f.hub.register(context.Background(), sim.Device{ID: "BENCH-UP"})
	seq := int64(0)
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		taps := make([]tap.Tap, 1000)
		for i := range taps {
			seq++
			taps[i] = tap.Tap{Device: "BENCH-UP", Seq: seq, Card: alice, At: time.Now().UTC(), Kind: tap.On, Route: "1", Offline: true}
			taps[i].MAC, _ = tap.Sign(key, taps[i])
		}
		b.StartTimer()
		if _, err := c.Upload(context.Background(), taps); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(seq)/b.Elapsed().Seconds(), "taps/s")
}

func startB(b *testing.B) *front {
	// A micro-batch may be as large as the validators at once.
	return start(b, map[string]any{"batch_size": 1000})
}
