package sim_test

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/citycard/citycard/plugins/utilities/sim"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var now = time.Date(2026, 11, 26, 23, 30, 0, 0, sim.Zone)

func start(t *testing.T) (*sim.Biller, *httptest.Server) {
	t.Helper()
	b := sim.New(sim.Options{Now: func() time.Time { return now }})
	srv := httptest.NewServer(b.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(srv.Client().CloseIdleConnections)
	return b, srv
}

// call sends body (if any) and decodes a JSON answer into out.
func call(t *testing.T, srv *httptest.Server, method, path, body string, out any) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	return resp
}

func payBody(bill sim.Bill, amount int64, ref string) string {
	b, _ := json.Marshal(sim.PaymentRequest{Biller: bill.Biller, Account: bill.Account, BillID: bill.ID,
		Amount: amount, Currency: "CNY", Reference: ref})
	return string(b)
}

func TestBillsAreDeterministic(t *testing.T) {
	b1, srv := start(t)
	var got sim.Bill
	if resp := call(t, srv, "GET", "/billers/water/accounts/10020031/bill", "", &got); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	b2 := sim.New(sim.Options{Now: func() time.Time { return now }})
	again, err := b2.Bill("water", "10020031")
	if err != nil {
		t.Fatal(err)
	}
	if got != again {
		t.Errorf("two billers disagree: %+v and %+v", got, again)
	}
	if got.Period != "2026-11" || got.DueDate != "2026-12-25" || got.Currency != "CNY" || got.Status != sim.StatusUnpaid ||
		got.Amount < 2000 || got.Amount > 20000 || got.Outstanding != got.Amount || !strings.HasPrefix(got.ID, "WATER-202611-") {
		t.Errorf("bill = %+v", got)
	}
	other, _ := b1.Bill("water", "10020032")
	if other.ID == got.ID {
		t.Errorf("two accounts share bill %s", got.ID)
	}
	var billers struct {
		Billers []sim.BillerSpec `json:"billers"`
	}
	call(t, srv, "GET", "/billers", "", &billers)
	if len(billers.Billers) != 5 {
		t.Errorf("billers = %+v", billers)
	}
}

func TestErrors(t *testing.T) {
	b, srv := start(t)
	water, _ := b.Bill("water", "10020031")
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code, field              string
	}{
		{"unknown biller", "GET", "/billers/gas/accounts/10020031/bill", "", 404, sim.CodeBillerNotFound, "biller"},
		{"unassigned account", "GET", "/billers/water/accounts/90020031/bill", "", 404, sim.CodeAccountNotFound, "account"},
		{"malformed account", "GET", "/billers/water/accounts/12ab/bill", "", 404, sim.CodeAccountNotFound, "account"},
		{"no such path", "GET", "/bills", "", 404, sim.CodeNotFound, ""},
		{"not JSON", "POST", "/payments", "{", 400, sim.CodeInvalidRequest, ""},
		{"amount in yuan", "POST", "/payments", strings.Replace(payBody(water, 1, "r-1"), `"amount":1`, `"amount":1.5`, 1), 400, sim.CodeInvalidRequest, "amount"},
		{"unknown field", "POST", "/payments", strings.Replace(payBody(water, 1, "r-1"), `{`, `{"tip":1,`, 1), 400, sim.CodeInvalidRequest, ""},
		{"no reference", "POST", "/payments", payBody(water, water.Outstanding, ""), 400, sim.CodeInvalidRequest, "reference"},
		{"reference with a slash", "POST", "/payments", payBody(water, water.Outstanding, "a/b"), 400, sim.CodeInvalidRequest, "reference"},
		{"stale bill", "POST", "/payments", strings.Replace(payBody(water, water.Outstanding, "r-2"), water.ID, "WATER-202610-0", 1), 409, sim.CodeBillMismatch, "bill_id"},
		{"dollars", "POST", "/payments", strings.Replace(payBody(water, water.Outstanding, "r-3"), "CNY", "USD", 1), 422, sim.CodeCurrencyMismatch, "currency"},
		{"negative", "POST", "/payments", payBody(water, -5, "r-4"), 422, sim.CodeInvalidAmount, "amount"},
		{"partial", "POST", "/payments", payBody(water, water.Outstanding-1, "r-5"), 422, sim.CodePartialNotAllowed, "amount"},
		{"over", "POST", "/payments", payBody(water, water.Outstanding+1, "r-6"), 422, sim.CodeOverpayNotAllowed, "amount"},
		{"bad date", "GET", "/reconciliation?date=26/11/2026", "", 400, sim.CodeInvalidRequest, "date"},
		{"unknown reference", "GET", "/payments/r-404", "", 404, sim.CodePaymentNotFound, "reference"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e sim.Error
			resp := call(t, srv, tc.method, tc.path, tc.body, &e)
			if resp.StatusCode != tc.status || e.Code != tc.code || e.Field != tc.field || e.Message == "" {
				t.Errorf("got %d %+v, want %d %s at %q", resp.StatusCode, e, tc.status, tc.code, tc.field)
			}
		})
	}
	if p := b.Payments(); len(p) != 0 {
		t.Errorf("payments = %+v", p)
	}
	if after, _ := b.Bill("water", "10020031"); after != water {
		t.Errorf("the bill changed: %+v", after)
	}
}

