package medical_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/plugins/medical"
	"github.com/citycard/citycard/plugins/medical/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/plugintest"
)

// The tests' people (sim.DefaultPersons), cards and hospital.
const (
	alicePsn  = "P3101000001" // insured: 70% fund, half the rest from the account
	aliceID   = "310101199001011234"
	carolID   = "310101197003033456" // not insured
	aliceCard = "8860001000000011"
	carolCard = "8860001000000029"
	hospital  = "M-HOSP-1"
	pharmacy  = "M-PHARM-1"
	orgCode   = "H31000000001"
)

// clock is the insurer's time in every test.
func clock() time.Time { return time.Date(2026, 11, 26, 10, 0, 0, 0, sim.Zone) }

// world is one test's plugin, insurer and hub. The hub is played by the
// FakeHub answering as the real one does: a bill of an insured patient is
// settled with the insurer through the plugin (medical.settle.v1), the
// rest charged to the card, and a receipt answered; a refund reverses the
// settlement (medical.settle_reverse.v1).
type world struct {
	t   *testing.T
	p   *medical.Plugin
	h   *plugintest.Harness
	ins *sim.Insurer
	his *sim.HIS
	url string

	mu    sync.Mutex
	bills map[string]receipt // bill key → the receipt
}

// receipt is the tests' hub's answer to medical.bill.v1, with the bill
// it answers.
type receipt struct {
	medical.Receipt
	bill medical.BillMessage
}

type setupOptions struct {
	insurerTimeout time.Duration
	middleware     func(http.Handler) http.Handler
}

// withMiddleware puts m in front of the insurer.
func withMiddleware(m func(http.Handler) http.Handler) func(*setupOptions) {
	return func(o *setupOptions) { o.middleware = m }
}

// swallowFirst lets the insurer apply the first n requests of infno but
// keeps their answers until the caller gives up: a timeout after the fact.
func swallowFirst(infno string, n int) func(http.Handler) http.Handler {
	var mu sync.Mutex
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			swallow := r.URL.Path == "/api/"+infno && n > 0
			if swallow {
				n--
			}
			mu.Unlock()
			if !swallow {
				next.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(httptest.NewRecorder(), r)
			<-r.Context().Done()
		})
	}
}

