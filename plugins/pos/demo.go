package pos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/citycard/citycard/plugins/demo"
	"github.com/citycard/citycard/plugins/pos/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
)

// The demo's shop, terminal and card range.
const (
	// DemoMerchant is the corner shop whose terminal the demo drives.
	DemoMerchant = "M-POS-SHOP"
	// DemoTerminal is the shop's terminal (field 41).
	DemoTerminal = "POSDEMO1"
	// DemoCityBIN is the city card's prefix in the demo: the hub's default
	// issuer prefix.
	DemoCityBIN = "310099"
	// demoMasterKey is the demo terminal's master key: published here, so
	// it protects nothing and must never be a real terminal's.
	demoMasterKey = "0123456789ABCDEFFEDCBA9876543210"
	// demoPIN is the PIN the demo hub gives its cards.
	demoPIN = "123456"
)

// Bundle is the POS plugin as the citycard binary ships it: the plugin and
// the corner shop it takes payments for. It starts nothing of its own: the
// terminal is the flows' simulated one, and the front end listens on a
// free local port, which the flows ask the plugin for
// (pos.terminal.status.v1).
func Bundle() demo.Bundle {
	return demo.Bundle{
		Name:      Name,
		Channel:   "retail",
		New:       func() sdk.Plugin { return New() },
		Merchants: []demo.Merchant{{ID: DemoMerchant, Name: "Corner shop", MCC: "5411", FeeRateBps: 60}},
		Start: func(ctx context.Context) (json.RawMessage, func(), error) {
			cfg, err := json.Marshal(map[string]any{
				"listen":     "127.0.0.1:0",
				"city_bins":  []string{DemoCityBIN},
				"bank_cards": true,
				// The zone key plugins/unionpay's demo bundle shares.
				"pin_zone_key": DemoPINZoneKey,
				"terminals":    map[string]any{DemoTerminal: map[string]any{"merchant": DemoMerchant, "master_key": demoMasterKey}},
			})
			return cfg, func() {}, err
		},
		Flows: Flows(),
	}
}

// Flows are the POS demo flows: a city card purchase at the shop's
// terminal, a purchase voided, and a pre-authorisation completed for less.
func Flows() []demo.Flow {
	return []demo.Flow{
		{Name: "pos: city card purchase at the corner shop's terminal", Run: purchaseFlow},
		{Name: "pos: purchase voided at the terminal", Run: voidFlow},
		{Name: "pos: pre-authorisation and completion", Run: preAuthFlow},
	}
}

// terminals are the demo's simulated terminals by the front end they talk
// to: a terminal keeps its STAN counter and batch from flow to flow, as a
// real one keeps them in its memory.
var terminals struct {
	sync.Mutex
	byAddr map[string]*sim.Terminal
}