func TestRules(t *testing.T) {
	for _, tc := range []struct {
		biller  string
		partial bool
		over    bool
	}{
		{"water", false, false}, {"power", true, true}, {"telecom", true, false}, {"internet", false, true}, {"cable-tv", false, false},
	} {
		t.Run(tc.biller, func(t *testing.T) {
			b, srv := start(t)
			bill, _ := b.Bill(tc.biller, "20030041")
			if bill.Partial != tc.partial || bill.Over != tc.over {
				t.Fatalf("rules = %+v", bill.Rules)
			}
			var e sim.Error
			resp := call(t, srv, "POST", "/payments", payBody(bill, bill.Outstanding-1, "p"), &e)
			if got := resp.StatusCode == http.StatusCreated; got != tc.partial {
				t.Errorf("partial: %d %+v", resp.StatusCode, e)
			}
			bill, _ = b.Bill(tc.biller, "20030041")
			resp = call(t, srv, "POST", "/payments", payBody(bill, bill.Outstanding+1, "o"), &e)
			if got := resp.StatusCode == http.StatusCreated; got != tc.over {
				t.Errorf("over: %d %+v", resp.StatusCode, e)
			}
		})
	}
}

func TestPaymentIsIdempotentByReference(t *testing.T) {
	b, srv := start(t)
	bill, _ := b.Bill("power", "30040051")
	var first, again sim.Payment
	resp := call(t, srv, "POST", "/payments", payBody(bill, 1000, "ref-1"), &first)
	if resp.StatusCode != http.StatusCreated || first.Outstanding != bill.Outstanding-1000 || first.Receipt == "" ||
		first.SettlementDate != "2026-11-26" || !first.PaidAt.Equal(now) {
		t.Fatalf("%d %+v", resp.StatusCode, first)
	}
	resp = call(t, srv, "POST", "/payments", payBody(bill, 1000, "ref-1"), &again)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get(sim.ReplayedHeader) != "true" || again != first {
		t.Errorf("replay: %d %+v", resp.StatusCode, again)
	}
	var e sim.Error
	resp = call(t, srv, "POST", "/payments", payBody(bill, 2000, "ref-1"), &e)
	if resp.StatusCode != http.StatusConflict || e.Code != sim.CodeReferenceConflict {
		t.Errorf("conflict: %d %+v", resp.StatusCode, e)
	}
	if after, _ := b.Bill("power", "30040051"); after.Outstanding != bill.Outstanding-1000 || after.Status != sim.StatusPartiallyPaid {
		t.Errorf("bill = %+v", after)
	}
	var l sim.Lookup
	call(t, srv, "GET", "/payments/ref-1", "", &l)
	if l.Status != sim.Applied || l.Payment == nil || *l.Payment != first || l.Request.Amount != 1000 {
		t.Errorf("lookup = %+v", l)
	}
	// A refusal is the reference's answer too: asking again changes nothing.
	paid, _ := b.Bill("water", "30040051")
	for range 2 {
		resp = call(t, srv, "POST", "/payments", payBody(paid, 1, "ref-2"), &e)
		if resp.StatusCode != http.StatusUnprocessableEntity || e.Code != sim.CodePartialNotAllowed {
			t.Errorf("refusal: %d %+v", resp.StatusCode, e)
		}
	}
	call(t, srv, "GET", "/payments/ref-2", "", &l)
	if l.Status != sim.Refused || l.Error == nil || l.Error.Code != sim.CodePartialNotAllowed {
		t.Errorf("lookup = %+v", l)
	}
	if n, c := len(b.Payments()), b.Calls(); n != 1 || c != 5 {
		t.Errorf("payments %d, calls %d; want 1 and 5", n, c)
	}
}

