package utilities_test

import (
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/citycard/citycard/conformance"
	"github.com/citycard/citycard/conformance/conformancetest"
	"github.com/citycard/citycard/plugins/utilities"
	"github.com/citycard/citycard/plugins/utilities/sim"
	"github.com/citycard/citycard/sdk/plugintest"
)

// pluginBinary builds citycard-plugin-utilities once per test run and returns
// its path and SHA-256 sum.
func pluginBinary(t *testing.T) (string, []byte) {
	t.Helper()
	return conformancetest.Build(t, "./cmd/citycard-plugin-utilities")
}

// TestProcess runs the plugin binary as the hub's plugin host does
// (checksum, AutoMTLS, gRPC), against the simulator.
func TestProcess(t *testing.T) {
	bin, sum := pluginBinary(t)
	biller := sim.New(sim.Options{Now: clock})
	srv := httptest.NewServer(biller.Handler())
	t.Cleanup(srv.Close)
	c, d, ctx := conformancetest.Launch(t, bin, sum)
	if d.Name != "utilities" || len(d.Handles) != 2 || len(d.Sends) != 4 {
		t.Fatalf("descriptor = %+v", d)
	}
	cfg, err := json.Marshal(config(srv.URL))
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

	b, err := biller.Bill("water", "10020031")
	if err != nil {
		t.Fatal(err)
	}
	m := plugintest.NewMessage(utilities.TypeBillPay, map[string]any{"biller": "water", "account": "10020031",
		"bill_id": b.ID, "card": alice, "amount": b.Outstanding, "currency": "CNY"})
	m.IdempotencyKey, m.CorrelationID = "proc-000001", "corr-proc-1"
	var receipts []utilities.Receipt
	for range 2 { // a delivery and a redelivery
		replies, err := c.Handle(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if len(replies) != 1 || replies[0].Type != utilities.TypeReceipt || replies[0].Source != "utilities" || replies[0].CorrelationID != "corr-proc-1" {
			t.Fatalf("replies = %+v", replies)
		}
		var r utilities.Receipt
		if err := json.Unmarshal(replies[0].Payload, &r); err != nil {
			t.Fatal(err)
		}
		receipts = append(receipts, r)
	}
	if receipts[0].Status != utilities.Approved || asJSON(t, receipts[0]) != asJSON(t, receipts[1]) {
		t.Errorf("receipts = %+v", receipts)
	}
	if n, p := len(hub.Submitted()), len(biller.Payments()); n != 1 || p != 1 {
		t.Errorf("hub got %d messages, biller %d payments; want 1 and 1", n, p)
	}

	// A bad message is refused with its code and field across the process boundary.
	bad := plugintest.NewMessage(utilities.TypeBillPay, map[string]any{"biller": "gas", "account": "10020031",
		"bill_id": b.ID, "card": alice, "amount": 100, "currency": "CNY"})
	bad.IdempotencyKey = "proc-000002"
	_, err = c.Handle(ctx, bad)
	wantError(t, err, "not_found", "/payload/biller")

	srv.Close()
	if err := c.Health(ctx); err == nil {
		t.Error("healthy with the billers' host gone")
	}
	if err := c.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// TestConformance proves the plugin binary with the conformance kit, as a
// partner proves theirs, against the simulator.
func TestConformance(t *testing.T) {
	bin, _ := pluginBinary(t)
	biller := sim.New(sim.Options{Now: clock})
	srv := httptest.NewServer(biller.Handler())
	defer srv.Close()
	b, err := biller.Bill("power", "10020031")
	if err != nil {
		t.Fatal(err)
	}
	mustJSON := conformancetest.MustJSON(t)
	f := &conformance.File{
		Config: mustJSON(config(srv.URL)),
		Samples: []conformance.Sample{
			{Type: utilities.TypeBillQuery, Payload: mustJSON(map[string]any{"biller": "power", "account": "10020031"})},
			{Type: utilities.TypeBillPay, IdempotencyKey: "conformance-pay-1", Payload: mustJSON(map[string]any{"biller": "power",
				"account": "10020031", "bill_id": b.ID, "card": alice, "amount": 1000, "currency": "CNY"})},
		},
		Hub: conformance.HubAnswers{Answers: map[string]json.RawMessage{
			utilities.TypeCardPayment: mustJSON(map[string]any{"id": "42", "status": "approved", "card": alice, "channel": "utilities",
				"merchant": "M-POWER", "amount": 1000, "currency": "CNY", "legs": []any{}, "balance": 49000, "at": "2026-11-26T02:00:00Z"}),
		}},
	}
	conformancetest.Check(t, "utilities", bin, f)
}
