package medical_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/plugins/medical"
	"github.com/citycard/citycard/plugins/medical/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/plugintest"
)

func decodeReceipt(t *testing.T, a sim.Answer) receipt {
	t.Helper()
	if a.Status != http.StatusOK {
		t.Fatalf("HTTP %d: %s", a.Status, a.Body)
	}
	var r receipt
	if err := a.Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestInsuredOutpatientBill(t *testing.T) {
	w := setup(t)
	b := bill("OP-0001", hospital, medical.Outpatient, aliceCard, aliceID, "Alice")
	b.Terminal, b.PIN = "HIS-12", "123456"
	r := decodeReceipt(t, w.post(b))
	// 5050: the fund pays 70% (3535), the account half the rest (757), cash 758.
	if r.Status != "settled" || r.FundPay != 3535 || r.MedicalPurse != 757 || r.CashPurse != 758 || r.SetlID == "" {
		t.Errorf("receipt = %+v", r)
	}
	bills := w.submitted(medical.TypeBill)
	if len(bills) != 1 || bills[0].IdempotencyKey != "bill:"+hospital+":OP-0001" {
		t.Fatalf("the hub got %+v", bills)
	}
	mdtrt := w.ins.Settlements()[0].MdtrtID
	want := `{"bill_id":"OP-0001","hospital":"M-HOSP-1","terminal":"HIS-12","kind":"outpatient","card":"8860001000000011","pin":"123456",` +
		`"total":5050,"currency":"CNY","insured":true,"psn_no":"P3101000001","mdtrt_id":"` + mdtrt + `",` +
		`"presettlement":{"fund_pay":3535,"acct_pay":757,"cash_pay":758}}`
	if got := compact(t, bills[0].Payload); got != want {
		t.Errorf("medical.bill.v1 =\n%s\nwant\n%s", got, want)
	}
	if !strings.HasPrefix(mdtrt, "MD") {
		t.Errorf("visit %s is not a registered one", mdtrt)
	}
	_, total, lines, ok := w.ins.Visit(mdtrt)
	if !ok || total != 5050 || len(lines) != 2 || lines[1].Quantity != 2 {
		t.Errorf("the insurer's visit: %d, %+v", total, lines)
	}

	// Posted again: the same receipt, nothing repeated at the insurer or the hub.
	first, again := w.post(b), w.post(b)
	if string(again.Body) != string(first.Body) || decodeReceipt(t, again).SetlID != r.SetlID {
		t.Errorf("posted again: %s, first %s", again.Body, first.Body)
	}
	for _, inf := range []string{sim.InfPerson, sim.InfRegister, sim.InfUploadFees, sim.InfPreSettle, sim.InfSettle} {
		if n := w.ins.Calls(inf); n != 1 {
			t.Errorf("%d calls of %s, want 1", n, inf)
		}
	}
	if n := len(w.submitted(medical.TypeBill)); n != 1 {
		t.Errorf("the hub applied %d bills", n)
	}
	// The same bill id with other content is a conflict.
	b.Lines = b.Lines[:1]
	b = b.Totalled()
	if a := w.post(b); a.Status != http.StatusConflict || a.Problem().Code != "conflict" {
		t.Errorf("a changed bill: %d %s", a.Status, a.Body)
	}
}

func TestSettlementMayDifferFromPreSettlement(t *testing.T) {
	w := setup(t)
	w.ins.OverrideSettlement(alicePsn, 6000, 0)
	r := decodeReceipt(t, w.post(bill("IP-0001", hospital, medical.Inpatient, aliceCard, aliceID, "Alice")))
	if r.Presettlement == nil || r.Presettlement.FundPay != 3535 || r.FundPay != 3030 || r.MedicalPurse != 0 || r.CashPurse != 2020 {
		t.Errorf("receipt = %+v (pre-settlement %+v)", r, r.Presettlement)
	}
}

func TestPharmacyBillWithoutRegistration(t *testing.T) {
	w := setup(t)
	b := bill("RX-0001", pharmacy, medical.Pharmacy, aliceCard, aliceID, "Alice")
	r := decodeReceipt(t, w.post(b))
	if r.Status != "settled" || r.FundPay != 3535 {
		t.Errorf("receipt = %+v", r)
	}
	if n := w.ins.Calls(sim.InfRegister); n != 0 {
		t.Errorf("a pharmacy registered %d visits", n)
	}
	var m medical.BillMessage
	if err := json.Unmarshal(w.submitted(medical.TypeBill)[0].Payload, &m); err != nil {
		t.Fatal(err)
	}
	if m.Kind != medical.Pharmacy || !m.Insured || !strings.HasPrefix(m.MdtrtID, "PH") || m.Presettlement == nil {
		t.Errorf("medical.bill.v1 = %+v", m)
	}
}

func TestUninsuredBill(t *testing.T) {
	w := setup(t)
	for i, p := range []struct{ idNo, name string }{{carolID, "Carol"}, {"110101200001010000", "Dan"}} {
		b := bill("OP-U"+string(rune('1'+i)), hospital, medical.Outpatient, carolCard, p.idNo, p.name)
		r := decodeReceipt(t, w.post(b))
		if r.Status != "settled" || r.FundPay != 0 || r.CashPurse != 5050 || r.SetlID != "" {
			t.Errorf("%s: receipt = %+v", p.name, r)
		}
	}
	bills := w.submitted(medical.TypeBill)
	want := `{"bill_id":"OP-U1","hospital":"M-HOSP-1","kind":"outpatient","card":"8860001000000029","total":5050,"currency":"CNY","insured":false}`
	if len(bills) != 2 || compact(t, bills[0].Payload) != want {
		t.Errorf("the hub got %+v", bills)
	}
	for _, inf := range []string{sim.InfRegister, sim.InfUploadFees, sim.InfPreSettle, sim.InfSettle} {
		if n := w.ins.Calls(inf); n != 0 {
			t.Errorf("%d calls of %s for the uninsured", n, inf)
		}
	}
}

func TestBadBills(t *testing.T) {
	w := setup(t)
	good := bill("OP-BAD", hospital, medical.Outpatient, aliceCard, aliceID, "Alice")
	cases := []struct {
		name   string
		change func(*sim.Bill)
		status int
		code   string
		field  string
	}{
		{"a line that does not multiply out", func(b *sim.Bill) { b.Lines[1].Amount = 2500 }, 422, "fee_lines_mismatch", "/lines/1/amount"},
		{"lines that do not add up", func(b *sim.Bill) { b.Total = 5000 }, 422, "fee_lines_mismatch", "/total"},
		{"an unknown kind", func(b *sim.Bill) { b.Kind = "dental" }, 400, "invalid_request", "/kind"},
		{"a short card number", func(b *sim.Bill) { b.Card = "1234" }, 400, "invalid_request", "/card"},
		{"no patient", func(b *sim.Bill) { b.Patient = sim.Patient{} }, 400, "invalid_request", "/patient/id_no"},
		{"dollars", func(b *sim.Bill) { b.Currency = "USD" }, 400, "invalid_request", "/currency"},
		{"no lines", func(b *sim.Bill) { b.Lines = nil; b.Total = 1 }, 400, "invalid_request", "/lines"},
		{"a zero quantity", func(b *sim.Bill) { b.Lines[0].Quantity = 0 }, 400, "invalid_request", "/lines/0/quantity"},
		{"a four-digit PIN", func(b *sim.Bill) { b.PIN = "1234" }, 400, "invalid_request", "/pin"},
	}
	for _, c := range cases {
		b := good
		b.Lines = append([]sim.Line(nil), good.Lines...)
		c.change(&b)
		a := w.post(b)
		if p := a.Problem(); a.Status != c.status || p == nil || p.Code != c.code || p.Field != c.field {
			t.Errorf("%s: %d %s, want %d %s at %s", c.name, a.Status, a.Body, c.status, c.code, c.field)
		}
	}
	ctx := context.Background()
	for _, c := range []struct{ body, code, field string }{
		{`{"bill_id":"X","colour":"red"}`, "unknown_field", "/colour"},
		{`{"bill_id":"X","total":"12.50"}`, "invalid_json", "/total"},
		{`not json`, "invalid_json", ""},
	} {
		a, err := w.his.PostRaw(ctx, "/v1/bills", []byte(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if p := a.Problem(); a.Status != 400 || p.Code != c.code || p.Field != c.field {
			t.Errorf("%s: %d %s", c.body, a.Status, a.Body)
		}
	}
	if n := len(w.h.Submitted()); n != 0 {
		t.Errorf("the hub got %d messages", n)
	}
	if n := w.ins.Calls(sim.InfPerson); n != 0 {
		t.Errorf("the insurer was asked %d times", n)
	}
}

func TestSettle(t *testing.T) {
	w := setup(t)
	id := w.visit("B-1")
	s := w.settleVisit("bill:H:B-1", id, 5050)
	if s.Status != medical.Settled || s.SetlID == "" || s.Split != (medical.Split{FundPay: 3535, AcctPay: 757, CashPay: 758}) {
		t.Errorf("settlement = %+v", s)
	}
	again := w.settleVisit("bill:H:B-1", id, 5050)
	if again != s || w.ins.Calls(sim.InfSettle) != 1 || len(w.ins.Settlements()) != 1 {
		t.Errorf("sent again: %+v, %d calls of 2207", again, w.ins.Calls(sim.InfSettle))
	}
}

func TestSettleAfterATimeoutCorrectsAndRetries(t *testing.T) {
	w := setup(t, withInsurerTimeout(200*time.Millisecond))
	id := w.visit("B-2")
	w.ins.TimeoutNext(1, 0)
	s := w.settleVisit("bill:H:B-2", id, 5050)
	if s.Status != medical.Settled || s.FundPay != 3535 {
		t.Fatalf("settlement = %+v", s)
	}
	setls, corrs := w.ins.Settlements(), w.ins.Corrections()
	if len(setls) != 2 || setls[0].State != sim.Corrected || setls[1].State != sim.Live || setls[1].SetlID != s.SetlID {
		t.Errorf("settlements = %+v", setls)
	}
	if len(corrs) != 1 || !corrs[0].Applied || corrs[0].OMsgID != setls[0].MsgID || corrs[0].OInfNo != sim.InfSettle {
		t.Errorf("corrections = %+v", corrs)
	}
	if w.settleVisit("bill:H:B-2", id, 5050) != s || w.ins.Calls(sim.InfSettle) != 2 {
		t.Errorf("sent again, the insurer was asked again")
	}
}

func TestSettleTimingOutTwiceFails(t *testing.T) {
	w := setup(t, withInsurerTimeout(200*time.Millisecond))
	id := w.visit("B-3")
	w.ins.TimeoutNext(2, 0)
	s := w.settleVisit("bill:H:B-3", id, 5050)
	if s.Status != medical.Failed || s.Reason != medical.ReasonInsurerTimeout || s.SetlID != "" {
		t.Errorf("settlement = %+v", s)
	}
	if live := w.ins.LiveSettlements(); len(live) != 0 {
		t.Errorf("the insurer holds %+v", live)
	}
	corrs := w.ins.Corrections()
	if len(corrs) != 2 || !corrs[0].Applied || !corrs[1].Applied {
		t.Errorf("corrections = %+v", corrs)
	}
	if again := w.settleVisit("bill:H:B-3", id, 5050); again != s || w.ins.Calls(sim.InfSettle) != 2 {
		t.Errorf("sent again: %+v", again)
	}
}

func TestSettleLateAnswerIsCorrected(t *testing.T) {
	// The insurer answers, but after the plugin gave up: the late
	// settlement is corrected all the same.
	w := setup(t, withInsurerTimeout(150*time.Millisecond))
	id := w.visit("B-3L")
	w.ins.TimeoutNext(1, 400*time.Millisecond)
	if s := w.settleVisit("bill:H:B-3L", id, 5050); s.Status != medical.Settled {
		t.Fatalf("settlement = %+v", s)
	}
	if live := w.ins.LiveSettlements(); len(live) != 1 {
		t.Errorf("live settlements = %+v", live)
	}
}

func TestSettleInsurerError(t *testing.T) {
	w := setup(t)
	id := w.visit("B-4")
	w.ins.FailNext(1, "the fund pool is closed for the night")
	s := w.settleVisit("bill:H:B-4", id, 5050)
	if s.Status != medical.Failed || s.Reason != medical.ReasonInsurerError || s.Message != "the fund pool is closed for the night" {
		t.Errorf("settlement = %+v", s)
	}
	if len(w.ins.Settlements()) != 0 || len(w.ins.Corrections()) != 0 {
		t.Errorf("settlements %+v, corrections %+v", w.ins.Settlements(), w.ins.Corrections())
	}
	// A total that is not the uploaded fees' is the insurer's refusal too.
	id = w.visit("B-5")
	if s := w.settleVisit("bill:H:B-5", id, 9999); s.Status != medical.Failed || s.Reason != medical.ReasonInsurerError {
		t.Errorf("settlement of another total = %+v", s)
	}
}

func TestInsurerUnreachable(t *testing.T) {
	w := setup(t, withInsurerTimeout(200*time.Millisecond))
	id := w.visit("B-6")
	// Every request times out: the settlement and its correction.
	w.ins.SetDelay(time.Second)
	replies, err := w.handle(medical.TypeSettle, "settle:bill:H:B-6", map[string]any{"bill_key": "bill:H:B-6", "psn_no": alicePsn,
		"mdtrt_id": id, "bill_id": "B-6", "total": 5050, "currency": "CNY"})
	e := wantError(t, err, sdk.CodeUnavailable)
	if !e.Retryable || replies != nil {
		t.Errorf("error %+v, replies %+v", e, replies)
	}
	// Once the insurer is back, the redelivery corrects the first request, then settles.
	w.ins.SetDelay(0)
	s := w.settleVisit("bill:H:B-6", id, 5050)
	if s.Status != medical.Settled || len(w.ins.LiveSettlements()) != 1 {
		t.Errorf("settlement %+v, live %+v", s, w.ins.LiveSettlements())
	}
	if corrs := w.ins.Corrections(); len(corrs) == 0 || corrs[len(corrs)-1].OInfNo != sim.InfSettle {
		t.Errorf("corrections = %+v", corrs)
	}
}

func TestSettleReverse(t *testing.T) {
	w := setup(t)
	id := w.visit("B-7")
	s := w.settleVisit("bill:H:B-7", id, 5050)
	reverse := func(setlID string) medical.SettlementReversal {
		t.Helper()
		replies, err := w.handle(medical.TypeSettleReverse, "reverse:bill:H:B-7", map[string]any{"bill_key": "bill:H:B-7",
			"setl_id": setlID, "psn_no": alicePsn, "mdtrt_id": id})
		if err != nil {
			t.Fatal(err)
		}
		var r medical.SettlementReversal
		if err := only(replies, medical.TypeSettlementReversal, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := reverse(s.SetlID); r.Status != medical.Reversed {
		t.Errorf("reversal = %+v", r)
	}
	if r := reverse(s.SetlID); r.Status != medical.Reversed || len(w.ins.Reversals()) != 1 {
		t.Errorf("sent again: %+v, reversals %+v", r, w.ins.Reversals())
	}
	if live := w.ins.LiveSettlements(); len(live) != 0 {
		t.Errorf("live = %+v", live)
	}
	replies, err := w.handle(medical.TypeSettleReverse, "reverse:bill:H:none", map[string]any{"bill_key": "bill:H:none",
		"setl_id": "ST-NONE", "psn_no": alicePsn, "mdtrt_id": id})
	var r medical.SettlementReversal
	if err != nil || only(replies, medical.TypeSettlementReversal, &r) != nil || r.Status != medical.Failed || r.Reason != medical.ReasonInsurerError {
		t.Errorf("reversing nothing: %+v, %v", r, err)
	}
}

func TestSettleReverseAfterATimeout(t *testing.T) {
	w := setup(t, withInsurerTimeout(200*time.Millisecond), withMiddleware(swallowFirst(sim.InfReverse, 1)))
	id := w.visit("B-8")
	s := w.settleVisit("bill:H:B-8", id, 5050)
	replies, err := w.handle(medical.TypeSettleReverse, "reverse:bill:H:B-8", map[string]any{"bill_key": "bill:H:B-8",
		"setl_id": s.SetlID, "psn_no": alicePsn, "mdtrt_id": id})
	var r medical.SettlementReversal
	if err != nil || only(replies, medical.TypeSettlementReversal, &r) != nil || r.Status != medical.Reversed {
		t.Fatalf("reversal: %+v %v", r, err)
	}
	// The first 2208 reversed it and was corrected (reinstating it); the second reversed it again.
	corrs, revs := w.ins.Corrections(), w.ins.Reversals()
	if len(corrs) != 1 || !corrs[0].Applied || corrs[0].OInfNo != sim.InfReverse || len(revs) != 2 || revs[1].Already {
		t.Errorf("corrections %+v, reversals %+v", corrs, revs)
	}
	if live := w.ins.LiveSettlements(); len(live) != 0 {
		t.Errorf("live = %+v", live)
	}
}

func TestSettlementThatDoesNotAddUpIsReversed(t *testing.T) {
	// An insurer whose 2207 answers a fund share one fen too large.
	skew := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/api/"+sim.InfSettle {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			var resp map[string]any
			_ = json.Unmarshal(rec.Body.Bytes(), &resp)
			if out, ok := resp["output"].(map[string]any); ok {
				out["fund_pay"] = out["fund_pay"].(float64) + 1
			}
			_ = json.NewEncoder(w).Encode(resp)
		})
	}
	w := setup(t, withMiddleware(skew))
	id := w.visit("B-9")
	s := w.settleVisit("bill:H:B-9", id, 5050)
	if s.Status != medical.Failed || s.Reason != medical.ReasonInsurerError || !strings.Contains(s.Message, "does not add up") {
		t.Errorf("settlement = %+v", s)
	}
	if live := w.ins.LiveSettlements(); len(live) != 0 || len(w.ins.Reversals()) != 1 {
		t.Errorf("live %+v, reversals %+v", live, w.ins.Reversals())
	}
}

func TestRefund(t *testing.T) {
	w := setup(t)
	r := decodeReceipt(t, w.post(bill("OP-R1", hospital, medical.Outpatient, aliceCard, aliceID, "Alice")))
	ctx := context.Background()
	for range 2 {
		a, err := w.his.Refund(ctx, hospital, "OP-R1")
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != http.StatusOK || !strings.Contains(string(a.Body), `"refunded"`) {
			t.Errorf("refund: %d %s", a.Status, a.Body)
		}
	}
	refunds := w.submitted(medical.TypeRefund)
	if len(refunds) != 1 || refunds[0].IdempotencyKey != "refund:M-HOSP-1:OP-R1" ||
		compact(t, refunds[0].Payload) != `{"bill_id":"OP-R1","hospital":"M-HOSP-1"}` {
		t.Errorf("the hub got %+v", refunds)
	}
	if rev := w.ins.Reversals(); len(rev) != 1 || rev[0].SetlID != r.SetlID {
		t.Errorf("reversals = %+v", rev)
	}
	// A bill the hub does not know: its error, with its status.
	a, err := w.his.Refund(ctx, hospital, "OP-NONE")
	if err != nil {
		t.Fatal(err)
	}
	if p := a.Problem(); a.Status != http.StatusNotFound || p.Code != "transfer_not_found" {
		t.Errorf("refund of nothing: %d %s", a.Status, a.Body)
	}
}

func TestHubErrors(t *testing.T) {
	w := setup(t)
	w.h.Hub().FailWith(&sdk.Error{Code: "card_not_found", Message: "no card 8860001000000011", Field: "/payload/card"})
	a := w.post(bill("OP-H1", hospital, medical.Outpatient, aliceCard, aliceID, "Alice"))
	if p := a.Problem(); a.Status != http.StatusNotFound || p.Code != "card_not_found" || p.Field != "/payload/card" {
		t.Errorf("%d %s", a.Status, a.Body)
	}
	w.h.Hub().FailWith(&sdk.Error{Code: sdk.CodeUnavailable, Retryable: true, Message: "the hub is restarting"})
	if a := w.post(bill("OP-H1", hospital, medical.Outpatient, aliceCard, aliceID, "Alice")); a.Status != http.StatusServiceUnavailable {
		t.Errorf("%d %s", a.Status, a.Body)
	}
	// Posted again once the hub is back: the insurer's steps are not repeated.
	w.h.Hub().FailWith(nil)
	if r := decodeReceipt(t, w.post(bill("OP-H1", hospital, medical.Outpatient, aliceCard, aliceID, "Alice"))); r.Status != "settled" {
		t.Errorf("receipt = %+v", r)
	}
	if n := w.ins.Calls(sim.InfPreSettle); n != 1 {
		t.Errorf("%d pre-settlements", n)
	}
}

func TestReconcile(t *testing.T) {
	w := setup(t)
	for _, id := range []string{"OP-C1", "OP-C2", "OP-C3"} {
		decodeReceipt(t, w.post(bill(id, hospital, medical.Outpatient, aliceCard, aliceID, "Alice")))
	}
	if a, err := w.his.Refund(context.Background(), hospital, "OP-C2"); err != nil || a.Status != http.StatusOK {
		t.Fatalf("refund: %+v %v", a, err)
	}
	want := medical.Reconciliation{Date: "2026-11-26", Count: 2, Split: medical.Split{FundPay: 7070, AcctPay: 1514, CashPay: 1516}}
	replies, err := w.handle(medical.TypeReconcile, "", map[string]any{"date": "2026-11-26"})
	var got medical.Reconciliation
	if err != nil || only(replies, medical.TypeReconciliation, &got) != nil || got != want {
		t.Errorf("medical.reconciliation.v1 = %+v, %v; want %+v", got, err, want)
	}
	a, err := w.his.Reconciliation(context.Background(), "2026-11-26")
	if err != nil || a.Status != http.StatusOK || a.Decode(&got) != nil || got != want {
		t.Errorf("GET /v1/reconciliation: %+v %v", a, err)
	}
	if a, _ := w.his.Reconciliation(context.Background(), "26/11/2026"); a.Status != http.StatusBadRequest || a.Problem().Field != "/date" {
		t.Errorf("a bad date: %d %s", a.Status, a.Body)
	}
}

func TestStatusTellsWhereTheAPIListens(t *testing.T) {
	w := setup(t)
	replies, err := w.handle(medical.TypeStatus, "", map[string]any{})
	var s medical.State
	if err != nil || only(replies, medical.TypeState, &s) != nil {
		t.Fatalf("%+v %v", replies, err)
	}
	if s.Listen == "" || s.Listen != w.p.Addr() || s.InsurerURL != w.url || s.OrgCode != orgCode {
		t.Errorf("state = %+v, addr %s", s, w.p.Addr())
	}
	if err := w.h.Health(); err != nil {
		t.Errorf("health: %v", err)
	}
}

func TestConcurrentBills(t *testing.T) {
	w := setup(t)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			// Eight bills, each posted twice at once.
			b := bill("OP-P"+string(rune('A'+i%8)), hospital, medical.Outpatient, aliceCard, aliceID, "Alice")
			if a := w.post(b); a.Status != http.StatusOK {
				t.Errorf("%s: %d %s", b.BillID, a.Status, a.Body)
			}
		})
	}
	wg.Wait()
	if n, m := len(w.submitted(medical.TypeBill)), len(w.ins.LiveSettlements()); n != 8 || m != 8 {
		t.Errorf("%d bills at the hub, %d settlements at the insurer; want 8 and 8", n, m)
	}
	if n := w.ins.Calls(sim.InfRegister); n != 8 {
		t.Errorf("%d registrations", n)
	}
}

