package wiring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/payments"
	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/hub/internal/pluginhost"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
	"github.com/citycard/citycard/hub/internal/wiring"
	"github.com/citycard/citycard/plugins/medical"
	"github.com/citycard/citycard/plugins/medical/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
)

// medHub is a hub with the medical plugin, its insurer simulator and the
// fake bank acquirer, a hospital and one card.
type medHub struct {
	*splitHub
	ins *sim.Insurer
	his *sim.HIS
}

const hospital = "M-HOSP"

func startMedHub(t *testing.T, st store.Store, ins *sim.Insurer, staleAfter time.Duration) *medHub {
	t.Helper()
	t.Cleanup(pin.SetCostForTesting(1, 8))
	url, stopIns, err := ins.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopIns)
	medBin, medSum := testPlugin(t, "github.com/citycard/citycard/plugins/medical/cmd/citycard-plugin-medical")
	bankBin, bankSum := testPlugin(t, "./testdata/fakebank")
	cfg, _ := json.Marshal(map[string]any{"listen": "127.0.0.1:0", "insurer_url": url, "org_code": "H0001",
		"insurer_timeout_ms": 300})
	app, err := wiring.New(context.Background(), st, wiring.Config{AdminToken: token, Logger: quiet, BankPlugin: "fakebank",
		BankTimeout: time.Second, SagaStaleAfter: staleAfter,
		Ledger: ledger.Config{Now: func() time.Time { return time.Now().Truncate(time.Microsecond) }},
		Plugins: []pluginhost.Spec{
			{Name: "medical", Path: medBin, SHA256: medSum, Channel: "medical", Config: cfg},
			{Name: "fakebank", Path: bankBin, SHA256: bankSum},
		}})
	if err != nil {
		t.Fatal(err)
	}
	c, stop, done := serve(t, app)
	var once sync.Once
	h := &medHub{splitHub: &splitHub{pluginHub: &pluginHub{app: app, c: c, st: st}, stop: func() { once.Do(func() { stop(); <-done }) }}, ins: ins}
	t.Cleanup(h.stop)
	replies, err := app.Send(context.Background(), "medical", sdk.Message{Type: medical.TypeStatus, Payload: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	var state medical.State
	if err := json.Unmarshal(replies[0].Payload, &state); err != nil {
		t.Fatal(err)
	}
	h.his = sim.NewHIS(state.Listen)
	t.Cleanup(h.his.Close)
	return h
}

// seed adds the hospital and a card with medical and cash purses.
func (h *medHub) seed(t *testing.T, medicalPurse, cash int) {
	t.Helper()
	if _, err := h.st.GetMerchant(context.Background(), hospital); err != nil {
		h.c.must("POST", "/v1/merchants", map[string]any{"id": hospital, "name": "Hospital", "mcc": "8062", "settlement_account": "1"}, 201)
	}
	h.card = h.c.must("POST", "/v1/cards", map[string]any{"holder": map[string]any{"name": "Alice", "id_type": "passport", "id_number": fmt.Sprint(time.Now().UnixNano())}}, 201)["number"].(string)
	if medicalPurse > 0 {
		h.c.must("POST", "/v1/cards/"+h.card+"/topups", map[string]any{"amount": medicalPurse, "currency": "CNY", "purse": "medical"}, 201)
	}
	if cash > 0 {
		h.c.must("POST", "/v1/cards/"+h.card+"/topups", map[string]any{"amount": cash, "currency": "CNY"}, 201)
	}
}

func (h *medHub) purses(t *testing.T) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, p := range h.c.must("GET", "/v1/cards/"+h.card, nil, 200)["purses"].([]any) {
		m := p.(map[string]any)
		out[m["purse"].(string)] = m["posted"].(float64)
	}
	return out
}

// alice is the insurer simulator's insured patient: the fund pays 70%,
// the personal account may pay half of the rest.
var alice = sim.DefaultPersons()[0]

