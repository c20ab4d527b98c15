package utilities_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/plugins/utilities"
	"github.com/citycard/citycard/plugins/utilities/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/plugintest"
)

func TestQueryBill(t *testing.T) {
	w := setup(t)
	replies, err := w.h.Handle(plugintest.NewMessage(utilities.TypeBillQuery, map[string]any{"biller": "water", "account": "10020031"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(replies) != 1 || replies[0].Type != utilities.TypeBill {
		t.Fatalf("replies = %+v", replies)
	}
	var got sim.Bill
	if err := json.Unmarshal(replies[0].Payload, &got); err != nil {
		t.Fatal(err)
	}
	if want := w.bill("water", "10020031"); got != want {
		t.Errorf("bill = %+v, want %+v", got, want)
	}
	if got.Partial || got.Over || got.Outstanding <= 0 || got.Currency != "CNY" {
		t.Errorf("water bill = %+v", got)
	}
}

func TestPayInFull(t *testing.T) {
	w := setup(t)
	b := w.bill("water", "10020031")
	r := w.receipt(w.payMsg("counter-7-000123", "water", "10020031", alice, b.Outstanding))

	if r.Status != utilities.Approved || r.Payment == "" || r.BillerReceipt == "" || r.BillID != b.ID ||
		r.Amount != b.Outstanding || r.Currency != "CNY" || r.Balance == nil || *r.Balance != 50000-b.Outstanding ||
		r.Outstanding == nil || *r.Outstanding != 0 || r.SettlementDate != "2026-11-26" {
		t.Errorf("receipt = %+v", r)
	}
	if after := w.bill("water", "10020031"); after.Outstanding != 0 || after.Status != sim.StatusPaid {
		t.Errorf("the biller shows %+v", after)
	}
	charges := w.submitted(utilities.TypeCardPayment)
	if len(charges) != 1 {
		t.Fatalf("hub payments = %d, want 1", len(charges))
	}
	want := `{"card":"` + alice + `","merchant":"M-WATER","amount":` + itoa(b.Outstanding) + `,"currency":"CNY"}`
	if c := charges[0]; string(c.Payload) != want || c.IdempotencyKey != "utilities.payment:counter-7-000123" || c.Source != "utilities" {
		t.Errorf("hub payment = %s %s %s", c.IdempotencyKey, c.Source, c.Payload)
	}
	paid := w.biller.Payments()
	if len(paid) != 1 || paid[0].Receipt != r.BillerReceipt || paid[0].Amount != b.Outstanding {
		t.Errorf("biller payments = %+v", paid)
	}
	if w.bank.balance(alice) != 50000-b.Outstanding {
		t.Errorf("alice has %d", w.bank.balance(alice))
	}
}

func TestBillerRules(t *testing.T) {
	// Each biller's rules, against its outstanding amount plus delta.
	for _, tc := range []struct {
		biller string
		delta  int64
		ok     bool
	}{
		{"water", -100, false}, {"water", 100, false},
		{"power", -100, true}, {"power", 100, true},
		{"telecom", -100, true}, {"telecom", 100, false},
		{"internet", -100, false}, {"internet", 100, true},
		{"cable-tv", -100, false}, {"cable-tv", 100, false},
	} {
		name := tc.biller + map[bool]string{true: " over", false: " partial"}[tc.delta > 0]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w := setup(t)
			b := w.bill(tc.biller, "20030041")
			m := w.payMsg("k-"+strings.ReplaceAll(name, " ", "-"), tc.biller, "20030041", alice, b.Outstanding+tc.delta)
			if !tc.ok {
				_, err := w.h.Handle(m)
				e := wantError(t, err, "invalid_amount", "/payload/amount")
				if !strings.Contains(e.Message, b.Name) || !strings.Contains(e.Message, itoa(b.Outstanding)) {
					t.Errorf("message %q names neither the biller nor the amount owed", e.Message)
				}
				if n := len(w.h.Submitted()); n != 0 {
					t.Errorf("the hub got %d messages for a payment the biller refuses", n)
				}
				if n := w.biller.Calls(); n != 0 {
					t.Errorf("the biller got %d payments", n)
				}
				return
			}
			r := w.receipt(m)
			if r.Status != utilities.Approved || *r.Outstanding != -tc.delta {
				t.Errorf("receipt = %+v", r)
			}
			if after := w.bill(tc.biller, "20030041"); after.Outstanding != -tc.delta {
				t.Errorf("outstanding = %d, want %d", after.Outstanding, -tc.delta)
			}
		})
	}
}

func TestPayInInstalments(t *testing.T) {
	w := setup(t)
	b := w.bill("telecom", "30040051")
	first := b.Outstanding / 3
	r1 := w.receipt(w.payMsg("inst-1", "telecom", "30040051", alice, first))
	r2 := w.receipt(w.payMsg("inst-2", "telecom", "30040051", alice, b.Outstanding-first))
	if *r1.Outstanding != b.Outstanding-first || *r2.Outstanding != 0 || r1.Payment == r2.Payment {
		t.Errorf("receipts = %+v, %+v", r1, r2)
	}
	// Nothing is owed now, and telecom takes no credit.
	_, err := w.h.Handle(w.payMsg("inst-3", "telecom", "30040051", alice, 100))
	wantError(t, err, "invalid_amount", "/payload/amount")
	if st := w.bill("telecom", "30040051").Status; st != sim.StatusPaid {
		t.Errorf("status = %s", st)
	}
}

func TestDeclinedForInsufficientFunds(t *testing.T) {
	w := setup(t)
	b := w.bill("telecom", "40050061")
	r := w.receipt(w.payMsg("bob-1", "telecom", "40050061", bob, b.Outstanding))
	if r.Status != utilities.Declined || r.Reason != "insufficient_funds" || r.Payment != "" || r.BillerReceipt != "" ||
		r.Balance == nil || *r.Balance != 300 {
		t.Errorf("receipt = %+v", r)
	}
	if n := w.biller.Calls(); n != 0 {
		t.Errorf("the biller got %d payments for a declined card", n)
	}
	if after := w.bill("telecom", "40050061"); after.Outstanding != b.Outstanding {
		t.Errorf("outstanding went from %d to %d", b.Outstanding, after.Outstanding)
	}
	// The hub's own errors (not declines) reach the hub as they are.
	_, err := w.h.Handle(w.payMsg("nobody-1", "telecom", "40050061", "8860009999999999", b.Outstanding))
	wantError(t, err, "card_not_found", "")
}

func TestRedeliveryPaysOnce(t *testing.T) {
	w := setup(t)
	b := w.bill("power", "50060071")
	m := w.payMsg("kiosk-3-000777", "power", "50060071", alice, b.Outstanding)
	first := w.receipt(m)
	again := w.receipt(m) // the hub redelivers: same message, same key
	if a, b := asJSON(t, first), asJSON(t, again); a != b {
		t.Errorf("redelivery receipt = %+v, first %+v", again, first)
	}
	// Redeliveries racing each other pay once too.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if r := w.receipt(m); r.Payment != first.Payment {
				t.Errorf("concurrent redelivery: payment %s, want %s", r.Payment, first.Payment)
			}
		})
	}
	wg.Wait()
	if n := len(w.submitted(utilities.TypeCardPayment)); n != 1 {
		t.Errorf("hub payments = %d, want 1", n)
	}
	if n := len(w.biller.Payments()); n != 1 {
		t.Errorf("biller payments = %d, want 1", n)
	}
	if got := w.bank.balance(alice); got != 50000-b.Outstanding {
		t.Errorf("alice has %d, want %d", got, 50000-b.Outstanding)
	}
}

