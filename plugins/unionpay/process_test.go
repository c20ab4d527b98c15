package unionpay_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/citycard/citycard/conformance"
	"github.com/citycard/citycard/conformance/conformancetest"
	"github.com/citycard/citycard/plugins/unionpay"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/plugintest"
)

// pluginBinary builds citycard-plugin-unionpay once per test run and returns
// its path and SHA-256 sum.
func pluginBinary(t *testing.T) (string, []byte) {
	t.Helper()
	return conformancetest.Build(t, "./cmd/citycard-plugin-unionpay")
}

// TestMain removes the plugin binary the process tests built, and fails
// the run if a test leaves a goroutine behind: a link that leaked its
// reader, sender or a connection per restart would.
func TestMain(m *testing.M) { conformancetest.Main(m) }

// TestProcess runs the plugin binary as the hub's plugin host does
// (checksum, AutoMTLS, gRPC), against the switch simulator.
func TestProcess(t *testing.T) {
	bin, sum := pluginBinary(t)
	sw, addr := startSwitch(t)
	c, d, ctx := conformancetest.Launch(t, bin, sum)
	if d.Name != unionpay.Name || len(d.Handles) != 6 || len(d.Sends) != 3 {
		t.Fatalf("descriptor = %+v", d)
	}
	cfg, err := json.Marshal(config(addr, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Configure(ctx, cfg, plugintest.NewFakeHub()); err != nil {
		t.Fatal(err)
	}
	if err := c.Health(ctx); err != nil {
		t.Fatalf("health: %v", err)
	}
	m := authMsg("proc-000001", card(t, "622215"), "3012", 700)
	m.ID, m.Source, m.CorrelationID, m.CreatedAt = sdk.NewID(), "hub", "corr-proc-1", time.Now().UTC()
	m.SchemaID = d.Handles[0].SchemaID
	for range 2 { // a delivery and a redelivery
		replies, err := c.Handle(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if len(replies) != 1 || replies[0].Type != unionpay.TypeAuthorization || !strings.Contains(string(replies[0].Payload), `"approved"`) {
			t.Fatalf("replies = %+v", replies)
		}
	}
	if n := len(sw.Authorisations()); n != 1 {
		t.Errorf("%d authorisations at the switch, want 1", n)
	}
	if err := c.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// TestConformance proves the plugin binary with the conformance kit, as a
// partner proves theirs, against the switch simulator.
func TestConformance(t *testing.T) {
	bin, _ := pluginBinary(t)
	_, addr := startSwitch(t)
	mustJSON := conformancetest.MustJSON(t)
	pan := card(t, "622216")
	cfg := config(addr, t.TempDir())
	cfg["response_timeout_ms"] = 2000
	f := &conformance.File{
		Config: mustJSON(cfg),
		BadConfigs: []conformance.BadConfig{
			{Config: mustJSON(map[string]any{"switch_addr": addr, "master_key": "00", "acquirer_id": "48020000",
				"link_terminal": "CITYHUB1", "link_merchant": "CITYCARDHUB0001", "state_dir": t.TempDir()}), Why: "a master key too short"},
		},
		Samples: []conformance.Sample{
			{Type: unionpay.TypeAuthorize, IdempotencyKey: "conformance-auth-1", Payload: mustJSON(map[string]any{"pan": pan,
				"expiry": "3012", "amount": 100, "currency": "CNY", "merchant": merchant, "terminal": terminal})},
			{Type: unionpay.TypeReverse, IdempotencyKey: "conformance-rev-1", Payload: mustJSON(map[string]any{"authorization_key": "conformance-auth-1"})},
			{Type: unionpay.TypeTokenize, IdempotencyKey: "conformance-tok-1", Payload: mustJSON(map[string]any{"pan": pan, "expiry": "3012"})},
			{Type: unionpay.TypeAuthorize, IdempotencyKey: "conformance-pre-1", Payload: mustJSON(map[string]any{"pan": pan,
				"expiry": "3012", "amount": 500, "currency": "CNY", "merchant": merchant, "terminal": terminal, "transaction": "preauth",
				"pin_block": pinBlock(t, "123456", pan)})},
			{Type: unionpay.TypeComplete, IdempotencyKey: "conformance-comp-1", Payload: mustJSON(map[string]any{"authorization_key": "conformance-pre-1",
				"amount": 400, "currency": "CNY"})},
			{Type: unionpay.TypeCancel, IdempotencyKey: "conformance-void-1", Payload: mustJSON(map[string]any{"authorization_key": "conformance-comp-1",
				"kind": "void", "amount": 400, "currency": "CNY"})},
			{Type: unionpay.TypeBalance, IdempotencyKey: "conformance-bal-1", Payload: mustJSON(map[string]any{"pan": pan, "expiry": "3012"})},
		},
	}
	conformancetest.Check(t, "unionpay", bin, f)
}
