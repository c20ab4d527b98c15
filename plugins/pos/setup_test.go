package pos_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/plugins/pos"
	"github.com/citycard/citycard/plugins/pos/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/plugintest"
	"github.com/citycard/citycard/sdk/pos/iso"
)

// Cards of the tests' hub: city cards start 310099.
const (
	alice    = "3100990000000013" // 500.00 yuan, PIN 123456
	bob      = "3100990000000021" // 3.00 yuan, PIN 654321
	carol    = "3100990000000039" // reported lost
	dave     = "3100990000000047" // 100.00 yuan, PIN 111111
	bankCard = "6222021234567894" // a UnionPay bank card: 800.00 yuan at its bank, PIN 48159
	bankPIN  = "48159"
	cityBIN  = "310099"
	// zpkHex is the PIN zone key shared with the bank acquirer.
	zpkHex = pos.DemoPINZoneKey
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

// bank answers card.payment.v1, card.reversal.v1, card.hold.v1,
// card.capture.v1 and card.void.v1 for the FakeHub as the hub does: the
// retail channel's PIN rule (a PIN above 200.00 yuan, and any PIN offered
// is checked), three wrong PINs lock the PIN, approved while the card has
// the money available (its balance less its holds), a reversal credits the
// payment back once, a hold is captured for its amount or less or voided,
// once. The FakeHub itself applies each idempotency key once.
type bank struct {
	mu       sync.Mutex
	cards    map[string]*card
	byKey    map[string]*payment
	holds    map[string]*hold // by the hold message's idempotency key
	nextID   int64
	reversed int
}

type card struct {
	balance int64
	held    int64 // pending holds
	pin     string
	tries   int
	status  string
	// bank is set for a bank card: its PIN arrives as a pin_block under
	// the zone key, and it needs its expiry.
	bank bool
}

type hold struct {
	id     string
	card   string
	amount int64
	status string // pending, captured, voided
}

type payment struct {
	id       string
	card     string
	amount   int64
	reversed bool
	refunded int64 // by partial refunds
	kinds    []string
}

func newBank() *bank {
	return &bank{cards: map[string]*card{
		alice: {balance: 50000, pin: "123456", status: "active"},
		bob:   {balance: 300, pin: "654321", status: "active"},
		carol: {balance: 10000, pin: "222222", status: "lost"},
		dave:  {balance: 10000, pin: "111111", status: "active"},
		// A bank card as the hub's bank acquirer answers for it.
		bankCard: {balance: 80000, pin: bankPIN, status: "active", bank: true},
	}, byKey: map[string]*payment{}, holds: map[string]*hold{}, nextID: 1000}
}

// held returns what card has on hold.
func (b *bank) held(number string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cards[number].held
}

// cardBalance is the card_balance query's answer for a card.
func (b *bank) cardBalance(number string) map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.cards[number]
	return map[string]any{"card": number, "status": c.status, "currency": "CNY", "balance": c.balance,
		"available": c.balance - c.held, "purses": []any{}}
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
	case "card.payment.v1", "card.hold.v1":
		var p struct {
			Card, Merchant, Terminal, Currency, PIN, Expiry string
			PINBlock                                        string `json:"pin_block"`
			Amount                                          int64
		}
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			return nil, err
		}
		c, ok := b.cards[p.Card]
		if !ok {
			return nil, sdk.Errorf("card_not_found", "no card %s", p.Card)
		}
		if c.bank {
			// The bank checks the PIN it gets under the zone key.
			pin, err := bankPINOf(p.PINBlock, p.Card)
			if err != nil || p.PIN != "" || p.Expiry == "" {
				return nil, sdk.Errorf("invalid_request", "a bank card needs its expiry and its PIN as a pin_block")
			}
			p.PIN = pin
		}
		ans := map[string]any{"card": p.Card, "channel": "retail", "merchant": p.Merchant, "terminal": p.Terminal, "amount": p.Amount,
			"currency": p.Currency, "legs": []any{}, "at": now, "balance": c.balance - c.held}
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
		if c.balance-c.held < p.Amount {
			return decline("insufficient_funds")
		}
		b.nextID++
		id := strconv.FormatInt(b.nextID, 10)
		if m.Type == "card.hold.v1" {
			c.held += p.Amount
			b.holds[m.IdempotencyKey] = &hold{id: id, card: p.Card, amount: p.Amount, status: "pending"}
			ans["status"], ans["id"], ans["balance"] = "approved", id, c.balance-c.held
			return json.Marshal(ans)
		}
		c.balance -= p.Amount
		b.byKey[m.IdempotencyKey] = &payment{id: id, card: p.Card, amount: p.Amount}
		ans["status"], ans["id"], ans["balance"] = "approved", id, c.balance-c.held
		ans["legs"] = []any{map[string]any{"purse": "cash", "amount": p.Amount}}
		return json.Marshal(ans)
	case "card.reversal.v1":
		var r struct {
			PaymentKey string `json:"payment_key"`
			Kind       string `json:"kind"`
			Amount     int64  `json:"amount"`
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
		p.kinds = append(p.kinds, r.Kind)
		if r.Amount > 0 {
			// A partial refund credits part of the payment back.
			if r.Kind != "refund" || r.Amount > p.amount-p.refunded {
				return nil, sdk.Errorf("invalid_request", "a refund of %d exceeds what is left of %d", r.Amount, p.amount-p.refunded)
			}
			p.refunded += r.Amount
			b.cards[p.card].balance += r.Amount
			b.nextID++
			return json.Marshal(map[string]any{"id": strconv.FormatInt(b.nextID, 10), "reverses": p.id, "kind": "refund",
				"card": p.card, "amount": -r.Amount, "currency": "CNY", "at": now})
		}
		if p.refunded > 0 {
			return nil, sdk.Errorf("invalid_request", "payment %s is partly refunded", p.id)
		}
		p.reversed = true
		b.reversed++
		b.cards[p.card].balance += p.amount
		b.nextID++
		return json.Marshal(map[string]any{"id": strconv.FormatInt(b.nextID, 10), "reverses": p.id, "kind": "reversal",
			"card": p.card, "amount": -p.amount, "currency": "CNY", "at": now})
	case "card.capture.v1", "card.void.v1":
		var u struct {
			HoldKey string `json:"hold_key"`
			Amount  int64  `json:"amount"`
		}
		if err := json.Unmarshal(m.Payload, &u); err != nil {
			return nil, err
		}
		h, ok := b.holds[u.HoldKey]
		if !ok {
			return nil, sdk.Errorf("hold_not_found", "no approved hold under key %s", u.HoldKey)
		}
		if h.status != "pending" {
			return nil, sdk.Errorf("hold_not_pending", "hold %s is %s", h.id, h.status)
		}
		c := b.cards[h.card]
		ans := map[string]any{"hold": h.id, "card": h.card, "merchant": merchant, "amount": h.amount, "captured": 0,
			"currency": "CNY", "legs": []any{}, "at": now}
		if m.Type == "card.void.v1" {
			h.status = "voided"
			c.held -= h.amount
			ans["status"] = h.status
			return json.Marshal(ans)
		}
		amount := u.Amount
		if amount == 0 {
			amount = h.amount
		}
		if amount > h.amount {
			return nil, sdk.Errorf("capture_exceeds_hold", "capture of %d exceeds the hold of %d", amount, h.amount)
		}
		h.status = "captured"
		c.held -= h.amount
		c.balance -= amount
		b.nextID++
		ans["status"], ans["captured"], ans["transfer"] = h.status, amount, strconv.FormatInt(b.nextID, 10)
		ans["legs"] = []any{map[string]any{"purse": "cash", "amount": amount}}
		return json.Marshal(ans)
	case "card.balance_inquiry.v1":
		var q struct {
			Card     string `json:"card"`
			Expiry   string `json:"expiry"`
			PINBlock string `json:"pin_block"`
		}
		if err := json.Unmarshal(m.Payload, &q); err != nil {
			return nil, err
		}
		c, ok := b.cards[q.Card]
		if !ok || !c.bank {
			return json.Marshal(map[string]any{"status": "declined", "reason": "bank_declined"})
		}
		if q.PINBlock != "" {
			pin, err := bankPINOf(q.PINBlock, q.Card)
			if err != nil {
				return nil, err
			}
			if pin != c.pin {
				return json.Marshal(map[string]any{"status": "declined", "reason": "pin_incorrect"})
			}
		}
		return json.Marshal(map[string]any{"status": "approved", "balance": c.balance - c.held})
	}
	return nil, sdk.Errorf("invalid_request", "the bank does not take %s", m.Type)
}