func TestConfiguration(t *testing.T) {
	h := plugintest.Start(t, medical.New(medical.WithLogger(nil)))
	for _, c := range []map[string]any{
		{"insurer_url": "ftp://insurer", "org_code": "H1"},
		{"insurer_url": "http://127.0.0.1:1"},
		{"insurer_url": "http://127.0.0.1:1", "org_code": "H1", "listen": "256.0.0.1:0"},
		{"insurer_url": "http://127.0.0.1:1", "org_code": "H1", "colour": "red"},
	} {
		if err := h.Configure(c); err == nil {
			t.Errorf("%v was accepted", c)
		}
	}
	if _, err := h.Handle(plugintest.NewMessage(medical.TypeStatus, map[string]any{})); err == nil {
		t.Error("handled a message unconfigured")
	}
}

func TestReconfigureKeepsTheAddressAndTheJournal(t *testing.T) {
	w := setup(t)
	decodeReceipt(t, w.post(bill("OP-K1", hospital, medical.Outpatient, aliceCard, aliceID, "Alice")))
	addr := w.p.Addr()
	cfg := config(w.url, 2*time.Second)
	cfg["listen"] = addr
	for range 2 {
		if err := w.h.Configure(cfg); err != nil {
			t.Fatal(err)
		}
	}
	if w.p.Addr() != addr {
		t.Errorf("listening on %s, configured %s", w.p.Addr(), addr)
	}
	his := sim.NewHIS(addr)
	defer his.Close()
	a, err := his.PostBill(context.Background(), bill("OP-K1", hospital, medical.Outpatient, aliceCard, aliceID, "Alice"))
	if err != nil || a.Status != http.StatusOK {
		t.Fatalf("%+v %v", a, err)
	}
	if n := w.ins.Calls(sim.InfPerson); n != 1 {
		t.Errorf("the journal was lost: %d calls of 1101", n)
	}
}

