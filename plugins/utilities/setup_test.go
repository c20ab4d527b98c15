package utilities_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/plugins/utilities"
	"github.com/citycard/citycard/plugins/utilities/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/plugintest"
)

// Cards of the tests' hub.
const (
	alice = "8860001000000011" // 500.00 yuan
	bob   = "8860001000000029" // 3.00 yuan
)

// clock is the billers' time in every test: bills depend on the month.
func clock() time.Time { return time.Date(2026, 11, 26, 10, 0, 0, 0, sim.Zone) }

// bank answers card.payment.v1 and card.reversal.v1 for the FakeHub as the
// hub does: approved while the card has the money, declined otherwise,
// and a reversal credits the payment back once. The FakeHub itself applies
// each idempotency key once.
type bank struct {
	mu       sync.Mutex
	balances map[string]int64
	byKey    map[string]*payment // card.payment.v1 idempotency key → payment
	byID     map[string]*payment
	nextID   int64
}

type payment struct {
	id       string
	card     string
	merchant string
	amount   int64
	reversed bool
}

func newBank() *bank {
	return &bank{balances: map[string]int64{alice: 50000, bob: 300}, byKey: map[string]*payment{}, byID: map[string]*payment{}, nextID: 1000}
}

func (b *bank) balance(card string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.balances[card]
}

func (b *bank) respond(m sdk.Message) (json.RawMessage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := clock().UTC().Format(time.RFC3339)
	switch m.Type {
	case "card.payment.v1":
		var p struct {
			Card, Merchant, Currency string
			Amount                   int64
		}
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			return nil, err
		}
		bal, ok := b.balances[p.Card]
		if !ok {
			return nil, sdk.Errorf("card_not_found", "no card %s", p.Card)
		}
		ans := map[string]any{"card": p.Card, "channel": "utilities", "merchant": p.Merchant, "amount": p.Amount,
			"currency": p.Currency, "legs": []any{}, "at": now, "balance": bal}
		if bal < p.Amount {
			ans["status"], ans["reason"] = "declined", "insufficient_funds"
			return json.Marshal(ans)
		}
		b.nextID++
		id := strconv.FormatInt(b.nextID, 10)
		b.balances[p.Card] = bal - p.Amount
		b.byKey[m.IdempotencyKey] = &payment{id: id, card: p.Card, merchant: p.Merchant, amount: p.Amount}
		b.byID[id] = b.byKey[m.IdempotencyKey]
		ans["status"], ans["id"], ans["balance"] = "approved", id, bal-p.Amount
		ans["legs"] = []any{map[string]any{"purse": "cash", "amount": p.Amount}}
		return json.Marshal(ans)
	case "card.reversal.v1":
		var r struct {
			PaymentKey string `json:"payment_key"`
		}
		if err := json.Unmarshal(m.Payload, &r); err != nil {
			return nil, err
		}
		p, ok := b.byKey[r.PaymentKey]
		if !ok {
			return nil, sdk.Errorf("transfer_not_found", "no payment under key %s", r.PaymentKey)
		}
		if p.reversed {
			return nil, sdk.Errorf("already_reversed", "transfer %s is already reversed", p.id)
		}
		p.reversed = true
		b.balances[p.card] += p.amount
		b.nextID++
		return json.Marshal(map[string]any{"id": strconv.FormatInt(b.nextID, 10), "reverses": p.id, "kind": "reversal",
			"card": p.card, "amount": -p.amount, "currency": "CNY", "at": now})
	}
	return nil, sdk.Errorf("invalid_request", "the bank does not take %s", m.Type)
}

// world is one test's plugin, hub and biller.
type world struct {
	t      *testing.T
	h      *plugintest.Harness
	biller *sim.Biller
	srv    *httptest.Server
	bank   *bank
	logs   *syncBuffer
}

type setupOptions struct {
	timeout    time.Duration
	middleware func(http.Handler) http.Handler
}

func setup(t *testing.T, opts ...func(*setupOptions)) *world {
	t.Helper()
	var o setupOptions
	for _, f := range opts {
		f(&o)
	}
	w := &world{t: t, biller: sim.New(sim.Options{Now: clock}), bank: newBank(), logs: &syncBuffer{}}
	var handler http.Handler = w.biller.Handler()
	if o.middleware != nil {
		handler = o.middleware(handler)
	}
	w.srv = httptest.NewServer(handler)
	t.Cleanup(w.srv.Close)
	hub := plugintest.NewFakeHub()
	hub.RespondWith(w.bank.respond)
	log := slog.New(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w.h = plugintest.Start(t, utilities.New(utilities.WithLogger(log)), plugintest.WithHub(hub))
	cfg := config(w.srv.URL)
	if o.timeout > 0 {
		cfg["request_timeout_ms"] = o.timeout.Milliseconds()
	}
	if err := w.h.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	return w
}

func config(url string) map[string]any {
	return map[string]any{
		"biller_url": url,
		"billers": map[string]any{
			"water": map[string]any{"merchant": "M-WATER"}, "power": map[string]any{"merchant": "M-POWER"},
			"telecom": map[string]any{"merchant": "M-TELECOM"}, "internet": map[string]any{"merchant": "M-INTERNET"},
			"cable-tv": map[string]any{"merchant": "M-CABLETV"},
		},
		"request_timeout_ms": 2000,
	}
}

// bill reads the biller's own view of a bill.
func (w *world) bill(biller, account string) sim.Bill {
	w.t.Helper()
	b, err := w.biller.Bill(biller, account)
	if err != nil {
		w.t.Fatal(err)
	}
	return b
}

// payMsg is a pay message for amount against the current bill.
func (w *world) payMsg(key, biller, account, card string, amount int64) sdk.Message {
	w.t.Helper()
	b := w.bill(biller, account)
	m := plugintest.NewMessage(utilities.TypeBillPay, map[string]any{"biller": biller, "account": account,
		"bill_id": b.ID, "card": card, "amount": amount, "currency": "CNY"})
	m.IdempotencyKey = key
	return m
}

// receipt delivers m and decodes its one receipt.
func (w *world) receipt(m sdk.Message) utilities.Receipt {
	w.t.Helper()
	replies, err := w.h.Handle(m)
	if err != nil {
		w.t.Fatalf("%s: %v", m.Type, err)
	}
	if len(replies) != 1 || replies[0].Type != utilities.TypeReceipt {
		w.t.Fatalf("replies = %+v", replies)
	}
	var r utilities.Receipt
	if err := json.Unmarshal(replies[0].Payload, &r); err != nil {
		w.t.Fatal(err)
	}
	return r
}

// submitted returns the messages of type typ the hub applied.
func (w *world) submitted(typ string) []sdk.Message {
	var out []sdk.Message
	for _, m := range w.h.Submitted() {
		if m.Type == typ {
			out = append(out, m)
		}
	}
	return out
}

func wantError(t *testing.T, err error, code, field string) *sdk.Error {
	t.Helper()
	var e *sdk.Error
	if !errors.As(err, &e) {
		t.Fatalf("got %T %v, want *sdk.Error %s", err, err, code)
	}
	if e.Code != code || e.Field != field {
		t.Fatalf("got %s at %q (%s), want %s at %q", e.Code, e.Field, e.Message, code, field)
	}
	return e
}

// syncBuffer is a bytes.Buffer the plugin's concurrent handlers may log to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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
