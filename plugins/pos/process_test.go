package pos_test

import (
	"encoding/json"
	"testing"

	"github.com/citycard/citycard/conformance"
	"github.com/citycard/citycard/conformance/conformancetest"
	"github.com/citycard/citycard/plugins/pos"
	"github.com/citycard/citycard/plugins/pos/sim"
	"github.com/citycard/citycard/sdk/plugintest"
)

// pluginBinary builds citycard-plugin-pos once per test run and returns
// its path and SHA-256 sum.
func pluginBinary(t *testing.T) (string, []byte) {
	t.Helper()
	return conformancetest.Build(t, "./cmd/citycard-plugin-pos")
}

// TestProcess runs the plugin binary as the hub's plugin host does
// (checksum, AutoMTLS, gRPC), finds its front end through
// pos.terminal.status.v1 and has a terminal sign on and pay through it.
func TestProcess(t *testing.T) {
	bin, sum := pluginBinary(t)
	c, d, ctx := conformancetest.Launch(t, bin, sum)
	if d.Name != pos.Name || len(d.Handles) != 1 || len(d.Sends) != 7 {
		t.Fatalf("descriptor: %s, %d handled, %d sent types", d.Name, len(d.Handles), len(d.Sends))
	}
	cfg, err := json.Marshal(config())
	if err != nil {
		t.Fatal(err)
	}
	hub := plugintest.NewFakeHub()
	bk := newBank()
	hub.RespondWith(bk.respond)
	if err := c.Configure(ctx, cfg, hub); err != nil {
		t.Fatal(err)
	}
	if err := c.Health(ctx); err != nil {
		t.Fatalf("health: %v", err)
	}
	replies, err := c.Handle(ctx, plugintest.NewMessage(pos.TypeTerminalStatus, map[string]any{"terminal": term1}))
	var s pos.TerminalState
	if err != nil || len(replies) != 1 || json.Unmarshal(replies[0].Payload, &s) != nil || s.Listen == "" || !s.Known {
		t.Fatalf("status: %+v %v", replies, err)
	}
	term, err := sim.New(sim.Config{Addr: s.Listen, TerminalID: term1, MerchantID: acceptor, MasterKey: key(t, tmkHex)})
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	if rc, err := term.SignOn(ctx); err != nil || rc != "00" {
		t.Fatalf("sign-on: %s %v", rc, err)
	}
	r, err := term.Purchase(ctx, sim.Card{PAN: alice, PIN: "123456"}, 1234)
	if err != nil || r.RC != "00" {
		t.Fatalf("purchase: %+v %v", r, err)
	}
	if v, err := term.Void(ctx, r, sim.Card{PAN: alice}); err != nil || v.RC != "00" {
		t.Fatalf("void: %+v %v", v, err)
	}
	if bk.balance(alice) != 50000 || len(hub.Submitted()) != 2 {
		t.Errorf("alice %d, hub got %d messages", bk.balance(alice), len(hub.Submitted()))
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
		Config: mustJSON(config()),
		Samples: []conformance.Sample{
			{Type: pos.TypeTerminalStatus, Payload: mustJSON(map[string]any{"terminal": term1})},
		},
	}
	conformancetest.Check(t, "pos", bin, f)
}
