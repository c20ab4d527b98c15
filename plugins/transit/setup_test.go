package transit_test

import (
	"context"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/citycard/citycard/plugins/transit"
	"github.com/citycard/citycard/plugins/transit/sim"
	"github.com/citycard/citycard/sdk/plugintest"
	"github.com/citycard/citycard/sdk/transit/tap"
)

// Cards of the tests.
const (
	alice = "3100990000000013"
	bob   = "3100990000000021"
	carol = "3100990000000039" // reported lost in some tests
)

// testLog logs to stderr with -v and CITYCARD_TEST_LOG set, else nowhere.
func testLog() *slog.Logger {
	if os.Getenv("CITYCARD_TEST_LOG") != "" {
		return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// front is a configured plugin, its hub and its front end's address.
type front struct {
	h    *plugintest.Harness
	p    *transit.Plugin
	hub  *hubDouble
	base string
}

// start configures a plugin against a new hubDouble; cfg overrides the
// test defaults.
func start(t testing.TB, cfg map[string]any) *front {
	t.Helper()
	hub := newHubDouble()
	p := transit.New(transit.WithLogger(testLog()))
	h := plugintest.Start(t, p, plugintest.WithHub(hub.fake))
	c := map[string]any{"listen": "127.0.0.1:0", "denylist_refresh_ms": 60000}
	maps.Copy(c, cfg)
	if err := h.Configure(c); err != nil {
		t.Fatal(err)
	}
	return &front{h: h, p: p, hub: hub, base: "http://" + p.Addr()}
}

// client returns a protocol client whose connections close with the test.
func (f *front) client(t testing.TB) *sim.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 512}
	t.Cleanup(tr.CloseIdleConnections)
	return sim.NewClient(f.base, &http.Client{Transport: tr})
}

// validator registers a device with the hub and returns it as a validator.
func (f *front) validator(t *testing.T, id string) *sim.Validator {
	t.Helper()
	d := sim.Device{ID: id, Operator: "city-bus", Mode: "bus", Route: "1"}
	key, err := f.hub.register(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	v, err := sim.NewValidator(sim.Config{Device: d, Key: key, Stops: []string{"S01", "S02"}, Client: f.client(t)})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// signed returns a signed tap of dev under key.
func signed(t *testing.T, key []byte, dev string, seq int64, card string, offline bool) tap.Tap {
	t.Helper()
	tp := tap.Tap{Device: dev, Seq: seq, Card: card, At: time.Date(2026, 11, 26, 8, 0, int(seq), 0, time.UTC),
		Kind: tap.On, Route: "1", Stop: "S01", Offline: offline}
	mac, err := tap.Sign(key, tp)
	if err != nil {
		t.Fatal(err)
	}
	tp.MAC = mac
	return tp
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
