package medical

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/citycard/citycard/plugins/demo"
	"github.com/citycard/citycard/plugins/medical/sim"
	"github.com/citycard/citycard/sdk"
)

// The demo's hospital and pharmacy, and their code at the insurer.
const (
	// DemoHospital is the city hospital's merchant id at the hub.
	DemoHospital = "M-HOSP-CITY"
	// DemoPharmacy is the corner pharmacy's merchant id at the hub.
	DemoPharmacy = "M-PHARM-CITY"
	// DemoOrgCode is the code the insurer knows them by (fixmedins_code).
	DemoOrgCode = "H31010000001"
)

// Bundle is the medical plugin as the citycard binary ships it: the
// plugin, the insurer's simulator it talks to in the demo (knowing
// sim.DefaultPersons), the hospital and the pharmacy, and the demo flows.
// The flows play the hospital's system with sim.HIS against the plugin's
// HTTP API, which they find with medical.status.v1.
func Bundle() demo.Bundle {
	d := &demoRun{}
	return demo.Bundle{
		Name:    Name,
		Channel: "medical",
		New:     func() sdk.Plugin { return New() },
		Merchants: []demo.Merchant{
			{ID: DemoHospital, Name: "City Hospital", MCC: "8062", FeeRateBps: 30},
			{ID: DemoPharmacy, Name: "Corner Pharmacy", MCC: "5912", FeeRateBps: 50},
		},
		Start: d.start,
		Flows: []demo.Flow{
			{Name: "medical: insured outpatient bill, the insurer first and the card for the rest", Run: d.outpatient},
			{Name: "medical: pharmacy bill, without registration", Run: d.pharmacy},
			{Name: "medical: uninsured patient pays it all by card", Run: d.uninsured},
			{Name: "medical: refund of a bill reverses its settlement", Run: d.refund},
			{Name: "medical: reconciliation with the insurer's day totals", Run: d.reconcile},
		},
	}
}

// DemoConfig is the plugin's configuration in the demo, for an insurer at
// insurerURL: the HTTP API on a free local port.
func DemoConfig(insurerURL string) json.RawMessage {
	cfg, _ := json.Marshal(map[string]any{"listen": "127.0.0.1:0", "insurer_url": insurerURL, "org_code": DemoOrgCode,
		"insurer_timeout_ms": 5000, "hub_timeout_ms": 10000})
	return cfg
}

// StartDemoInsurer starts the insurer's simulator on a free local port
// and returns it, the plugin's configuration pointing at it, and the
// function that stops it.
func StartDemoInsurer() (*sim.Insurer, json.RawMessage, func(), error) {
	ins := sim.New(sim.Options{})
	url, stop, err := ins.Start("127.0.0.1:0")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("medical: starting the insurer's simulator: %w", err)
	}
	return ins, DemoConfig(url), stop, nil
}

// demoRun is one demo's insurer and the receipts its flows collected.
type demoRun struct {
	mu       sync.Mutex
	run      string // makes this run's bill ids its own
	receipts map[string]Receipt
}

// Receipt is the part of the hub's answer to medical.bill.v1 the demo
// reads.
type Receipt struct {
	BillID        string `json:"bill_id"`
	Status        string `json:"status"`
	Reason        string `json:"reason,omitempty"`
	Total         int64  `json:"total"`
	FundPay       int64  `json:"fund_pay"`
	MedicalPurse  int64  `json:"medical_purse"`
	CashPurse     int64  `json:"cash_purse"`
	BankCard      int64  `json:"bank_card"`
	SetlID        string `json:"setl_id,omitempty"`
	Presettlement *Split `json:"presettlement,omitempty"`
}

func (d *demoRun) start(ctx context.Context) (json.RawMessage, func(), error) {
	_, cfg, stop, err := StartDemoInsurer()
	if err != nil {
		return nil, nil, err
	}
	id := sdk.NewID() // UUIDv7: the time first, the random bits last
	d.mu.Lock()
	d.run, d.receipts = strings.ToUpper(id[len(id)-8:]), map[string]Receipt{}
	d.mu.Unlock()
	return cfg, stop, nil
}

