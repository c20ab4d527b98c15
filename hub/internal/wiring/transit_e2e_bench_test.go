package wiring_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/hub/internal/pluginhost"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
	"github.com/citycard/citycard/hub/internal/wiring"
	"github.com/citycard/citycard/plugins/transit/sim"
	"github.com/citycard/citycard/sdk/transit/tap"
)

// transitPlugin builds the transit plugin's binary.
func transitPlugin(tb testing.TB) (bin, sum string) {
	tb.Helper()
	return testPlugin(tb, "github.com/citycard/citycard/plugins/transit/cmd/citycard-plugin-transit")
}

// transitRig is a hub running the transit plugin as a child process, with
// devices registered and riders' cards loaded; validators reach the plugin's
// front end over HTTP, as in the street.
type transitRig struct {
	hub     *client
	client  *sim.Client
	keys    map[string][]byte
	devices []string
	cards   []string
	seq     map[string]*atomic.Int64
}

func startTransitRig(b testing.TB, st store.Store, devices, riders int) *transitRig {
	return startTransitRigWith(b, st, devices, riders, 60000)
}

func startTransitRigWith(b testing.TB, st store.Store, devices, riders int, refreshMS int) *transitRig {
	b.Helper()
	b.Cleanup(pin.SetCostForTesting(1, 8))
	bin, sum := transitPlugin(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg, _ := json.Marshal(map[string]any{"listen": addr, "denylist_refresh_ms": refreshMS})
	app, err := wiring.New(context.Background(), st, wiring.Config{AdminToken: token, Logger: quiet,
		Ledger:  ledger.Config{Now: func() time.Time { return time.Now().Truncate(time.Microsecond) }},
		Plugins: []pluginhost.Spec{{Name: "transit", Path: bin, SHA256: sum, Channel: "transit", Config: cfg}}})
	if err != nil {
		b.Fatal(err)
	}
	c, stop, done := serve(b, app)
	b.Cleanup(func() { stop(); <-done })
	c.must("POST", "/v1/merchants", map[string]any{"id": "M-CITYBUS", "name": "City Bus", "mcc": "4131", "settlement_account": "1"}, 201)
	r := &transitRig{hub: c, keys: map[string][]byte{}, seq: map[string]*atomic.Int64{},
		client: sim.NewClient("http://"+addr, &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}})}
	for i := range devices {
		id := fmt.Sprintf("BEN-%03d", i)
		key, _ := hex.DecodeString(c.must("POST", "/v1/transit/devices", map[string]any{"id": id, "operator": "city-bus"}, 201)["key"].(string))
		r.keys[id], r.seq[id] = key, &atomic.Int64{}
		r.devices = append(r.devices, id)
	}
	for range riders {
		n := c.must("POST", "/v1/cards", map[string]any{"holder": map[string]any{"name": "Li", "id_type": "passport", "id_number": "E1"}}, 201)["number"].(string)
		c.must("POST", "/v1/cards/"+n+"/topups", map[string]any{"amount": 400000, "currency": "CNY"}, 201)
		r.cards = append(r.cards, n)
	}
	// The plugin answers once it has the deny list.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if h, err := r.client.Health(context.Background()); err == nil && h.Status == "serving" {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the transit plugin's front end did not come up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

// tap signs the next tap of device for card, dated at (spread over the
// past month so that no daily cap makes rides free).
func (r *transitRig) tap(device, card string, at time.Time, offline bool) tap.Tap {
	t := tap.Tap{Device: device, Seq: r.seq[device].Add(1), Card: card, At: at, Kind: tap.On, Route: "15", Offline: offline}
	t.MAC, _ = tap.Sign(r.keys[device], t)
	return t
}

// transitValidators is how many validators tap at once in
// BenchmarkTransitOnline (-transit.validators).
var transitValidators = 64

func init() {
	flag.IntVar(&transitValidators, "transit.validators", 64, "validators tapping at once in BenchmarkTransitOnline")
}

// BenchmarkTransitOnline: validators tap online through the plugin's front
// end (HTTP), which micro-batches their taps into transit.taps.v1 messages
// to the hub, which prices and posts them. 64 validators tap at once (each
// waits for its answer before its next tap); one op is one tap answered. Reports taps/s and the latency a validator sees.
func BenchmarkTransitOnline(b *testing.B) {
	storetest.EachDriverB(b, func(b *testing.B, st store.Store) {
		r := startTransitRig(b, st, transitValidators, 500)
		var n atomic.Int64
		var mu sync.Mutex
		lat := make([]time.Duration, 0, b.N)
		start := time.Now().Add(-29 * 24 * time.Hour)
		b.SetParallelism(transitValidators / runtime.GOMAXPROCS(0))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			own := make([]time.Duration, 0, 1024)
			for pb.Next() {
				i := n.Add(1)
				dev := r.devices[int(i)%len(r.devices)]
				t := r.tap(dev, r.cards[int(i)%len(r.cards)], start.Add(time.Duration(i)*time.Second), false)
				t0 := time.Now()
				a, err := r.client.Tap(context.Background(), t, 5*time.Second)
				own = append(own, time.Since(t0))
				if err != nil || a.Status != "charged" {
					b.Errorf("tap %s/%d: %+v %v", t.Device, t.Seq, a, err)
					return
				}
			}
			mu.Lock()
			lat = append(lat, own...)
			mu.Unlock()
		})
		b.StopTimer()
		slices.Sort(lat)
		if len(lat) > 0 {
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "taps/s")
	})
}

// BenchmarkTransitOffline: validators upload offline taps, 1,000 per
// upload, four uploads at a time, through the plugin to the hub. One op is
// one tap posted.
func BenchmarkTransitOffline(b *testing.B) {
	const per = 1000
	storetest.EachDriverB(b, func(b *testing.B, st store.Store) {
		r := startTransitRig(b, st, 16, 2000)
		start := time.Now().Add(-29 * 24 * time.Hour)
		var next atomic.Int64
		var wg sync.WaitGroup
		b.ResetTimer()
		for w := range 4 {
			wg.Go(func() {
				dev := r.devices[w]
				for {
					from := next.Add(per) - per
					if from >= int64(b.N) {
						return
					}
					count := min(per, int64(b.N)-from)
					taps := make([]tap.Tap, count)
					for j := range taps {
						k := from + int64(j)
						taps[j] = r.tap(dev, r.cards[int(k)%len(r.cards)], start.Add(time.Duration(k)*time.Second), true)
					}
					a, err := r.client.Upload(context.Background(), taps)
					if err != nil {
						b.Error(err)
						return
					}
					for _, res := range a.Results {
						if res.Status != "charged" {
							b.Errorf("upload: %+v", res)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "taps/s")
	})
}

// TestDenylistPushed: the hub announces a new deny-list version to the
// transit plugin, which refreshes at once, so a card reported lost reaches
// the validators' front end within seconds even though the plugin would
// poll only hourly.
func TestDenylistPushed(t *testing.T) {
	r := startTransitRigWith(t, storetest.OpenSQLite(t), 1, 2, 3_600_000)
	lost := r.cards[0]
	r.hub.must("POST", "/v1/cards/"+lost+"/loss", nil, 200)
	deadline := time.Now().Add(15 * time.Second)
	for {
		l, err := r.client.Denylist(context.Background(), -1, 0)
		if err == nil && slices.Contains(l.Cards, lost) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lost card did not reach the plugin's deny list: %+v %v", l, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