// demoTerminal registers the shop's terminal with the hub, asks the plugin
// where its front end listens and signs the simulated terminal on.
func demoTerminal(ctx context.Context, env demo.Env) (*sim.Terminal, error) {
	err := env.API(ctx, http.MethodPost, "/v1/terminals", map[string]any{"id": DemoTerminal, "merchant": DemoMerchant}, nil)
	if err != nil && !strings.Contains(err.Error(), sdk.CodeDuplicate) && !strings.Contains(err.Error(), sdk.CodeConflict) {
		return nil, fmt.Errorf("registering terminal %s with the hub: %w", DemoTerminal, err)
	}
	body, _ := json.Marshal(map[string]any{"terminal": DemoTerminal})
	replies, err := env.Send(ctx, Name, sdk.Message{Type: TypeTerminalStatus, Payload: body})
	if err != nil {
		return nil, fmt.Errorf("asking the pos plugin for its front end: %w", err)
	}
	var s TerminalState
	if len(replies) != 1 || replies[0].Type != TypeTerminalState || json.Unmarshal(replies[0].Payload, &s) != nil || s.Listen == "" {
		return nil, fmt.Errorf("the pos plugin answered its status with %+v", replies)
	}
	tmk, err := cardcrypto.ParseKey(demoMasterKey)
	if err != nil {
		return nil, err
	}
	terminals.Lock()
	t := terminals.byAddr[s.Listen]
	if t == nil {
		t, err = sim.New(sim.Config{Addr: s.Listen, TerminalID: DemoTerminal, MerchantID: DemoMerchant + strings.Repeat(" ", 15-len(DemoMerchant)),
			MasterKey: tmk, Timeout: 10 * time.Second})
		if err != nil {
			terminals.Unlock()
			return nil, err
		}
		if terminals.byAddr == nil {
			terminals.byAddr = map[string]*sim.Terminal{}
		}
		terminals.byAddr[s.Listen] = t
	}
	terminals.Unlock()
	rc, err := t.SignOn(ctx)
	if err != nil || rc != "00" {
		return nil, fmt.Errorf("terminal %s sign-on: response %q, %v", DemoTerminal, rc, err)
	}
	k := t.Keys()
	kcvPIN, _ := cardcrypto.KCV(k.PIN)
	kcvMAC, _ := cardcrypto.KCV(k.MAC)
	env.Logf("terminal %s signed on at %s: PIN key KCV %X, MAC key KCV %X, batch %s", DemoTerminal, s.Listen, kcvPIN, kcvMAC, t.Batch())
	return t, nil
}

func purchaseFlow(ctx context.Context, env demo.Env) error {
	t, err := demoTerminal(ctx, env)
	if err != nil {
		return err
	}
	defer t.Close()
	card := env.Card("alice")
	before, err := cardBalance(ctx, env, card)
	if err != nil {
		return err
	}
	r, err := t.Purchase(ctx, sim.Card{PAN: card, PIN: demoPIN}, 2580)
	if err != nil {
		return fmt.Errorf("purchase: %w", err)
	}
	if !r.Approved() {
		return fmt.Errorf("a 25.80 CNY purchase with alice's card was answered %s, want 00", r.RC)
	}
	env.Logf("purchase of %s with alice's card and PIN: approved, RRN %s, auth code %s", demo.Yuan(2580), r.RRN, r.AuthCode)
	if err := wantBalance(ctx, env, card, before-2580); err != nil {
		return err
	}
	rc, err := t.Purchase(ctx, sim.Card{PAN: card, PIN: "000000"}, 100)
	if err != nil {
		return fmt.Errorf("purchase with a wrong PIN: %w", err)
	}
	if rc.RC != "55" {
		return fmt.Errorf("a wrong PIN was answered %s, want 55", rc.RC)
	}
	env.Logf("a wrong PIN is declined 55 and charges nothing")
	if err := wantBalance(ctx, env, card, before-2580); err != nil {
		return err
	}
	return nil
}

func voidFlow(ctx context.Context, env demo.Env) error {
	t, err := demoTerminal(ctx, env)
	if err != nil {
		return err
	}
	defer t.Close()
	card := env.Card("alice")
	before, err := cardBalance(ctx, env, card)
	if err != nil {
		return err
	}
	r, err := t.Purchase(ctx, sim.Card{PAN: card, PIN: demoPIN}, 1200)
	if err != nil || !r.Approved() {
		return fmt.Errorf("purchase: %+v %v", r.RC, err)
	}
	if err := wantBalance(ctx, env, card, before-1200); err != nil {
		return err
	}
	v, err := t.Void(ctx, r, sim.Card{PAN: card})
	if err != nil {
		return fmt.Errorf("void: %w", err)
	}
	if !v.Approved() {
		return fmt.Errorf("the void of purchase STAN %s was answered %s, want 00", r.STAN, v.RC)
	}
	env.Logf("purchase of %s (STAN %s, RRN %s) voided: RRN %s", demo.Yuan(1200), r.STAN, r.RRN, v.RRN)
	if err := wantBalance(ctx, env, card, before); err != nil {
		return err
	}
	if err := settleBalanced(ctx, t); err != nil {
		return err
	}
	env.Logf("batch settled and balanced; the terminal moves to batch %s", t.Batch())
	return nil
}

