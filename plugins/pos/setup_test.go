package pos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/plugins/cardcrypto"
	"github.com/citycard/citycard/plugins/pos"
	"github.com/citycard/citycard/plugins/pos/iso"
	"github.com/citycard/citycard/plugins/pos/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/plugintest"
)

// Cards of the tests' hub: city cards start 310099.
const (
	alice    = "3100990000000013" // 500.00 yuan, PIN 123456
	bob      = "3100990000000021" // 3.00 yuan, PIN 654321
	carol    = "3100990000000039" // reported lost
	dave     = "3100990000000047" // 100.00 yuan, PIN 111111
	bankCard = "6222021234567894" // a UnionPay bank card
	cityBIN  = "310099"
)

// Terminals of the tests.
const (
	term1    = "POS00001"
	term2    = "POS00002" // ANSI X9.19 MACs
	merchant = "M-POS-SHOP"
	tmkHex   = "0123456789ABCDEFFEDCBA9876543210"
	tmk2Hex  = "89ABCDEF0123456776543210FEDCBA98"
)

var acceptor = merchant + strings.Repeat(" ", 15-len(merchant))

func key(t testing.TB, h string) cardcrypto.Key {
	t.Helper()
	k, err := cardcrypto.ParseKey(h)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// bank answers card.payment.v1 and card.reversal.v1 for the FakeHub as the
// hub does: the retail channel's PIN rule (a PIN above 200.00 yuan, and
// any PIN offered is checked), three wrong PINs lock the PIN, approved
// while the card has the money, a reversal credits the payment back once.
// The FakeHub itself applies each idempotency key once.
type bank struct {
	mu       sync.Mutex
	cards    map[string]*card
	byKey    map[string]*payment
	nextID   int64
	reversed int
}

type card struct {
	balance int64
	pin     string
	tries   int
	status  string
}

type payment struct {
	id       string
	card     string
	amount   int64
	reversed bool
}

func newBank() *bank {
	return &bank{cards: map[string]*card{
		alice: {balance: 50000, pin: "123456", status: "active"},
		bob:   {balance: 300, pin: "654321", status: "active"},
		carol: {balance: 10000, pin: "222222", status: "lost"},
		dave:  {balance: 10000, pin: "111111", status: "active"},
	}, byKey: map[string]*payment{}, nextID: 1000}
}

func (b *bank) balance(number string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cards[number].balance
}

func (b *bank) reversals() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reversed
}

func (b *bank) respond(m sdk.Message) (json.RawMessage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC).Format(time.RFC3339)
	switch m.Type {
	case "card.payment.v1":
		var p struct {
			Card, Merchant, Terminal, Currency, PIN string
			Amount                                  int64
		}
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			return nil, err
		}
		c, ok := b.cards[p.Card]
		if !ok {
			return nil, sdk.Errorf("card_not_found", "no card %s", p.Card)
		}
		ans := map[string]any{"card": p.Card, "channel": "retail", "merchant": p.Merchant, "terminal": p.Terminal, "amount": p.Amount,
			"currency": p.Currency, "legs": []any{}, "at": now, "balance": c.balance}
		decline := func(reason string) (json.RawMessage, error) {
			ans["status"], ans["reason"] = "declined", reason
			return json.Marshal(ans)
		}
		if c.status == "lost" {
			return decline("card_lost")
		}
		if p.PIN != "" || p.Amount > 20000 {
			switch {
			case p.PIN == "":
				return decline("pin_required")
			case c.tries >= 3:
				return decline("pin_locked")
			case p.PIN != c.pin:
				c.tries++
				if c.tries >= 3 {
					return decline("pin_locked")
				}
				return decline("pin_incorrect")
			}
			c.tries = 0
		}
		if c.balance < p.Amount {
			return decline("insufficient_funds")
		}
		b.nextID++
		id := strconv.FormatInt(b.nextID, 10)
		c.balance -= p.Amount
		b.byKey[m.IdempotencyKey] = &payment{id: id, card: p.Card, amount: p.Amount}
		ans["status"], ans["id"], ans["balance"] = "approved", id, c.balance
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
		b.reversed++
		b.cards[p.card].balance += p.amount
		b.nextID++
		return json.Marshal(map[string]any{"id": strconv.FormatInt(b.nextID, 10), "reverses": p.id, "kind": "reversal",
			"card": p.card, "amount": -p.amount, "currency": "CNY", "at": now})
	}
	return nil, sdk.Errorf("invalid_request", "the bank does not take %s", m.Type)
}