func (d *demoRun) billID(name string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return name + "-" + d.run
}

func (d *demoRun) keep(r Receipt) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.receipts[r.BillID] = r
}

// his asks the plugin where its API listens and returns a HIS for it.
func his(ctx context.Context, env demo.Env) (*sim.HIS, error) {
	replies, err := env.Send(ctx, Name, sdk.Message{Type: TypeStatus, Payload: json.RawMessage(`{}`)})
	if err != nil {
		return nil, fmt.Errorf("asking the medical plugin where it listens: %w", err)
	}
	var s State
	if len(replies) != 1 || replies[0].Type != TypeState || json.Unmarshal(replies[0].Payload, &s) != nil || s.Listen == "" {
		return nil, fmt.Errorf("the medical plugin answered its status with %+v", replies)
	}
	return sim.NewHIS(s.Listen), nil
}

// demoPatients are the insurer simulator's people by name.
func demoPatient(name string) sim.Patient {
	for _, p := range sim.DefaultPersons() {
		if p.Name == name {
			return sim.Patient{IDNo: p.IDNo, Name: p.Name}
		}
	}
	return sim.Patient{Name: name}
}

func demoBill(id, hospital, kind, card string, patient sim.Patient, lines ...sim.Line) sim.Bill {
	return sim.Bill{BillID: id, Hospital: hospital, Kind: kind, Card: card, Patient: patient, Lines: lines, Currency: "CNY"}.Totalled()
}

// postBill posts b and reads the hub's receipt.
func postBill(ctx context.Context, env demo.Env, b sim.Bill) (Receipt, error) {
	h, err := his(ctx, env)
	if err != nil {
		return Receipt{}, err
	}
	defer h.Close()
	a, err := h.PostBill(ctx, b)
	if err != nil {
		return Receipt{}, err
	}
	if p := a.Problem(); p != nil {
		if p.Code == sdk.CodeUnsupportedMessageType {
			return Receipt{}, fmt.Errorf("bill %s: the hub does not settle medical bills yet (%s)", b.BillID, p.Message)
		}
		return Receipt{}, fmt.Errorf("bill %s: HTTP %d %s at %q: %s", b.BillID, a.Status, p.Code, p.Field, p.Message)
	}
	var r Receipt
	if err := a.Decode(&r); err != nil {
		return Receipt{}, fmt.Errorf("bill %s: the receipt: %w", b.BillID, err)
	}
	return r, nil
}

func (d *demoRun) outpatient(ctx context.Context, env demo.Env) error {
	b := demoBill(d.billID("OP"), DemoHospital, Outpatient, env.Card("alice"), demoPatient("Alice"),
		sim.NewLine("110200001", "Outpatient consultation", 2500, 1),
		sim.NewLine("250101001", "Blood count", 1800, 1),
		sim.NewLine("XJ01CAA040", "Amoxicillin capsules 0.25g", 1275, 2))
	r, err := postBill(ctx, env, b)
	if err != nil {
		return err
	}
	if r.Status != Settled || r.Presettlement == nil || r.SetlID == "" || r.Total != b.Total {
		return fmt.Errorf("alice's outpatient bill was not settled with the insurer: %+v", r)
	}
	env.Logf("bill %s, %s: pre-settled fund %s, account %s, cash %s", b.BillID, demo.Yuan(b.Total),
		demo.Yuan(r.Presettlement.FundPay), demo.Yuan(r.Presettlement.AcctPay), demo.Yuan(r.Presettlement.CashPay))
	env.Logf("settled %s: the pooled fund paid %s, the card's medical purse %s, its cash purse %s, a bank card %s",
		r.SetlID, demo.Yuan(r.FundPay), demo.Yuan(r.MedicalPurse), demo.Yuan(r.CashPurse), demo.Yuan(r.BankCard))
	if r.FundPay+r.MedicalPurse+r.CashPurse+r.BankCard != r.Total {
		return fmt.Errorf("the receipt does not add up: %+v", r)
	}
	again, err := postBill(ctx, env, b)
	if err != nil {
		return err
	}
	if again.SetlID != r.SetlID || again.Status != r.Status {
		return fmt.Errorf("the same bill posted again settled again: %+v, first %+v", again, r)
	}
	env.Logf("the same bill posted again answers the same receipt")
	d.keep(r)
	return nil
}