func TestConcurrentFirstDeliveriesPayOnce(t *testing.T) {
	w := setup(t)
	b := w.bill("internet", "60070081")
	m := w.payMsg("web-000042", "internet", "60070081", alice, b.Outstanding)
	var wg sync.WaitGroup
	receipts := make([]utilities.Receipt, 6)
	for i := range receipts {
		wg.Go(func() { receipts[i] = w.receipt(m) })
	}
	wg.Wait()
	for _, r := range receipts[1:] {
		if r.Payment != receipts[0].Payment || r.BillerReceipt != receipts[0].BillerReceipt {
			t.Errorf("receipts differ: %+v and %+v", r, receipts[0])
		}
	}
	if len(w.submitted(utilities.TypeCardPayment)) != 1 || len(w.biller.Payments()) != 1 {
		t.Errorf("hub payments %d, biller payments %d; want 1 and 1", len(w.submitted(utilities.TypeCardPayment)), len(w.biller.Payments()))
	}
}

func TestBillerUnavailableThenRedelivered(t *testing.T) {
	w := setup(t)
	b := w.bill("water", "70080091")
	m := w.payMsg("atm-9-000001", "water", "70080091", alice, b.Outstanding)
	w.biller.FailNext(1)
	_, err := w.h.Handle(m)
	e := wantError(t, err, "unavailable", "")
	if !e.Retryable {
		t.Error("a biller outage is not retryable")
	}
	// The card payment stands, unreversed, and the biller has nothing yet.
	if len(w.submitted(utilities.TypeCardPayment)) != 1 || len(w.submitted(utilities.TypeCardReversal)) != 0 || len(w.biller.Payments()) != 0 {
		t.Fatalf("after the outage: hub %+v, biller %+v", w.h.Submitted(), w.biller.Payments())
	}
	r := w.receipt(m)
	if r.Status != utilities.Approved || *r.Outstanding != 0 {
		t.Errorf("receipt = %+v", r)
	}
	if len(w.submitted(utilities.TypeCardPayment)) != 1 || len(w.submitted(utilities.TypeCardReversal)) != 0 || len(w.biller.Payments()) != 1 {
		t.Errorf("after the redelivery: hub %d messages, biller %d payments", len(w.h.Submitted()), len(w.biller.Payments()))
	}
	if got := w.bank.balance(alice); got != 50000-b.Outstanding {
		t.Errorf("alice has %d, want %d", got, 50000-b.Outstanding)
	}
}