// bankPINOf deciphers a pin_block under the zone key, as the bank acquirer
// does: "" for no block.
func bankPINOf(block, pan string) (string, error) {
	if block == "" {
		return "", nil
	}
	if strings.ToUpper(block) != block || len(block) != 16 {
		return "", sdk.Errorf("invalid_request", "pin_block is not 16 upper-case hex digits")
	}
	raw, err := hex.DecodeString(block)
	if err != nil {
		return "", err
	}
	zpk, err := cardcrypto.ParseKey(zpkHex)
	if err != nil {
		return "", err
	}
	p, err := cardcrypto.ParsePAN(pan)
	if err != nil {
		return "", err
	}
	pin, err := cardcrypto.DecryptPINBlock(zpk, raw, p)
	if err != nil {
		return "", sdk.Errorf("invalid_request", "pin_block does not decipher under the zone key")
	}
	return pin.Reveal(), nil
}

// refundedOf reports what was refunded of the payment under key, and the
// kinds of the reversals asked of it.
func (b *bank) refundedOf(key string) (int64, []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.byKey[key]
	if p == nil {
		return 0, nil
	}
	return p.refunded, append([]string(nil), p.kinds...)
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

// bankConfig is config with bank cards taken and PINs translated to the
// zone key.
func bankConfig() map[string]any {
	c := config()
	c["bank_cards"] = true
	c["pin_zone_key"] = zpkHex
	return c
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
	w.publishBalances()
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

// publishBalances sets the hub's card_balance answers from the bank: the
// FakeHub answers queries from a table, so a test publishes the balances
// before it asks for one.
func (w *world) publishBalances() {
	w.bank.mu.Lock()
	numbers := make([]string, 0, len(w.bank.cards))
	for number := range w.bank.cards {
		numbers = append(numbers, number)
	}
	w.bank.mu.Unlock()
	for _, number := range numbers {
		w.hub.SetQuery(pos.QueryCardBalance, number, w.bank.cardBalance(number))
	}
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