func (d *demoRun) pharmacy(ctx context.Context, env demo.Env) error {
	b := demoBill(d.billID("RX"), DemoPharmacy, Pharmacy, env.Card("alice"), demoPatient("Alice"),
		sim.NewLine("XA02BCA211", "Omeprazole capsules 20mg", 1580, 2))
	r, err := postBill(ctx, env, b)
	if err != nil {
		return err
	}
	if r.Status != Settled || r.SetlID == "" || r.FundPay == 0 {
		return fmt.Errorf("alice's pharmacy bill was not settled with the insurer: %+v", r)
	}
	env.Logf("pharmacy bill %s, %s, settled %s without a registration: fund %s, card %s", b.BillID, demo.Yuan(b.Total), r.SetlID,
		demo.Yuan(r.FundPay), demo.Yuan(r.MedicalPurse+r.CashPurse))
	d.keep(r)
	return nil
}

func (d *demoRun) uninsured(ctx context.Context, env demo.Env) error {
	b := demoBill(d.billID("OPU"), DemoHospital, Outpatient, env.Card("alice"), demoPatient("Carol"),
		sim.NewLine("110200001", "Outpatient consultation", 2500, 1))
	r, err := postBill(ctx, env, b)
	if err != nil {
		return err
	}
	if r.Status != Settled || r.FundPay != 0 || r.SetlID != "" {
		return fmt.Errorf("an uninsured patient's bill: %+v", r)
	}
	env.Logf("Carol is not insured: bill %s, %s, paid by card (cash purse %s, bank card %s)", b.BillID, demo.Yuan(b.Total), demo.Yuan(r.CashPurse), demo.Yuan(r.BankCard))
	return nil
}

func (d *demoRun) refund(ctx context.Context, env demo.Env) error {
	b := demoBill(d.billID("OPR"), DemoHospital, Outpatient, env.Card("alice"), demoPatient("Alice"),
		sim.NewLine("110200001", "Outpatient consultation", 2500, 1))
	r, err := postBill(ctx, env, b)
	if err != nil {
		return err
	}
	if r.Status != Settled {
		return fmt.Errorf("bill %s: %+v", b.BillID, r)
	}
	h, err := his(ctx, env)
	if err != nil {
		return err
	}
	defer h.Close()
	a, err := h.Refund(ctx, DemoHospital, b.BillID)
	if err != nil {
		return err
	}
	if p := a.Problem(); p != nil {
		return fmt.Errorf("refund of %s: HTTP %d %s: %s", b.BillID, a.Status, p.Code, p.Message)
	}
	env.Logf("bill %s refunded: settlement %s reversed at the insurer; the hub answered %s", b.BillID, r.SetlID, a.Body)
	return nil
}