// world is one test's plugin, hub double and front end.
type world struct {
	t    testing.TB
	p    *pos.Plugin
	h    *plugintest.Harness
	hub  *plugintest.FakeHub
	bank *bank
	addr string
	logs *syncBuffer
}

func config() map[string]any {
	return map[string]any{
		"listen":    "127.0.0.1:0",
		"city_bins": []string{cityBIN},
		"terminals": map[string]any{
			term1: map[string]any{"merchant": merchant, "master_key": tmkHex},
			term2: map[string]any{"merchant": merchant, "master_key": tmk2Hex, "mac": "x919"},
		},
		"hub_timeout_ms": 5000,
	}
}

func setup(t testing.TB, opts ...plugintest.Option) *world {
	t.Helper()
	return setupWith(t, config(), nil, opts...)
}

// setupWith starts the plugin with cfg, logging to log, or as JSON to
// world.logs when log is nil.
func setupWith(t testing.TB, cfg map[string]any, log *slog.Logger, opts ...plugintest.Option) *world {
	t.Helper()
	w := &world{t: t, bank: newBank(), hub: plugintest.NewFakeHub(), logs: &syncBuffer{}}
	w.hub.RespondWith(w.bank.respond)
	for number, c := range w.bank.cards {
		w.hub.SetQuery(sdk.QueryCardStatus, number, map[string]any{"card": number, "status": c.status, "product": "standard"})
	}
	if log == nil {
		log = slog.New(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	w.p = pos.New(pos.WithLogger(log))
	w.h = plugintest.Start(t, w.p, append([]plugintest.Option{plugintest.WithHub(w.hub)}, opts...)...)
	if err := w.h.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	w.addr = w.p.Addr()
	return w
}

// status asks the plugin for a terminal's state, as the demo does.
func (w *world) status(tid string) pos.TerminalState {
	w.t.Helper()
	replies, err := w.h.Handle(plugintest.NewMessage(pos.TypeTerminalStatus, map[string]any{"terminal": tid}))
	if err != nil || len(replies) != 1 || replies[0].Type != pos.TypeTerminalState {
		w.t.Fatalf("status: %+v %v", replies, err)
	}
	var s pos.TerminalState
	if err := json.Unmarshal(replies[0].Payload, &s); err != nil {
		w.t.Fatal(err)
	}
	return s
}

// terminal returns a simulated terminal, not signed on.
func (w *world) terminal(tid string) *sim.Terminal {
	w.t.Helper()
	cfg := sim.Config{Addr: w.addr, TerminalID: tid, MerchantID: acceptor, MasterKey: key(w.t, tmkHex), Timeout: 5 * time.Second}
	if tid == term2 {
		cfg.MasterKey, cfg.MAC = key(w.t, tmk2Hex), iso.MACX919
	}
	term, err := sim.New(cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { _ = term.Close() })
	return term
}

// signedOn returns a terminal that has signed on.
func (w *world) signedOn(tid string) *sim.Terminal {
	w.t.Helper()
	term := w.terminal(tid)
	if rc, err := term.SignOn(ctx(w.t)); err != nil || rc != "00" {
		w.t.Fatalf("sign-on: %s %v", rc, err)
	}
	return term
}

// submitted returns the messages of type typ the hub applied.
func (w *world) submitted(typ string) []sdk.Message {
	var out []sdk.Message
	for _, m := range w.hub.Submitted() {
		if m.Type == typ {
			out = append(out, m)
		}
	}
	return out
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return c
}

// expect checks a terminal transaction's response code:
// expect(t, "purchase", "00")(term.Purchase(...)).
func expect(t *testing.T, what, rc string) func(sim.Result, error) sim.Result {
	t.Helper()
	return func(r sim.Result, err error) sim.Result {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if r.RC != rc {
			t.Fatalf("%s: response code %s, want %s", what, r.RC, rc)
		}
		return r
	}
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

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