func TestTheLogKeepsNoPINOrCardNumber(t *testing.T) {
	var logs syncBuffer
	w := setup(t)
	p := medical.New(medical.WithLogger(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	hub := plugintest.NewFakeHub()
	hub.RespondWith(w.respond)
	w.h = plugintest.Start(t, p, plugintest.WithHub(hub))
	if err := w.h.Configure(config(w.url, 2*time.Second)); err != nil {
		t.Fatal(err)
	}
	his := sim.NewHIS(p.Addr())
	defer his.Close()
	b := bill("OP-L1", hospital, medical.Outpatient, aliceCard, aliceID, "Alice")
	b.PIN = "482915"
	if a, err := his.PostBill(context.Background(), b); err != nil || a.Status != http.StatusOK {
		t.Fatalf("%+v %v", a, err)
	}
	out := logs.String()
	if !strings.Contains(out, "OP-L1") {
		t.Fatalf("nothing logged: %s", out)
	}
	for _, secret := range []string{"482915", aliceCard} {
		if strings.Contains(out, secret) {
			t.Errorf("the log gives %s away:\n%s", secret, out)
		}
	}
}

// syncBuffer is a bytes.Buffer the plugin's concurrent handlers may log to.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestBillTheHubAlreadyHas: a bill this plugin process has not seen (it
// was restarted while the hub settled the bill) is answered from the hub
// — its receipt, or "in progress, post it again" — and nothing is done
// again at the insurer, whose visit may already be settled.
func TestBillTheHubAlreadyHas(t *testing.T) {
	w := setup(t)
	settled := json.RawMessage(`{"bill_id":"OP-R1","status":"settled","total":5050}`)
	w.h.Hub().SetQuery(sdk.QueryAnswer, "bill:"+hospital+":OP-R1",
		sdk.Answer{Key: "bill:" + hospital + ":OP-R1", State: sdk.AnswerAnswered, Body: settled})
	a := w.post(bill("OP-R1", hospital, medical.Outpatient, aliceCard, aliceID, "Alice"))
	if a.Status != http.StatusOK || !strings.Contains(string(a.Body), `"status":"settled"`) {
		t.Fatalf("a bill the hub settled: %d %s", a.Status, a.Body)
	}
	w.h.Hub().SetQuery(sdk.QueryAnswer, "bill:"+hospital+":OP-R2",
		sdk.Answer{Key: "bill:" + hospital + ":OP-R2", State: sdk.AnswerInProgress})
	a = w.post(bill("OP-R2", hospital, medical.Outpatient, aliceCard, aliceID, "Alice"))
	if p := a.Problem(); a.Status != http.StatusConflict || p.Code != sdk.CodeInProgress {
		t.Fatalf("a bill the hub is settling: %d %s", a.Status, a.Body)
	}
	for _, inf := range []string{sim.InfPerson, sim.InfRegister, sim.InfUploadFees, sim.InfPreSettle} {
		if n := w.ins.Calls(inf); n != 0 {
			t.Errorf("the insurer was asked %s %d times for bills the hub already had", inf, n)
		}
	}
}
