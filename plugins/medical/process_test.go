package medical_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/citycard/citycard/conformance"
	"github.com/citycard/citycard/conformance/conformancetest"
	"github.com/citycard/citycard/plugins/medical"
	"github.com/citycard/citycard/plugins/medical/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/plugintest"
)

// pluginBinary builds citycard-plugin-medical once per test run and
// returns its path and SHA-256 sum.
func pluginBinary(t *testing.T) (string, []byte) {
	t.Helper()
	return conformancetest.Build(t, "./cmd/citycard-plugin-medical")
}

// TestProcess runs the plugin binary as the hub's plugin host does
// (checksum, AutoMTLS, gRPC), against the insurer simulator: a hospital
// posts a bill to the process's HTTP API, found through medical.status.v1.
func TestProcess(t *testing.T) {
	bin, sum := pluginBinary(t)
	ins := sim.New(sim.Options{Now: clock})
	srv := httptest.NewServer(ins.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(ins.Close)
	c, d, ctx := conformancetest.Launch(t, bin, sum)
	if d.Name != "medical" || len(d.Handles) != 4 || len(d.Sends) != 6 {
		t.Fatalf("descriptor = %+v", d)
	}
	cfg, err := json.Marshal(config(srv.URL, 2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	hub := plugintest.NewFakeHub()
	hub.RespondWith(func(m sdk.Message) (json.RawMessage, error) {
		return json.RawMessage(`{"bill_id":"OP-PROC-1","status":"settled","total":5050,"fund_pay":0,"medical_purse":0,"cash_purse":5050,"bank_card":0}`), nil
	})
	if err := c.Configure(ctx, cfg, hub); err != nil {
		t.Fatal(err)
	}
	if err := c.Health(ctx); err != nil {
		t.Fatalf("health: %v", err)
	}
	replies, err := c.Handle(ctx, plugintest.NewMessage(medical.TypeStatus, map[string]any{}))
	var st medical.State
	if err != nil || only(replies, medical.TypeState, &st) != nil || st.Listen == "" {
		t.Fatalf("status: %+v %v", replies, err)
	}
	his := sim.NewHIS(st.Listen)
	defer his.Close()
	a, err := his.PostBill(ctx, bill("OP-PROC-1", hospital, medical.Outpatient, aliceCard, aliceID, "Alice"))
	if err != nil || a.Status != http.StatusOK {
		t.Fatalf("bill: %+v %v", a, err)
	}
	bills := hub.Submitted()
	var b medical.BillMessage
	if len(bills) != 1 || json.Unmarshal(bills[0].Payload, &b) != nil || !b.Insured || b.Presettlement == nil || bills[0].Source != "medical" {
		t.Fatalf("the hub got %+v", bills)
	}
	// The hub settles the visit through the plugin.
	m := plugintest.NewMessage(medical.TypeSettle, map[string]any{"bill_key": bills[0].IdempotencyKey, "psn_no": b.PsnNo,
		"mdtrt_id": b.MdtrtID, "bill_id": b.BillID, "total": b.Total, "currency": "CNY"})
	m.IdempotencyKey = "settle:" + bills[0].IdempotencyKey
	replies, err = c.Handle(ctx, m)
	var s medical.Settlement
	if err != nil || only(replies, medical.TypeSettlement, &s) != nil || s.Status != medical.Settled || s.Split != *b.Presettlement {
		t.Errorf("settlement: %+v %v (pre-settled %+v)", s, err, b.Presettlement)
	}
	if err := c.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// TestConformance proves the plugin binary with the conformance kit, as a
// partner proves theirs, against the insurer simulator.
func TestConformance(t *testing.T) {
	bin, _ := pluginBinary(t)
	ins := sim.New(sim.Options{Now: clock})
	srv := httptest.NewServer(ins.Handler())
	defer srv.Close()
	defer ins.Close()
	// A visit to settle, and a settled one to reverse.
	toSettle, err := ins.Register(alicePsn, orgCode, "CONF-1", feeLines())
	if err != nil {
		t.Fatal(err)
	}
	toReverse, err := ins.Register(alicePsn, orgCode, "CONF-2", feeLines())
	if err != nil {
		t.Fatal(err)
	}
	setl, err := ins.Settle("CONF-SETTLE-2", alicePsn, toReverse)
	if err != nil {
		t.Fatal(err)
	}
	mustJSON := conformancetest.MustJSON(t)
	f := &conformance.File{
		Config: mustJSON(config(srv.URL, 2*time.Second)),
		BadConfigs: []conformance.BadConfig{
			{Config: mustJSON(map[string]any{"insurer_url": "ftp://insurer.example", "org_code": orgCode}), Why: "the insurer speaks HTTP"},
		},
		Samples: []conformance.Sample{
			{Type: medical.TypeSettle, IdempotencyKey: "settle:bill:M-HOSP-1:CONF-1", Payload: mustJSON(map[string]any{
				"bill_key": "bill:M-HOSP-1:CONF-1", "psn_no": alicePsn, "mdtrt_id": toSettle, "bill_id": "CONF-1", "total": 5050, "currency": "CNY"})},
			{Type: medical.TypeSettleReverse, IdempotencyKey: "reverse:bill:M-HOSP-1:CONF-2", Payload: mustJSON(map[string]any{
				"bill_key": "bill:M-HOSP-1:CONF-2", "setl_id": setl.SetlID, "psn_no": alicePsn, "mdtrt_id": toReverse})},
			{Type: medical.TypeReconcile, Payload: mustJSON(map[string]any{"date": "2026-11-25"})},
			{Type: medical.TypeStatus, Payload: mustJSON(map[string]any{})},
		},
	}
	conformancetest.Check(t, "medical", bin, f)
}
