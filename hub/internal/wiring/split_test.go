package wiring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/hub/internal/pluginhost"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
	"github.com/citycard/citycard/hub/internal/wiring"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
)

// bankPAN makes a bank card number with a check digit that holds and the
// given last four digits (the fake acquirer's rules read them).
func bankPAN(t testing.TB, last4 string) string {
	t.Helper()
	for d := range 10 {
		pan := "62220200000" + strconv.Itoa(d) + "000" + last4
		if cardcrypto.LuhnValid(pan) {
			return pan
		}
	}
	t.Fatalf("no card number ends %s", last4)
	return ""
}

// splitHub is a hub whose payer plugin takes payments on the retail
// channel, which falls back to a linked bank card, with the fake acquirer.
type splitHub struct {
	*pluginHub
	stop func()
}

func startSplitHub(t testing.TB, st store.Store, staleAfter time.Duration) *splitHub {
	t.Helper()
	t.Cleanup(pin.SetCostForTesting(1, 8))
	bin, sum := payerPlugin(t)
	bankBin, bankSum := testPlugin(t, "./testdata/fakebank")
	app, err := wiring.New(context.Background(), st, wiring.Config{AdminToken: token, Logger: quiet, BankPlugin: "fakebank",
		BankTimeout: time.Second, SagaStaleAfter: staleAfter,
		Ledger: ledger.Config{Now: func() time.Time { return time.Now().Truncate(time.Microsecond) }},
		Plugins: []pluginhost.Spec{
			{Name: "payer", Path: bin, SHA256: sum, Channel: "retail", Config: json.RawMessage(`{"merchant": "M-PAYER"}`)},
			{Name: "fakebank", Path: bankBin, SHA256: bankSum},
		}})
	if err != nil {
		t.Fatal(err)
	}
	c, stop, done := serve(t, app)
	var once sync.Once
	h := &splitHub{pluginHub: &pluginHub{app: app, c: c, st: st}, stop: func() { once.Do(func() { stop(); <-done }) }}
	t.Cleanup(h.stop)
	return h
}

func (h *splitHub) seed(t testing.TB, balance int) {
	t.Helper()
	h.c.must("POST", "/v1/merchants", map[string]any{"id": "M-PAYER", "name": "Payer", "mcc": "5411", "settlement_account": "1"}, 201)
	h.c.must("POST", "/v1/terminals", map[string]any{"id": "T-PAYER", "merchant": "M-PAYER"}, 201)
	h.card = h.c.must("POST", "/v1/cards", map[string]any{"holder": map[string]any{"name": "Li", "id_type": "passport", "id_number": "E1"}}, 201)["number"].(string)
	h.c.must("POST", "/v1/cards/"+h.card+"/topups", map[string]any{"amount": balance, "currency": "CNY"}, 201)
}

func (h *splitHub) link(t testing.TB, pan string) map[string]any {
	t.Helper()
	return h.c.must("POST", "/v1/cards/"+h.card+"/bank-card", map[string]any{"pan": pan, "expiry": "3012"}, 200)
}

func (h *splitHub) charge(t *testing.T, key string, amount int) (map[string]any, bool) {
	t.Helper()
	_, m := h.send("payer.charge.v1", key, map[string]any{"key": key, "card": h.card, "amount": amount, "terminal": "T-PAYER"})
	return receipt(t, m)
}

type bankCounts struct {
	Authorised int               `json:"authorised"`
	Reversed   []string          `json:"reversed_keys"`
	Cancels    map[string]string `json:"cancels"`
}