func (d *demoRun) reconcile(ctx context.Context, env demo.Env) error {
	d.mu.Lock()
	var count int
	var fund int64
	for _, r := range d.receipts {
		if r.SetlID != "" {
			count++
			fund += r.FundPay
		}
	}
	d.mu.Unlock()
	if count == 0 {
		return errors.New("no settled bill to reconcile: the earlier flows failed")
	}
	// The hub compares its own day with the insurer's (which it asks this
	// plugin for, medical.reconcile.v1).
	date := sim.Date(time.Now())
	var rec struct {
		Hub         Reconciliation `json:"hub"`
		Insurer     Reconciliation `json:"insurer"`
		Matched     bool           `json:"matched"`
		Differences []any          `json:"differences"`
	}
	if err := env.API(ctx, "GET", "/v1/medical/reconciliation?date="+date+"&plugin="+Name, nil, &rec); err != nil {
		return fmt.Errorf("the hub's reconciliation: %w", err)
	}
	// The refunded bill's settlement is reversed and counted by neither.
	if !rec.Matched || rec.Insurer.Count != count || rec.Insurer.FundPay != fund {
		return fmt.Errorf("on %s the hub counts %+v, the insurer %+v (differences %v); our receipts %d settlements, fund %s",
			date, rec.Hub, rec.Insurer, rec.Differences, count, demo.Yuan(fund))
	}
	env.Logf("reconciled %s, the hub's settlements against the insurer's: %d each, fund %s, account %s, cash %s", date, rec.Insurer.Count,
		demo.Yuan(rec.Insurer.FundPay), demo.Yuan(rec.Insurer.AcctPay), demo.Yuan(rec.Insurer.CashPay))
	return nil
}

// DemoBankCard is the bank card the demo links to a city card: the bank
// acquirer's switch simulator knows it, without a PIN.
const DemoBankCard = "6228480012345674019"

// BankFlows are the medical flows that need the hub's bank acquirer plugin
// (plugins/unionpay) beside this one: `citycard demo` runs them when both
// are bundled.
func BankFlows() []demo.Flow {
	return []demo.Flow{{Name: "medical: insured bill, the shortfall paid by the linked bank card", Run: bankShortfall}}
}

// bankShortfall issues erin a card with 3.00 in cash and links her bank
// card to it; a 200.00 bill for Bob (insured: the fund pays 80%) leaves
// 40.00 for the patient, of which the card pays 3.00 and the bank card
// 37.00.
func bankShortfall(ctx context.Context, env demo.Env) error {
	var card struct {
		Number string `json:"number"`
	}
	if err := env.API(ctx, "POST", "/v1/cards", map[string]any{"holder": map[string]any{"name": "erin", "id_type": "resident_id",
		"id_number": "310101199505055678"}, "pin": "123456", "method": "cash"}, &card); err != nil {
		return fmt.Errorf("issue erin's card: %w", err)
	}
	if err := env.API(ctx, "POST", "/v1/cards/"+card.Number+"/topups",
		map[string]any{"amount": 300, "currency": "CNY", "purse": "cash", "method": "cash"}, nil); err != nil {
		return fmt.Errorf("top up erin's card: %w", err)
	}
	var link struct {
		MaskedPAN string `json:"masked_pan"`
	}
	if err := env.API(ctx, "POST", "/v1/cards/"+card.Number+"/bank-card",
		map[string]any{"pan": DemoBankCard, "expiry": "3012"}, &link); err != nil {
		return fmt.Errorf("link a bank card to erin's card: %w", err)
	}
	id := sdk.NewID()
	b := demoBill("BK-"+strings.ToUpper(id[len(id)-8:]), DemoHospital, Outpatient, card.Number, demoPatient("Bob"),
		sim.NewLine("120100001", "Inpatient day", 15000, 1),
		sim.NewLine("250101001", "Blood count", 5000, 1))
	r, err := postBill(ctx, env, b)
	if err != nil {
		return err
	}
	if r.Status != Settled || r.FundPay != 16000 || r.CashPurse != 300 || r.BankCard != 3700 || r.MedicalPurse != 0 {
		return fmt.Errorf("a 200.00 bill for an insured patient whose card holds 3.00 and links a bank card: %+v", r)
	}
	env.Logf("erin's card %s holds 3.00 and links bank card %s", card.Number, link.MaskedPAN)
	env.Logf("bill %s, %s: the fund paid %s, the cash purse %s, the bank card %s", b.BillID, demo.Yuan(b.Total),
		demo.Yuan(r.FundPay), demo.Yuan(r.CashPurse), demo.Yuan(r.BankCard))
	return nil
}