func TestFaults(t *testing.T) {
	b, srv := start(t)
	bill, _ := b.Bill("water", "40050061")
	body := payBody(bill, bill.Outstanding, "fault-1")

	b.FailNext(2)
	for range 2 {
		var e sim.Error
		if resp := call(t, srv, "POST", "/payments", body, &e); resp.StatusCode != http.StatusServiceUnavailable || e.Code != sim.CodeUnavailable {
			t.Errorf("got %d %+v, want 503", resp.StatusCode, e)
		}
	}
	if len(b.Payments()) != 0 {
		t.Fatal("a failed call applied a payment")
	}

	b.DropNextAnswers(1)
	req, _ := http.NewRequest("POST", srv.URL+"/payments", strings.NewReader(body))
	resp, err := srv.Client().Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got an answer %d, want none", resp.StatusCode)
	}
	if p := b.Payments(); len(p) != 1 {
		t.Fatalf("the dropped call applied %d payments, want 1", len(p))
	}
	var again sim.Payment
	if resp := call(t, srv, "POST", "/payments", body, &again); resp.StatusCode != http.StatusCreated || again.Receipt != b.Payments()[0].Receipt {
		t.Errorf("after the drop: %d %+v", resp.StatusCode, again)
	}

	b.SetDelay(50 * time.Millisecond)
	t0 := time.Now()
	call(t, srv, "GET", "/health", "", nil)
	if d := time.Since(t0); d < 50*time.Millisecond {
		t.Errorf("a delayed call took %v", d)
	}
}

func TestReconciliation(t *testing.T) {
	b, srv := start(t)
	var want int64
	for i, acct := range []string{"10000001", "10000002", "10000003"} {
		bill, _ := b.Bill("cable-tv", acct)
		var p sim.Payment
		if resp := call(t, srv, "POST", "/payments", payBody(bill, bill.Outstanding, "rec-"+strconv.Itoa(i)), &p); resp.StatusCode != http.StatusCreated {
			t.Fatal(resp.Status)
		}
		want += bill.Outstanding
	}
	resp, err := srv.Client().Get(srv.URL + "/reconciliation?date=2026-11-26")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Errorf("content type %q", ct)
	}
	rows, err := csv.NewReader(resp.Body).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 || strings.Join(rows[0], ",") != strings.Join(sim.ReconciliationHeader, ",") {
		t.Fatalf("rows = %v", rows)
	}
	var total int64
	for i, r := range rows[1:] {
		amount, err := strconv.ParseInt(r[6], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		total += amount
		if r[0] != "2026-11-26" || r[1] != "cable-tv" || r[4] != "rec-"+strconv.Itoa(i) || r[5] != b.Payments()[i].Receipt || r[7] != "CNY" {
			t.Errorf("row %d = %v", i, r)
		}
	}
	if total != want {
		t.Errorf("the file adds up to %d, want %d", total, want)
	}
	// The next day's file is empty: payments belong to the day they were made.
	resp2, err := srv.Client().Get(srv.URL + "/reconciliation?date=2026-11-27")
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	next, _ := csv.NewReader(resp2.Body).ReadAll()
	if len(next) != 1 {
		t.Errorf("next day = %v", next)
	}
	if sim.Date(now.UTC()) != "2026-11-26" {
		t.Errorf("Date = %s: the billers' day is Beijing time", sim.Date(now.UTC()))
	}
}

func TestStart(t *testing.T) {
	b := sim.New(sim.Options{})
	url, stop, err := b.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c := &http.Client{}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("health: %s", resp.Status)
	}
	stop()
	stop() // twice is harmless
	if _, err := c.Get(url + "/health"); err == nil {
		t.Error("still serving after stop")
	}
}