func (h *medHub) bill(t *testing.T, id string, patient sim.Person, amount int64) sdk.MedicalReceipt {
	t.Helper()
	b := sim.Bill{BillID: id, Hospital: hospital, Kind: "outpatient", Card: h.card, Currency: "CNY",
		Patient: sim.Patient{IDNo: patient.IDNo, Name: patient.Name},
		Lines:   billLines(amount)}.Totalled()
	a, err := h.his.PostBill(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if p := a.Problem(); p != nil {
		t.Fatalf("bill %s: %d %+v", id, a.Status, p)
	}
	var r sdk.MedicalReceipt
	if err := a.Decode(&r); err != nil {
		t.Fatal(err)
	}
	matches(t, "msg-medical-receipt-v1", r)
	return r
}

func (h *medHub) live(t *testing.T) int { t.Helper(); return len(h.ins.LiveSettlements()) }

func wantPurses(t *testing.T, got map[string]float64, medicalPurse, cash float64) {
	t.Helper()
	if got["medical"] != medicalPurse || got["cash"] != cash {
		t.Fatalf("purses %v, want medical %v cash %v", got, medicalPurse, cash)
	}
}

// TestMedicalBills: the insurer's share first, then the medical purse up
// to the personal account share, then cash, then the linked bank card; a
// refusal anywhere undoes everything, and a refund undoes every leg.
func TestMedicalBills(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		ins := sim.New(sim.Options{Persons: sim.DefaultPersons()})
		h := startMedHub(t, st, ins, time.Hour)
		ctx := context.Background()

		// Every bill below is 100.00 (a consultation and the medicine, half
		// each). Alice's insurer splits it fund 70.00, account 15.00 (half
		// the rest), cash 15.00; the card pays the account's and the cash
		// share, 30.00, from the medical purse up to the account's share,
		// then cash, then the bank card.
		const visit = 10000
		total := billTotal(billLines(visit))
		split := insurerSplit(total, alice.FundRatioBps, alice.AcctRatioBps)
		patient := patientPays(split)

		// Fully insured: the purses hold enough, so each pays its share.
		const purse, cash = 5000, 5000
		h.seed(t, purse, cash)
		r := h.bill(t, "b1", alice, visit)
		if r.Status != sdk.BillSettled || r.Total != total || r.FundPay != split.FundPay || r.MedicalPurse != split.AcctPay ||
			r.CashPurse != split.CashPay || r.BankCard != 0 ||
			r.SetlID == "" || r.Settlement == nil || r.Presettlement == nil || *r.Settlement != *r.Presettlement {
			t.Fatalf("insured bill: %+v, want split %+v", r, split)
		}
		wantPurses(t, h.purses(t), purse-float64(split.AcctPay), cash-float64(split.CashPay))
		if h.live(t) != 1 {
			t.Fatalf("insurer holds %d live settlements", h.live(t))
		}
		// Sent again: the same receipt, one settlement.
		if again := h.bill(t, "b1", alice, visit); again.Payment != r.Payment || h.live(t) != 1 {
			t.Fatalf("resent bill: %+v, %d live", again, h.live(t))
		}

		// Medical purse short: it pays what it has, cash the rest of the
		// patient's share.
		const shortPurse = 500
		h.seed(t, shortPurse, cash)
		r = h.bill(t, "b2", alice, visit)
		if r.Status != sdk.BillSettled || r.MedicalPurse != shortPurse || r.CashPurse != patient-shortPurse || r.BankCard != 0 {
			t.Fatalf("medical purse short: %+v", r)
		}
		wantPurses(t, h.purses(t), 0, cash-float64(patient-shortPurse))

		// Cash short too: the linked bank card pays the rest.
		const shortCash = 1000
		h.seed(t, shortPurse, shortCash)
		h.link(t, bankPAN(t, "0019"))
		r = h.bill(t, "b3", alice, visit)
		bankPart := patient - shortPurse - shortCash
		if r.Status != sdk.BillSettled || r.MedicalPurse != shortPurse || r.CashPurse != shortCash || r.BankCard != bankPart || r.BankCardMasked == "" {
			t.Fatalf("bank card pays the rest (%d): %+v", bankPart, r)
		}
		wantPurses(t, h.purses(t), 0, 0)
		// Refund: the bank card's part refunded at the bank, the purses
		// credited, the insurer's settlement reversed.
		a, err := h.his.Refund(ctx, hospital, "b3")
		if err != nil || a.Problem() != nil {
			t.Fatalf("refund: %v %+v", err, a.Problem())
		}
		var rf sdk.MedicalReceipt
		_ = a.Decode(&rf)
		if rf.Status != sdk.BillRefunded || rf.BankCard != bankPart {
			t.Fatalf("refund receipt %+v", rf)
		}
		wantPurses(t, h.purses(t), shortPurse, shortCash)
		if c := h.bank(t); c.Cancels["bank:medical:bill:M-HOSP:b3"] != "refund" {
			t.Fatalf("the bank card's part was not refunded at the bank: %+v", c.Cancels)
		}
		if n := h.live(t); n != 2 {
			t.Fatalf("after the refund the insurer holds %d live settlements, want 2", n)
		}

		// The bank declines: everything undone, the insurer's settlement reversed.
		h.seed(t, 0, shortCash)
		h.link(t, bankPAN(t, "0051"))
		r = h.bill(t, "b4", alice, visit)
		if r.Status != sdk.BillDeclined || r.Reason != sdk.CodeInsufficientFunds {
			t.Fatalf("bank declines: %+v", r)
		}
		wantPurses(t, h.purses(t), 0, shortCash)
		if n := h.live(t); n != 2 {
			t.Fatalf("after a decline the insurer holds %d live settlements, want 2", n)
		}
		if !slices.ContainsFunc(ins.Reversals(), func(rv sim.Reversal) bool { return rv.SetlID == r.SetlID && r.SetlID != "" }) {
			t.Fatalf("the insurer was not sent the reversal of %q: %+v", r.SetlID, ins.Reversals())
		}
		// No bank card and not enough: declined the same way.
		h.seed(t, 0, shortCash)
		if r := h.bill(t, "b5", alice, visit); r.Status != sdk.BillDeclined || r.Reason != sdk.CodeInsufficientFunds {
			t.Fatalf("no bank card: %+v", r)
		}

		// The insurer times out twice: both requests corrected, the bill
		// declined, nothing charged.
		h.seed(t, purse, cash)
		ins.TimeoutNext(2, time.Second)
		r = h.bill(t, "b6", alice, visit)
		if r.Status != sdk.BillDeclined || r.Reason != sdk.CodeInsurerUnavailable {
			t.Fatalf("insurer timeout: %+v", r)
		}
		wantPurses(t, h.purses(t), purse, cash)
		if n := h.live(t); n != 2 {
			t.Fatalf("after an insurer timeout it holds %d live settlements, want 2", n)
		}
		// The insurer refuses.
		ins.FailNext(1, "visit closed")
		if r := h.bill(t, "b7", alice, visit); r.Status != sdk.BillDeclined || r.Reason != sdk.CodeInsurerDeclined {
			t.Fatalf("insurer error: %+v", r)
		}

		// The settlement differs from the pre-settlement (the fund now pays
		// 60%): the settlement is charged.
		const settledFundBps = 6000
		ins.OverrideSettlement(alice.PsnNo, settledFundBps, alice.AcctRatioBps)
		settled := insurerSplit(total, settledFundBps, alice.AcctRatioBps)
		r = h.bill(t, "b8", alice, visit)
		if r.Status != sdk.BillSettled || r.Presettlement == nil || r.Settlement == nil || r.FundPay != settled.FundPay ||
			r.Presettlement.FundPay != split.FundPay || r.MedicalPurse != settled.AcctPay || r.CashPurse != settled.CashPay {
			t.Fatalf("settlement differs: %+v (presettlement %+v settlement %+v), want %+v", r, r.Presettlement, r.Settlement, settled)
		}
		wantPurses(t, h.purses(t), purse-float64(settled.AcctPay), cash-float64(settled.CashPay))

		// Uninsured: the card pays it all.
		carol := sim.DefaultPersons()[2]
		const uninsuredVisit = 3000
		h.seed(t, 0, cash)
		if r := h.bill(t, "b9", carol, uninsuredVisit); r.Status != sdk.BillSettled || r.FundPay != 0 || r.CashPurse != uninsuredVisit {
			t.Fatalf("uninsured: %+v", r)
		}
		// A card the hub never issued: declined, and the insurer never asked.
		settlements := len(ins.Settlements())
		issued := h.card
		for d := range 10 {
			if n := "310099000099999" + strconv.Itoa(d); cardcrypto.LuhnValid(n) {
				h.card = n
			}
		}
		if r := h.bill(t, "b10", alice, visit); r.Status != sdk.BillDeclined || r.Reason != sdk.CodeCardNotFound {
			t.Fatalf("unknown card: %+v", r)
		}
		if len(ins.Settlements()) != settlements {
			t.Fatal("the insurer settled a bill for a card the hub does not know")
		}
		h.card = issued
		// A refund of a bill that was never settled.
		a, _ = h.his.Refund(ctx, hospital, "nope")
		if p := a.Problem(); p == nil || p.Code != "bill_not_found" {
			t.Fatalf("refund of an unknown bill: %d %+v", a.Status, p)
		}
		if open, _ := st.OpenSagas(ctx, 10); len(open) != 0 {
			t.Fatalf("open sagas: %+v", open)
		}

		// The day's reconciliation: the hub's settled bills (b1, b2, b8; b3
		// was refunded, b9 never went to the insurer) match the insurer's.
		today := time.Now().In(payments.CityZone).Format(time.DateOnly)
		var rec payments.Reconciliation
		into(t, h.c.must("GET", "/v1/medical/reconciliation?date="+today, nil, 200), &rec)
		matches(t, "api-medical-reconciliation", rec)
		if !rec.Matched || rec.Hub.Count != 3 || rec.Hub != rec.Insurer || len(rec.Bills) != 3 {
			t.Fatalf("reconciliation: %+v", rec)
		}
		// A settlement the hub never heard of shows as a difference.
		mdtrt, err := ins.Register(alice.PsnNo, "H0001", "stray", []sim.FeeLine{{Code: "X", Name: "X", UnitPrice: 1000, Quantity: 1, Amount: 1000}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ins.Settle("stray-1", alice.PsnNo, mdtrt); err != nil {
			t.Fatal(err)
		}
		rec = payments.Reconciliation{}
		into(t, h.c.must("GET", "/v1/medical/reconciliation?date="+today, nil, 200), &rec)
		if rec.Matched || len(rec.Differences) != 4 || rec.Differences[0].Field != "count" || rec.Differences[0].Insurer != 4 {
			t.Fatalf("reconciliation with a stray settlement: %+v", rec)
		}
		h.verify(t)
	})
}

// into decodes an answer into v.
func into(t *testing.T, m map[string]any, v any) {
	t.Helper()
	b, _ := json.Marshal(m)
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}