func (h *splitHub) bank(t *testing.T) bankCounts {
	t.Helper()
	replies, err := h.app.Send(context.Background(), "fakebank", sdkMessage("fakebank.count.v1", map[string]any{}))
	if err != nil {
		t.Fatal(err)
	}
	var c bankCounts
	if err := json.Unmarshal(replies[0].Payload, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// available is the card's balance less what holds reserve.
func (h *splitHub) pendingHolds(t *testing.T) int {
	t.Helper()
	hs, err := h.st.PendingHolds(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(hs)
}

func legsOf(d map[string]any) map[string]float64 {
	out := map[string]float64{}
	for _, l := range d["legs"].([]any) {
		m := l.(map[string]any)
		out[m["purse"].(string)] = m["amount"].(float64)
	}
	return out
}

// TestSplitPayment: a city card short of the amount pays what it holds
// and the linked bank card the rest, as one payment; a bank decline or a
// bank that answers too late leaves the card exactly as it was and the
// bank's part reversed.
func TestSplitPayment(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		// The card holds 100.00 and the payments are 150.00, so the card
		// pays all it holds and the bank card the 50.00 left.
		const held, price = 10000, 15000
		h := startSplitHub(t, st, time.Hour)
		h.seed(t, held)
		ctx := context.Background()

		// Without a linked card, a short card is declined as before.
		if d, _ := h.pay(t, "s0", price); d.Status != sdk.StatusDeclined || d.Reason != sdk.CodeInsufficientFunds {
			t.Fatalf("no linked card: %+v", d)
		}
		h.c.must("GET", "/v1/cards/"+h.card+"/bank-card", nil, 404)

		good := bankPAN(t, "0019")
		view := h.link(t, good)
		matches(t, "api-bank-card", view)
		if view["last4"] != "0019" || strings.Contains(fmt.Sprint(view), good) {
			t.Fatalf("link answer: %v", view)
		}
		l, err := st.LinkedBankCard(ctx, h.card)
		if err != nil || l.Token == "" || strings.Contains(l.Token, good) || l.MaskedPAN != cardcrypto.MaskPAN(good) {
			t.Fatalf("stored link %+v %v", l, err)
		}

		// 150.00 on a card holding 100.00: the card pays 100.00, the bank 50.00.
		paid, dup := h.pay(t, "s1", price)
		matches(t, "api-payment", paid)
		if paid.Status != sdk.StatusApproved || dup || paid.Amount != price {
			t.Fatalf("split payment: %+v", paid)
		}
		if legs := legs(paid); legs["cash"] != held || legs["bank_card"] != price-held || len(legs) != 2 {
			t.Fatalf("legs %v", legs)
		}
		if b := h.balance(); b != 0 {
			t.Fatalf("balance after the split payment %v, want 0", b)
		}
		id, _ := strconv.ParseInt(paid.ID, 10, 64)
		tr, err := st.GetTransfer(ctx, id)
		if err != nil || tr.Amount != price || strings.Contains(tr.Memo, good) || len(tr.Entries) != 3 {
			t.Fatalf("transfer %+v %v", tr, err)
		}
		// Resent: the same payment, the bank asked once.
		again, dup := h.pay(t, "s1", price)
		if !dup || again.ID != paid.ID {
			t.Fatalf("resent: %+v %v", again, dup)
		}
		if n := h.bank(t).Authorised; n != 1 {
			t.Fatalf("bank asked %d times, want 1", n)
		}
		// An empty card: the bank card pays it all.
		const small = 3000
		if d, _ := h.pay(t, "s2", small); d.Status != sdk.StatusApproved || legs(d)["bank_card"] != small || len(legs(d)) != 1 {
			t.Fatalf("empty card: %+v", d)
		}
		// A card that can pay does so alone; what it keeps is what the
		// declined payments below must leave it.
		const topup, alone = 10000, 4000
		const left = topup - alone
		h.c.must("POST", "/v1/cards/"+h.card+"/topups", map[string]any{"amount": topup, "currency": "CNY"}, 201)
		if d, _ := h.pay(t, "s3", alone); d.Status != sdk.StatusApproved || legs(d)["cash"] != alone || len(legs(d)) != 1 {
			t.Fatalf("card pays alone: %+v", d)
		}
		if n := h.bank(t).Authorised; n != 2 {
			t.Fatalf("bank asked %d times, want 2", n)
		}
		// The bank declines: all or nothing.
		h.link(t, bankPAN(t, "0051"))
		if d, _ := h.pay(t, "s4", price); d.Status != sdk.StatusDeclined || d.Reason != sdk.CodeInsufficientFunds {
			t.Fatalf("bank declines: %+v", d)
		}
		if b := h.balance(); b != left {
			t.Fatalf("balance after a declined split %v, want %d", b, left)
		}
		// The acquirer timed out itself (68).
		h.link(t, bankPAN(t, "0068"))
		if d, _ := h.pay(t, "s5", price); d.Status != sdk.StatusDeclined || d.Reason != sdk.CodeBankUnavailable {
			t.Fatalf("acquirer timeout: %+v", d)
		}
		// The bank answers later than the hub waits: declined, and the
		// bank's part reversed.
		h.link(t, bankPAN(t, "0091"))
		d, _ := h.pay(t, "s6", price)
		if d.Status != sdk.StatusDeclined || d.Reason != sdk.CodeBankUnavailable {
			t.Fatalf("bank timeout: %+v", d)
		}
		if b := h.balance(); b != left {
			t.Fatalf("balance after a bank timeout %v, want %d", b, left)
		}
		if n := h.pendingHolds(t); n != 0 {
			t.Fatalf("%d holds left pending", n)
		}
		rev := h.bank(t).Reversed
		for _, k := range []string{"bank:payer:charge-s5", "bank:payer:charge-s6"} {
			if !slices.Contains(rev, k) {
				t.Fatalf("bank reversals %v lack %s", rev, k)
			}
		}
		if slices.Contains(rev, "bank:payer:charge-s1") {
			t.Fatalf("an approved split was reversed: %v", rev)
		}
		// Resending a declined split gets the decline, and asks no one.
		if d, dup := h.pay(t, "s6", price); !dup || d.Reason != sdk.CodeBankUnavailable {
			t.Fatalf("resent decline: %+v %v", d, dup)
		}
		// Every saga ended.
		if open, err := st.OpenSagas(ctx, 10); err != nil || len(open) != 0 {
			t.Fatalf("open sagas %v %v", open, err)
		}
		// A frozen card is refused before any bank is asked.
		asked := h.bank(t).Authorised
		h.c.must("POST", "/v1/cards/"+h.card+"/freeze", map[string]any{}, 200)
		if d, _ := h.pay(t, "s7", price); d.Status != sdk.StatusDeclined || d.Reason != sdk.CodeCardFrozen {
			t.Fatalf("frozen: %+v", d)
		}
		if h.bank(t).Authorised != asked {
			t.Fatal("the bank was asked for a frozen card")
		}
		h.c.must("POST", "/v1/cards/"+h.card+"/bank-card/unlink", map[string]any{}, 200)
		h.c.must("POST", "/v1/cards/"+h.card+"/bank-card/unlink", map[string]any{}, 404)
		h.verify(t)
	})
}

// TestSplitPaymentRecovery: a hub stopped between holding the card's part
// and hearing from the bank leaves a saga open; the next hub declines the
// payment, releases the hold and reverses the bank's part.
func TestSplitPaymentRecovery(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		h := startSplitHub(t, st, time.Hour)
		h.seed(t, 10000)
		ctx := context.Background()
		h.link(t, bankPAN(t, "0019"))
		// What the stopped hub had done: the card's part held, the saga at
		// the bank leg.
		hold := h.c.must("POST", "/v1/holds", map[string]any{"card": h.card, "channel": "retail", "merchant": "M-PAYER",
			"amount": 10000, "currency": "CNY"}, 201)
		holdID, _ := strconv.ParseInt(hold["id"].(string), 10, 64)
		data, _ := json.Marshal(map[string]any{"plugin": "payer", "request": map[string]any{"card": h.card, "channel": "retail",
			"merchant": "M-PAYER", "terminal": "T-PAYER", "amount": 15000, "currency": "CNY"}, "hash": "h",
			"token": "tok_x", "masked_bank": "622202******0019", "step": "bank", "hold": holdID, "city_amount": 10000, "bank_amount": 5000})
		if _, _, err := st.CreateSaga(ctx, store.Saga{Operator: "plugin:payer", Key: "charge-crash", Kind: "split_payment",
			State: store.SagaRunning, Data: data, CreatedAt: time.Now().Add(-time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if b := h.balance(); b != 10000 {
			t.Fatalf("balance %v", b)
		}
		h.stop()

		h = startSplitHub(t, st, 50*time.Millisecond)
		h.card = l(t, st)
		deadline := time.Now().Add(10 * time.Second)
		for {
			open, err := st.OpenSagas(ctx, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(open) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("saga still open: %+v", open)
			}
			time.Sleep(20 * time.Millisecond)
		}
		g, err := st.GetSaga(ctx, "plugin:payer", "charge-crash")
		if err != nil || g.State != store.SagaUndone {
			t.Fatalf("saga %+v %v", g, err)
		}
		if n := h.pendingHolds(t); n != 0 {
			t.Fatalf("%d holds left pending", n)
		}
		if !slices.Contains(h.bank(t).Reversed, "bank:payer:charge-crash") {
			t.Fatalf("the bank's part was not reversed: %v", h.bank(t).Reversed)
		}
		// The payment, asked again, is the decline the recovery recorded.
		body, ok, err := h.app.Service().Answer(ctx, "plugin:payer", "charge-crash")
		if err != nil || !ok || !strings.Contains(string(body), `"interrupted"`) {
			t.Fatalf("answer %s %v %v", body, ok, err)
		}
		h.verify(t)
	})
}

// l finds the one card of a store's ledger.
func l(t *testing.T, st store.Store) string {
	t.Helper()
	var card string
	_ = st.AllAccounts(context.Background(), func(a store.Account) error {
		if a.Card != "" {
			card = a.Card
		}
		return nil
	})
	return card
}

// TestBankCardOperations: a bank card's pre-authorisation, completion and
// cancellation, a void and a refund, and a balance inquiry, each carried
// out at the acquirer and, where money moves, in the ledger.
func TestBankCardOperations(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		h := startSplitHub(t, st, time.Hour)
		h.seed(t, 10000)
		ctx := context.Background()
		pan := bankPAN(t, "0019")
		bankMsg := func(typ, key string, extra map[string]any) map[string]any {
			t.Helper()
			p := map[string]any{"key": key, "card": pan, "terminal": "T-PAYER", "expiry": "3012"}
			for k, v := range extra {
				p[k] = v
			}
			st, m := h.send(typ, typ+key, p)
			if st != 200 {
				t.Fatalf("%s %s: %d %v", typ, key, st, m)
			}
			d, _ := receipt(t, m)
			return d
		}
		// Pre-authorised at the bank; nothing moves in the ledger yet.
		pre := bankMsg("payer.preauth.v1", "p1", map[string]any{"amount": 5000})
		if pre["status"] != "approved" || pre["bank_key"] != "bank:payer:hold-p1" || pre["id"] != nil || pre["card"] != cardcrypto.MaskPAN(pan) {
			t.Fatalf("bank pre-authorisation: %v", pre)
		}
		rows, _ := st.CountRows(ctx)
		transfers := rows["transfers"]
		// Completed for part of it: posted.
		done := bankMsg("payer.complete.v1", "p1", map[string]any{"amount": 3000})
		if done["status"] != "captured" || done["captured"].(float64) != 3000 || done["transfer"] == nil {
			t.Fatalf("completion: %v", done)
		}
		if rows, _ := st.CountRows(ctx); rows["transfers"] != transfers+1 {
			t.Fatalf("transfers %d → %d after a completion", transfers, rows["transfers"])
		}
		// Completing again is the same answer, not a second posting.
		if again := bankMsg("payer.complete.v1", "p1", map[string]any{"amount": 3000}); again["transfer"] != done["transfer"] {
			t.Fatalf("completion resent: %v", again)
		}
		// Another pre-authorisation, cancelled at the bank.
		bankMsg("payer.preauth.v1", "p2", map[string]any{"amount": 2000})
		if v := bankMsg("payer.cancel.v1", "p2", nil); v["status"] != "voided" {
			t.Fatalf("cancellation: %v", v)
		}
		// A purchase refunded: at the bank, then in the ledger.
		paid := bankMsg("payer.charge.v1", "c1", map[string]any{"amount": 4000})
		if paid["status"] != "approved" {
			t.Fatalf("bank purchase: %v", paid)
		}
		if r := bankMsg("payer.reverse.v1", "c1", map[string]any{"kind": "refund"}); r["reverses"] != paid["id"] {
			t.Fatalf("refund: %v", r)
		}
		// A purchase refunded in two parts; a third beyond what is left is
		// declined by the bank and posts nothing.
		part := bankMsg("payer.charge.v1", "c3", map[string]any{"amount": 5000})
		for i, amount := range []int{2000, 2500} {
			key := fmt.Sprintf("c3-%d", i)
			_, m := h.send("payer.reverse.v1", key, map[string]any{"key": "c3", "kind": "refund", "amount": amount, "rkey": key})
			if d, _ := receipt(t, m); d["reverses"] != part["id"] || d["amount"].(float64) != float64(amount) {
				t.Fatalf("refund of %d: %v", amount, d)
			}
		}
		if st, m := h.send("payer.reverse.v1", "c3-2", map[string]any{"key": "c3", "kind": "refund", "amount": 1000, "rkey": "c3-2"}); st == 200 {
			t.Fatalf("a refund beyond what is left: %d %v", st, m)
		}
		// A city card's payment is undone whole only.
		if d, _ := h.charge(t, "city1", 1000); d["status"] != "approved" {
			t.Fatalf("city card payment: %v", d)
		}
		if st, m := h.send("payer.reverse.v1", "city1-r", map[string]any{"key": "city1", "kind": "refund", "amount": 100}); st == 200 || m["code"] != "invalid_amount" {
			t.Fatalf("part of a city card's payment undone: %d %v", st, m)
		}
		h.c.must("POST", "/v1/cards/"+h.card+"/topups", map[string]any{"amount": 1000, "currency": "CNY"}, 201)
		// A split payment voided: the bank's part at the bank, the card's
		// part back to the card.
		h.link(t, pan)
		split, _ := h.charge(t, "c2", 15000)
		if split["status"] != "approved" || legsOf(split)["bank_card"] != 5000 {
			t.Fatalf("split: %v", split)
		}
		if r := bankMsg("payer.reverse.v1", "c2", nil); r["reverses"] != split["id"] {
			t.Fatalf("void of the split payment: %v", r)
		}
		// seeded 10000, less the city card's payment of 1000 (whole, not
		// refundable in part), plus the top-up of 1000 that replaced it;
		// the split's card part came back with its void.
		if b := h.balance(); b != 10000 {
			t.Fatalf("balance after the void %v, want 10000", b)
		}
		replies, err := h.app.Send(ctx, "fakebank", sdkMessage("fakebank.count.v1", map[string]any{}))
		if err != nil {
			t.Fatal(err)
		}
		var counts struct {
			Cancels map[string]string `json:"cancels"`
		}
		_ = json.Unmarshal(replies[0].Payload, &counts)
		want := map[string]string{"bank:payer:hold-p1": "completed", "bank:payer:hold-p2": "preauth_cancel",
			"bank:payer:charge-c1": "refund", "bank:payer:charge-c2": "void"}
		for k, v := range want {
			if counts.Cancels[k] != v {
				t.Fatalf("at the bank %s is %q, want %q (all: %v)", k, counts.Cancels[k], v, counts.Cancels)
			}
		}
		// Balance inquiries: the bank's for a bank card, the ledger's for a city card.
		// The fake acquirer (testdata/fakebank) answers every balance
		// inquiry with the same balance: what is checked is that the
		// bank's answer, not the ledger's, reaches the terminal.
		const fakeBankBalance = 88800
		if b := bankMsg("payer.inquiry.v1", "q1", nil); b["status"] != "approved" || b["balance"].(float64) != fakeBankBalance {
			t.Fatalf("bank balance: %v", b)
		}
		_, m := h.send("payer.inquiry.v1", "q2", map[string]any{"key": "q2", "card": h.card})
		if b, _ := receipt(t, m); b["balance"].(float64) != 10000 {
			t.Fatalf("city card balance: %v", b)
		}
		h.verify(t)
	})
}