func TestBillerAnswerLostThenRedelivered(t *testing.T) {
	w := setup(t)
	b := w.bill("cable-tv", "80090001")
	m := w.payMsg("app-000314", "cable-tv", "80090001", alice, b.Outstanding)
	w.biller.DropNextAnswers(1)
	_, err := w.h.Handle(m)
	if e := wantError(t, err, "unavailable", ""); !e.Retryable {
		t.Error("a lost answer is not retryable")
	}
	if len(w.biller.Payments()) != 1 {
		t.Fatalf("the biller applied %d payments, want 1 (the answer was lost, not the payment)", len(w.biller.Payments()))
	}
	r := w.receipt(m)
	paid := w.biller.Payments()
	if r.Status != utilities.Approved || len(paid) != 1 || r.BillerReceipt != paid[0].Receipt {
		t.Errorf("receipt = %+v; biller payments %+v", r, paid)
	}
	if n := w.biller.Calls(); n != 1 {
		t.Errorf("the biller was asked to pay %d times; the redelivery should have found the payment", n)
	}
	if len(w.submitted(utilities.TypeCardPayment)) != 1 || len(w.submitted(utilities.TypeCardReversal)) != 0 {
		t.Errorf("hub got %+v", w.h.Submitted())
	}
}

func TestBillerSlowIsRetryable(t *testing.T) {
	w := setup(t, func(o *setupOptions) { o.timeout = 150 * time.Millisecond })
	b := w.bill("water", "11223344")
	m := w.payMsg("slow-1", "water", "11223344", alice, b.Outstanding)
	w.biller.SetDelay(300 * time.Millisecond)
	_, err := w.h.Handle(m)
	if e := wantError(t, err, "unavailable", ""); !e.Retryable {
		t.Error("a timeout is not retryable")
	}
	if err := w.h.Health(); err == nil {
		t.Error("healthy while the biller does not answer in time")
	}
	w.biller.SetDelay(0)
	if r := w.receipt(m); r.Status != utilities.Approved {
		t.Errorf("receipt = %+v", r)
	}
	if len(w.submitted(utilities.TypeCardPayment)) != 1 || len(w.biller.Payments()) != 1 {
		t.Errorf("hub %d, biller %d payments", len(w.submitted(utilities.TypeCardPayment)), len(w.biller.Payments()))
	}
}