func setup(t *testing.T, opts ...func(*setupOptions)) *world {
	t.Helper()
	o := setupOptions{insurerTimeout: 2 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	w := &world{t: t, ins: sim.New(sim.Options{Now: clock}), bills: map[string]receipt{}}
	var h http.Handler = w.ins.Handler()
	if o.middleware != nil {
		h = o.middleware(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() { w.ins.Close(); srv.Close() })
	w.url = srv.URL
	hub := plugintest.NewFakeHub()
	hub.RespondWith(w.respond)
	w.p = medical.New(medical.WithLogger(slog.New(slog.DiscardHandler)))
	w.h = plugintest.Start(t, w.p, plugintest.WithHub(hub))
	if err := w.h.Configure(config(srv.URL, o.insurerTimeout)); err != nil {
		t.Fatal(err)
	}
	w.his = sim.NewHIS(w.p.Addr())
	t.Cleanup(w.his.Close)
	return w
}

func withInsurerTimeout(d time.Duration) func(*setupOptions) {
	return func(o *setupOptions) { o.insurerTimeout = d }
}

func config(insurerURL string, timeout time.Duration) map[string]any {
	return map[string]any{"listen": "127.0.0.1:0", "insurer_url": insurerURL, "org_code": orgCode,
		"insurer_timeout_ms": timeout.Milliseconds(), "hub_timeout_ms": 5000}
}

func (w *world) respond(m sdk.Message) (json.RawMessage, error) {
	switch m.Type {
	case medical.TypeBill:
		var b medical.BillMessage
		if err := json.Unmarshal(m.Payload, &b); err != nil {
			return nil, err
		}
		r := receipt{Receipt: medical.Receipt{BillID: b.BillID, Status: "settled", Total: b.Total, CashPurse: b.Total}, bill: b}
		if b.Insured {
			s, err := w.settle(m.IdempotencyKey, b)
			if err != nil {
				return nil, err
			}
			r.Presettlement = b.Presettlement
			if s.Status != medical.Settled {
				r.Status, r.Reason = "declined", s.Reason
			} else {
				r.SetlID, r.FundPay, r.MedicalPurse, r.CashPurse = s.SetlID, s.FundPay, s.AcctPay, s.CashPay
			}
		}
		w.mu.Lock()
		w.bills[m.IdempotencyKey] = r
		w.mu.Unlock()
		return json.Marshal(r)
	case medical.TypeRefund:
		var in medical.RefundMessage
		if err := json.Unmarshal(m.Payload, &in); err != nil {
			return nil, err
		}
		key := "bill:" + in.Hospital + ":" + in.BillID
		w.mu.Lock()
		r, ok := w.bills[key]
		w.mu.Unlock()
		if !ok || r.Status != "settled" {
			return nil, sdk.Errorf("transfer_not_found", "no settled bill %s", key)
		}
		if r.SetlID != "" {
			replies, err := w.handle(medical.TypeSettleReverse, "reverse:"+key, map[string]any{"bill_key": key, "setl_id": r.SetlID,
				"psn_no": r.bill.PsnNo, "mdtrt_id": r.bill.MdtrtID})
			if err != nil {
				return nil, err
			}
			var rev medical.SettlementReversal
			if err := only(replies, medical.TypeSettlementReversal, &rev); err != nil || rev.Status != medical.Reversed {
				return nil, sdk.Errorf("conflict", "the insurer did not reverse %s: %+v %v", r.SetlID, rev, err)
			}
		}
		return json.Marshal(map[string]any{"bill_id": in.BillID, "status": "refunded", "total": r.Total})
	}
	return nil, sdk.Errorf(sdk.CodeUnsupportedMessageType, "the tests' hub takes no %s", m.Type)
}

func (w *world) settle(key string, b medical.BillMessage) (medical.Settlement, error) {
	replies, err := w.handle(medical.TypeSettle, "settle:"+key, map[string]any{"bill_key": key, "psn_no": b.PsnNo,
		"mdtrt_id": b.MdtrtID, "bill_id": b.BillID, "total": b.Total, "currency": b.Currency})
	if err != nil {
		return medical.Settlement{}, err
	}
	var s medical.Settlement
	return s, only(replies, medical.TypeSettlement, &s)
}

func (w *world) handle(typ, key string, payload any) ([]sdk.Message, error) {
	m := plugintest.NewMessage(typ, payload)
	m.IdempotencyKey = key
	return w.h.Handle(m)
}

func only(replies []sdk.Message, typ string, out any) error {
	if len(replies) != 1 || replies[0].Type != typ {
		return errors.New("want one " + typ)
	}
	return json.Unmarshal(replies[0].Payload, out)
}

// settleMsg delivers medical.settle.v1 for a visit and decodes the answer.
func (w *world) settleVisit(key, mdtrtID string, total int64) medical.Settlement {
	w.t.Helper()
	replies, err := w.handle(medical.TypeSettle, "settle:"+key, map[string]any{"bill_key": key, "psn_no": alicePsn,
		"mdtrt_id": mdtrtID, "bill_id": "B-" + key, "total": total, "currency": "CNY"})
	if err != nil {
		w.t.Fatal(err)
	}
	var s medical.Settlement
	if err := only(replies, medical.TypeSettlement, &s); err != nil {
		w.t.Fatalf("%v: %+v", err, replies)
	}
	return s
}

// visit opens a visit of alice at the insurer directly, for 5050 fen.
func (w *world) visit(billNo string) string {
	w.t.Helper()
	id, err := w.ins.Register(alicePsn, orgCode, billNo, feeLines())
	if err != nil {
		w.t.Fatal(err)
	}
	return id
}

func feeLines() []sim.FeeLine {
	return []sim.FeeLine{
		{Code: "110100001", Name: "Consultation", UnitPrice: 2500, Quantity: 1, Amount: 2500},
		{Code: "XJ01CAA040", Name: "Amoxicillin 0.25g", UnitPrice: 1275, Quantity: 2, Amount: 2550},
	}
}

// bill is a bill of 5050 fen for the patient.
func bill(id, hosp, kind, card, idNo, name string) sim.Bill {
	return sim.Bill{BillID: id, Hospital: hosp, Kind: kind, Card: card, Patient: sim.Patient{IDNo: idNo, Name: name},
		Lines:    []sim.Line{sim.NewLine("110100001", "Consultation", 2500, 1), sim.NewLine("XJ01CAA040", "Amoxicillin 0.25g", 1275, 2)},
		Currency: "CNY"}.Totalled()
}

// post posts a bill and returns the answer.
func (w *world) post(b sim.Bill) sim.Answer {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, err := w.his.PostBill(ctx, b)
	if err != nil {
		w.t.Fatal(err)
	}
	return a
}

func (w *world) submitted(typ string) []sdk.Message {
	var out []sdk.Message
	for _, m := range w.h.Submitted() {
		if m.Type == typ {
			out = append(out, m)
		}
	}
	return out
}

func compact(t *testing.T, raw []byte) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func wantError(t *testing.T, err error, code string) *sdk.Error {
	t.Helper()
	var e *sdk.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("got %v, want the error %s", err, code)
	}
	return e
}