// preAuthFlow holds 50.00 CNY on alice's card, completes it for 30.00
// (the rest is released) and settles the batch, the completion counted as
// the sale.
func preAuthFlow(ctx context.Context, env demo.Env) error {
	t, err := demoTerminal(ctx, env)
	if err != nil {
		return err
	}
	defer t.Close()
	card := env.Card("alice")
	before, err := cardBalance(ctx, env, card)
	if err != nil {
		return err
	}
	pa, err := t.PreAuth(ctx, sim.Card{PAN: card, PIN: demoPIN}, 5000)
	if err != nil {
		return fmt.Errorf("pre-authorisation: %w", err)
	}
	if !pa.Approved() {
		return fmt.Errorf("a 50.00 CNY pre-authorisation with alice's card was answered %s, want 00", pa.RC)
	}
	avail := "not given"
	if pa.Balance != nil {
		avail = demo.Yuan(*pa.Balance)
	}
	env.Logf("pre-authorisation of %s with alice's card and PIN: approved, auth code %s, available after it %s", demo.Yuan(5000), pa.AuthCode, avail)
	if err := wantBalance(ctx, env, card, before); err != nil {
		return fmt.Errorf("after the pre-authorisation, which moves no money: %w", err)
	}
	c, err := t.Complete(ctx, pa, sim.Card{PAN: card}, 3000)
	if err != nil {
		return fmt.Errorf("completion: %w", err)
	}
	if !c.Approved() {
		return fmt.Errorf("the completion of pre-authorisation STAN %s for %s was answered %s, want 00", pa.STAN, demo.Yuan(3000), c.RC)
	}
	env.Logf("pre-authorisation completed for %s (RRN %s); the rest of the hold is released", demo.Yuan(3000), c.RRN)
	if err := wantBalance(ctx, env, card, before-3000); err != nil {
		return err
	}
	if err := settleBalanced(ctx, t); err != nil {
		return err
	}
	env.Logf("batch settled and balanced, the completion counted as a sale; the terminal moves to batch %s", t.Batch())
	return nil
}

// settleBalanced settles the terminal's batch, which must balance.
func settleBalanced(ctx context.Context, t *sim.Terminal) error {
	rc, err := t.Settle(ctx)
	if err != nil {
		return fmt.Errorf("settlement: %w", err)
	}
	if rc != "00" {
		return fmt.Errorf("the batch settlement was answered %s, want 00 (balanced)", rc)
	}
	return nil
}

func cardBalance(ctx context.Context, env demo.Env, card string) (int64, error) {
	var c struct {
		Balance int64 `json:"balance"`
	}
	if err := env.API(ctx, http.MethodGet, "/v1/cards/"+card, nil, &c); err != nil {
		return 0, fmt.Errorf("reading card %s: %w", card, err)
	}
	return c.Balance, nil
}

func wantBalance(ctx context.Context, env demo.Env, card string, want int64) error {
	got, err := cardBalance(ctx, env, card)
	if err != nil {
		return err
	}
	if got != want {
		return errors.New("card " + cardcrypto.MaskPAN(card) + " holds " + demo.Yuan(got) + ", want " + demo.Yuan(want))
	}
	return nil
}

// DemoPINZoneKey is the demo's PIN zone key (double-length, hex), the
// one plugins/unionpay's demo bundle takes PIN blocks under
// (unionpay.DemoPINZoneKey). Published here, so it protects nothing and
// must never be a real zone's.
const DemoPINZoneKey = "89ABCDEF0123456776543210FEDCBA98"

// DemoBankCard is a UnionPay card the demo's acquirer simulator knows:
// Luhn-valid and outside the city card's range.
const DemoBankCard = "6222020000000000018"