// paidElsewhere is a billers' host where, just before our payment lands,
// the resident pays the same bill at the biller's own counter: the bill
// the plugin checked is no longer the bill the biller holds.
func paidElsewhere(b **sim.Biller) func(http.Handler) http.Handler {
	var once sync.Once
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Path == "/payments" {
				once.Do(func() {
					bill, _ := (*b).Bill("water", "12345678")
					body := `{"biller":"water","account":"12345678","bill_id":"` + bill.ID + `","amount":` + itoa(bill.Outstanding) +
						`,"currency":"CNY","reference":"counter-cash-1"}`
					req := httptestRequest(http.MethodPost, "/payments", body)
					next.ServeHTTP(discard{}, req)
				})
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestBillerRefusalAfterChargeReverses(t *testing.T) {
	var biller *sim.Biller
	w := setup(t, func(o *setupOptions) { o.middleware = paidElsewhere(&biller) })
	biller = w.biller
	b := w.bill("water", "12345678")
	m := w.payMsg("pos-5-000900", "water", "12345678", alice, b.Outstanding)

	for i := range 2 { // the first delivery, then a redelivery
		_, err := w.h.Handle(m)
		e := wantError(t, err, "invalid_amount", "/payload/amount")
		if e.Retryable || !strings.Contains(e.Message, "overpayment_not_allowed") {
			t.Errorf("delivery %d: %+v", i, e)
		}
		charges, reversals := w.submitted(utilities.TypeCardPayment), w.submitted(utilities.TypeCardReversal)
		if len(charges) != 1 || len(reversals) != 1 {
			t.Fatalf("delivery %d: hub got %d payments and %d reversals, want 1 and 1", i, len(charges), len(reversals))
		}
		var rev struct {
			PaymentKey string `json:"payment_key"`
		}
		if err := json.Unmarshal(reversals[0].Payload, &rev); err != nil {
			t.Fatal(err)
		}
		if rev.PaymentKey != charges[0].IdempotencyKey || reversals[0].IdempotencyKey == "" {
			t.Errorf("reversal %s undoes %q, want %q", reversals[0].IdempotencyKey, rev.PaymentKey, charges[0].IdempotencyKey)
		}
	}
	if got := w.bank.balance(alice); got != 50000 {
		t.Errorf("alice has %d after the reversal, want 50000", got)
	}
	if paid := w.biller.Payments(); len(paid) != 1 || paid[0].Reference != "counter-cash-1" {
		t.Errorf("biller payments = %+v; want only the counter's", paid)
	}
}

func TestHubOutageIsRetryable(t *testing.T) {
	w := setup(t)
	b := w.bill("water", "13579246")
	w.h.Hub().FailWith(&sdk.Error{Code: "unavailable", Retryable: true, Message: "hub restarting"})
	_, err := w.h.Handle(w.payMsg("hub-down-1", "water", "13579246", alice, b.Outstanding))
	if e := wantError(t, err, "unavailable", ""); !e.Retryable {
		t.Error("not retryable")
	}
	if n := w.biller.Calls(); n != 0 {
		t.Errorf("the biller was paid %d times without a card payment", n)
	}
}

func TestBadInput(t *testing.T) {
	w := setup(t)
	water := w.bill("water", "10020031")
	pay := func(edit func(p map[string]any)) sdk.Message {
		p := map[string]any{"biller": "water", "account": "10020031", "bill_id": water.ID, "card": alice,
			"amount": water.Outstanding, "currency": "CNY"}
		edit(p)
		m := plugintest.NewMessage(utilities.TypeBillPay, p)
		m.IdempotencyKey = "bad-input"
		return m
	}
	noKey := pay(func(map[string]any) {})
	noKey.IdempotencyKey = ""
	for _, tc := range []struct {
		name        string
		m           sdk.Message
		code, field string
	}{
		{"no idempotency key", noKey, "idempotency_key_required", "/idempotency_key"},
		{"amount in yuan", pay(func(p map[string]any) { p["amount"] = 12.5 }), "schema_invalid", "/payload/amount"},
		{"zero amount", pay(func(p map[string]any) { p["amount"] = 0 }), "schema_invalid", "/payload/amount"},
		{"amount as a string", pay(func(p map[string]any) { p["amount"] = "100" }), "schema_invalid", "/payload/amount"},
		{"bad card", pay(func(p map[string]any) { p["card"] = "12AB" }), "schema_invalid", "/payload/card"},
		{"lower-case currency", pay(func(p map[string]any) { p["currency"] = "cny" }), "schema_invalid", "/payload/currency"},
		{"short pin", pay(func(p map[string]any) { p["pin"] = "123" }), "schema_invalid", "/payload/pin"},
		{"unknown field", pay(func(p map[string]any) { p["tip"] = 100 }), "schema_invalid", "/payload/tip"},
		{"missing bill", pay(func(p map[string]any) { delete(p, "bill_id") }), "schema_invalid", "/payload"},
		{"unknown biller", pay(func(p map[string]any) { p["biller"] = "gas" }), "not_found", "/payload/biller"},
		{"unknown account", pay(func(p map[string]any) { p["account"] = "90000001" }), "not_found", "/payload/account"},
		{"stale bill", pay(func(p map[string]any) { p["bill_id"] = "WATER-202610-00000000" }), "conflict", "/payload/bill_id"},
		{"wrong currency", pay(func(p map[string]any) { p["currency"] = "USD" }), "currency_mismatch", "/payload/currency"},
		{"query: unknown biller", plugintest.NewMessage(utilities.TypeBillQuery, map[string]any{"biller": "gas", "account": "10020031"}), "not_found", "/payload/biller"},
		{"query: unknown account", plugintest.NewMessage(utilities.TypeBillQuery, map[string]any{"biller": "power", "account": "9123"}), "not_found", "/payload/account"},
		{"query: bad account", plugintest.NewMessage(utilities.TypeBillQuery, map[string]any{"biller": "power", "account": "12 34"}), "schema_invalid", "/payload/account"},
		{"unknown type", plugintest.NewMessage("utilities.bill.refund.v1", map[string]any{}), "unsupported_message_type", "/type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := w.h.Handle(tc.m)
			if e := wantError(t, err, tc.code, tc.field); e.Retryable || e.Message == "" {
				t.Errorf("error %+v", e)
			}
		})
	}
	if n := len(w.h.Submitted()); n != 0 {
		t.Errorf("bad input reached the hub: %d messages", n)
	}
	if n := w.biller.Calls(); n != 0 {
		t.Errorf("bad input reached the biller: %d payments", n)
	}
}

func TestSameKeyDifferentPaymentConflicts(t *testing.T) {
	w := setup(t)
	b := w.bill("power", "24681357")
	w.receipt(w.payMsg("reused-key", "power", "24681357", alice, 1000))
	_, err := w.h.Handle(w.payMsg("reused-key", "power", "24681357", alice, b.Outstanding))
	wantError(t, err, "idempotency_conflict", "/idempotency_key")
	if len(w.submitted(utilities.TypeCardPayment)) != 1 || len(w.biller.Payments()) != 1 {
		t.Errorf("hub %d, biller %d payments", len(w.submitted(utilities.TypeCardPayment)), len(w.biller.Payments()))
	}
}

func TestPINIsPassedOn(t *testing.T) {
	w := setup(t)
	b := w.bill("power", "10101010")
	m := plugintest.NewMessage(utilities.TypeBillPay, map[string]any{"biller": "power", "account": "10101010",
		"bill_id": b.ID, "card": alice, "amount": b.Outstanding, "currency": "CNY", "pin": "123456"})
	m.IdempotencyKey = "pin-1"
	w.receipt(m)
	if c := w.submitted(utilities.TypeCardPayment); len(c) != 1 || !strings.Contains(string(c[0].Payload), `"pin":"123456"`) {
		t.Errorf("hub payment = %+v", c)
	}
}

func TestLogsCarryCorrelation(t *testing.T) {
	w := setup(t)
	b := w.bill("water", "10020031")
	m := w.payMsg("corr-pay-1", "water", "10020031", alice, b.Outstanding)
	m.CorrelationID = "corr-5e1f"
	w.receipt(m)
	var lines int
	for line := range strings.SplitSeq(strings.TrimSpace(w.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == "configured" {
			continue
		}
		lines++
		if rec["correlation_id"] != "corr-5e1f" || rec["plugin"] != "utilities" {
			t.Errorf("log line without the correlation id: %s", line)
		}
	}
	if lines == 0 {
		t.Error("the payment logged nothing")
	}
	if c := w.submitted(utilities.TypeCardPayment); len(c) != 1 || c[0].CorrelationID != "corr-5e1f" {
		t.Errorf("the card payment's correlation id: %+v", c)
	}
}

func TestHealth(t *testing.T) {
	w := setup(t)
	if err := w.h.Health(); err != nil {
		t.Fatalf("health: %v", err)
	}
	w.srv.Close()
	if err := w.h.Health(); err == nil {
		t.Error("healthy with the billers' host gone")
	}
}

func TestConfig(t *testing.T) {
	h := plugintest.Start(t, utilities.New(utilities.WithLogger(discardLog())))
	if err := h.Health(); err == nil {
		t.Error("healthy before configuration")
	}
	base := func(edit func(c map[string]any)) map[string]any {
		c := config("http://127.0.0.1:1")
		edit(c)
		return c
	}
	for _, tc := range []struct {
		name  string
		cfg   any
		field string
	}{
		{"empty", nil, ""},
		{"no billers", base(func(c map[string]any) { c["billers"] = map[string]any{} }), "/billers"},
		{"misspelt setting", base(func(c map[string]any) { c["request_timeout"] = 5 }), "/request_timeout"},
		{"not a URL", base(func(c map[string]any) { c["biller_url"] = "billers.city" }), "/biller_url"},
		{"URL without a host", base(func(c map[string]any) { c["biller_url"] = "http://" }), "/biller_url"},
		{"bad merchant", base(func(c map[string]any) { c["billers"] = map[string]any{"water": map[string]any{"merchant": "M WATER"}} }), "/billers/water/merchant"},
		{"no merchant", base(func(c map[string]any) { c["billers"] = map[string]any{"water": map[string]any{}} }), "/billers/water"},
		{"tiny timeout", base(func(c map[string]any) { c["request_timeout_ms"] = 1 }), "/request_timeout_ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, h.Configure(tc.cfg), "config_invalid", tc.field)
		})
	}
	_, err := h.Handle(plugintest.NewMessage(utilities.TypeBillQuery, map[string]any{"biller": "water", "account": "10020031"}))
	wantError(t, err, "not_configured", "")
}

func TestLongIdempotencyKey(t *testing.T) {
	w := setup(t)
	b := w.bill("water", "10020031")
	key := strings.Repeat("k", 128) // the longest an envelope allows
	m := w.payMsg(key, "water", "10020031", alice, b.Outstanding)
	first, again := w.receipt(m), w.receipt(m)
	if first.Status != utilities.Approved || asJSON(t, first) != asJSON(t, again) {
		t.Errorf("receipts = %+v, %+v", first, again)
	}
	c := w.submitted(utilities.TypeCardPayment)
	if len(c) != 1 || !strings.HasPrefix(c[0].IdempotencyKey, "utilities.payment#") || len(c[0].IdempotencyKey) > 128 {
		t.Errorf("hub payments = %+v", c)
	}
	if paid := w.biller.Payments(); len(paid) != 1 || len(paid[0].Reference) != 34 {
		t.Errorf("biller payments = %+v", paid)
	}
}
