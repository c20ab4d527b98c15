package transit_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/citycard/citycard/conformance"
	"github.com/citycard/citycard/conformance/conformancetest"
	"github.com/citycard/citycard/plugins/transit"
	"github.com/citycard/citycard/plugins/transit/sim"
	"github.com/citycard/citycard/sdk"
)

// pluginBinary builds citycard-plugin-transit once per test run and returns
// its path and SHA-256 sum.
func pluginBinary(t *testing.T) (string, []byte) {
	t.Helper()
	return conformancetest.Build(t, "./cmd/citycard-plugin-transit")
}

// TestProcess runs the plugin binary as the hub's plugin host does
// (checksum, AutoMTLS, gRPC), finds its front end through transit.status.v1
// and has a validator tap online and upload through it.
func TestProcess(t *testing.T) {
	bin, sum := pluginBinary(t)
	c, d, ctx := conformancetest.Launch(t, bin, sum)
	if d.Name != transit.Name || len(d.Handles) != 2 || len(d.Sends) != 3 {
		t.Fatalf("descriptor = %+v", d)
	}
	hub := newHubDouble()
	hub.deny([]string{carol}, nil)
	if err := c.Configure(ctx, nil, hub.fake); err != nil {
		t.Fatal(err)
	}
	if err := c.Health(ctx); err != nil {
		t.Fatalf("health: %v", err)
	}
	replies, err := c.Handle(ctx, sdk.Message{Type: transit.TypeStatusQuery, Payload: json.RawMessage(`{}`)})
	var s transit.Status
	if err != nil || len(replies) != 1 || json.Unmarshal(replies[0].Payload, &s) != nil || s.Listen == "" || s.DenylistVersion != 1 {
		t.Fatalf("status: %+v %v", replies, err)
	}

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	dev := sim.Device{ID: "BUS-0100", Operator: "city-bus", Mode: "bus", Route: "15"}
	key, _ := hub.register(ctx, dev)
	v, err := sim.NewValidator(sim.Config{Device: dev, Key: key, Client: sim.NewClient("http://"+s.Listen, &http.Client{Transport: tr})})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.PollDenylist(ctx, 0); err != nil || !v.Denied(carol) {
		t.Fatalf("deny list: %v", err)
	}
	if d := v.Tap(ctx, alice); !d.Online || d.Result.Status != sim.Charged {
		t.Fatalf("online: %+v", d)
	}
	v.SetOffline(true)
	v.Tap(ctx, bob)
	v.SetOffline(false)
	if n, err := v.Upload(ctx); n != 1 || err != nil {
		t.Fatalf("upload: %d %v", n, err)
	}
	if err := v.Check(); err != nil {
		t.Error(err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// TestConformance proves the plugin binary with the conformance kit, as a
// partner proves theirs.
func TestConformance(t *testing.T) {
	bin, _ := pluginBinary(t)
	mustJSON := conformancetest.MustJSON(t)
	f := &conformance.File{
		// No refresh during the run: every call the plugin makes to the
		// stand-in hub is then one a message asked for.
		Config: mustJSON(map[string]any{"listen": "127.0.0.1:0", "denylist_refresh_ms": 3600000}),
		Samples: []conformance.Sample{
			// Ahead of the hub's version 3, so each delivery asks the hub.
			{Type: transit.TypeDenylistChanged, Payload: mustJSON(map[string]any{"version": 5})},
			{Type: transit.TypeStatusQuery, Payload: mustJSON(map[string]any{})},
		},
		Hub: conformance.HubAnswers{Queries: []conformance.QueryAnswer{
			{Kind: sdk.QueryDenylistVersion, Answer: mustJSON(map[string]any{"version": 3, "size": 1})},
			{Kind: "denylist", Answer: mustJSON(map[string]any{"version": 3, "full": true, "cards": []string{carol}})},
		}},
	}
	conformancetest.Check(t, "transit", bin, f)
}