// BankFlows are the POS flows that need the hub's bank acquirer plugin
// (plugins/unionpay) running beside this one: `citycard demo` runs them
// when both are bundled.
func BankFlows() []demo.Flow {
	return []demo.Flow{
		{Name: "pos: bank card purchase through UnionPay", Run: bankPurchaseFlow},
		{Name: "pos: city card short, its linked bank card pays the rest", Run: fallbackFlow},
		{Name: "pos: bank card pre-authorisation with PIN, completed for less", Run: bankPreAuthFlow},
		{Name: "pos: bank card balance inquiry with PIN", Run: bankBalanceFlow},
		{Name: "pos: bank card purchase voided, and one refunded", Run: bankUndoFlow},
	}
}

// bankUndoFlow voids a UnionPay card's purchase at the terminal, and
// refunds another: the hub has the acquirer void or refund them.
func bankUndoFlow(ctx context.Context, env demo.Env) error {
	t, err := demoTerminal(ctx, env)
	if err != nil {
		return err
	}
	defer t.Close()
	card := sim.Card{PAN: DemoBankCard, Expiry: "3012"}
	p, err := t.Purchase(ctx, card, 1800)
	if err != nil || !p.Approved() {
		return fmt.Errorf("bank card purchase: %s %v", p.RC, err)
	}
	v, err := t.Void(ctx, p, card)
	if err != nil || !v.Approved() {
		return fmt.Errorf("void of a bank card purchase: %s %v, want 00", v.RC, err)
	}
	p, err = t.Purchase(ctx, card, 3000)
	if err != nil || !p.Approved() {
		return fmt.Errorf("bank card purchase: %s %v", p.RC, err)
	}
	r, err := t.Refund(ctx, p, card, 3000)
	if err != nil || !r.Approved() {
		return fmt.Errorf("refund of a bank card purchase: %s %v, want 00", r.RC, err)
	}
	env.Logf("UnionPay card %s: a purchase of %s voided, one of %s refunded",
		cardcrypto.MaskPAN(DemoBankCard), demo.Yuan(1800), demo.Yuan(3000))
	return nil
}

// demoBankPIN is the PIN the demo enters for the bank card: its block is
// translated to the zone key the acquirer shares.
const demoBankPIN = "2468"

// bankPreAuthFlow pre-authorises 120.00 CNY on a UnionPay card with its
// PIN, which the plugin translates to the PIN zone key, and completes it
// for 95.00: the hub has the acquirer hold and complete it.
func bankPreAuthFlow(ctx context.Context, env demo.Env) error {
	t, err := demoTerminal(ctx, env)
	if err != nil {
		return err
	}
	defer t.Close()
	card := sim.Card{PAN: DemoBankCard, PIN: demoBankPIN, Expiry: "3012"}
	pa, err := t.PreAuth(ctx, card, 12000)
	if err != nil {
		return fmt.Errorf("bank card pre-authorisation: %w", err)
	}
	if !pa.Approved() {
		return fmt.Errorf("a 120.00 CNY pre-authorisation with a UnionPay card and its PIN was answered %s, want 00", pa.RC)
	}
	c, err := t.Complete(ctx, pa, sim.Card{PAN: DemoBankCard, Expiry: "3012"}, 9500)
	if err != nil {
		return fmt.Errorf("bank card completion: %w", err)
	}
	if !c.Approved() {
		return fmt.Errorf("the completion for 95.00 CNY was answered %s, want 00", c.RC)
	}
	env.Logf("pre-authorisation of %s on UnionPay card %s with its PIN (translated to the zone key), completed for %s",
		demo.Yuan(12000), cardcrypto.MaskPAN(DemoBankCard), demo.Yuan(9500))
	return nil
}

// bankBalanceFlow asks a UnionPay card's balance at the shop's terminal,
// with its PIN: the hub has the acquirer ask the bank.
func bankBalanceFlow(ctx context.Context, env demo.Env) error {
	t, err := demoTerminal(ctx, env)
	if err != nil {
		return err
	}
	defer t.Close()
	r, err := t.Balance(ctx, sim.Card{PAN: DemoBankCard, PIN: demoBankPIN, Expiry: "3012"})
	if err != nil {
		return fmt.Errorf("bank card balance inquiry: %w", err)
	}
	if !r.Approved() || r.Balance == nil {
		return fmt.Errorf("a UnionPay card's balance inquiry was answered %s (balance given: %v), want 00 with a balance", r.RC, r.Balance != nil)
	}
	env.Logf("balance of UnionPay card %s, asked with its PIN: %s", cardcrypto.MaskPAN(DemoBankCard), demo.Yuan(*r.Balance))
	return nil
}

// bankPurchaseFlow buys with a UnionPay card at the shop's terminal: the
// plugin sends the purchase to the hub, which has the acquirer authorise
// it and keeps only the card's masked number.
func bankPurchaseFlow(ctx context.Context, env demo.Env) error {
	t, err := demoTerminal(ctx, env)
	if err != nil {
		return err
	}
	defer t.Close()
	r, err := t.Purchase(ctx, sim.Card{PAN: DemoBankCard, Expiry: "3012"}, 4200)
	if err != nil {
		return fmt.Errorf("bank card purchase: %w", err)
	}
	if !r.Approved() {
		return fmt.Errorf("a 42.00 CNY purchase with a UnionPay card was answered %s, want 00", r.RC)
	}
	env.Logf("purchase of %s with UnionPay card %s: approved by the acquirer, RRN %s", demo.Yuan(4200), cardcrypto.MaskPAN(DemoBankCard), r.RRN)
	return nil
}

// DemoLinkedCard is the bank card the demo links to a city card; the
// acquirer's simulator knows it without a PIN, as a card on file.
const DemoLinkedCard = "6222020000000000026"

// fallbackFlow issues gina a card holding 20.00 with her bank card linked
// to it, and buys 50.00 at the terminal with the city card and its PIN:
// the card pays its 20.00 and the bank card the other 30.00, as one
// payment.
func fallbackFlow(ctx context.Context, env demo.Env) error {
	var card struct {
		Number string `json:"number"`
	}
	if err := env.API(ctx, http.MethodPost, "/v1/cards", map[string]any{"holder": map[string]any{"name": "gina", "id_type": "resident_id",
		"id_number": "310101199707076789"}, "pin": "123456", "method": "cash"}, &card); err != nil {
		return fmt.Errorf("issue gina's card: %w", err)
	}
	if err := env.API(ctx, http.MethodPost, "/v1/cards/"+card.Number+"/topups",
		map[string]any{"amount": 2000, "currency": "CNY", "purse": "cash", "method": "cash"}, nil); err != nil {
		return fmt.Errorf("top up gina's card: %w", err)
	}
	var link struct {
		MaskedPAN string `json:"masked_pan"`
	}
	if err := env.API(ctx, http.MethodPost, "/v1/cards/"+card.Number+"/bank-card",
		map[string]any{"pan": DemoLinkedCard, "expiry": "3012"}, &link); err != nil {
		return fmt.Errorf("link gina's bank card: %w", err)
	}
	t, err := demoTerminal(ctx, env)
	if err != nil {
		return err
	}
	defer t.Close()
	r, err := t.Purchase(ctx, sim.Card{PAN: card.Number, PIN: "123456"}, 5000)
	if err != nil {
		return fmt.Errorf("purchase: %w", err)
	}
	if !r.Approved() {
		return fmt.Errorf("a 50.00 CNY purchase on a card holding 20.00 with a linked bank card was answered %s, want 00", r.RC)
	}
	if err := wantBalance(ctx, env, card.Number, 0); err != nil {
		return err
	}
	env.Logf("gina's card %s holds 20.00 and links bank card %s", card.Number, link.MaskedPAN)
	env.Logf("purchase of %s at the terminal: the city card paid %s, the bank card %s, one payment, RRN %s",
		demo.Yuan(5000), demo.Yuan(2000), demo.Yuan(3000), r.RRN)
	return nil
}
