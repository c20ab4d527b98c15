package pos_test

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/citycard/citycard/plugins/pos"
	"github.com/citycard/citycard/plugins/pos/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/plugintest"
	"github.com/citycard/citycard/sdk/pos/iso"
)

// bankExpiry is the bank card's expiry as the terminal reads it.
const bankExpiry = "3012"

var bankCardRead = sim.Card{PAN: bankCard, PIN: bankPIN, Expiry: bankExpiry}

// sentPayload decodes the payload of a message the hub got.
func sentPayload(t *testing.T, m sdk.Message) map[string]any {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// zonePIN deciphers a pin_block the hub got under the zone key.
func zonePIN(t *testing.T, block any) string {
	t.Helper()
	s, ok := block.(string)
	if !ok || len(s) != 16 || strings.ToUpper(s) != s {
		t.Fatalf("pin_block %v is not 16 upper-case hex digits", block)
	}
	raw, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	pan, _ := cardcrypto.ParsePAN(bankCard)
	pin, err := cardcrypto.DecryptPINBlock(key(t, zpkHex), raw, pan)
	if err != nil {
		t.Fatalf("pin_block does not decipher under the zone key: %v", err)
	}
	return pin.Reveal()
}

// TestBankPurchaseWithPIN: a bank card's PIN block is translated from the
// terminal's PIN key to the zone key and sent as pin_block, with the
// card's expiry; the clear PIN goes nowhere, the log included.
func TestBankPurchaseWithPIN(t *testing.T) {
	w := setupWith(t, bankConfig(), nil)
	term := w.signedOn(term1)
	r := expect(t, "bank purchase", "00")(term.Purchase(ctx(t), bankCardRead, 4200))
	if len(r.RRN) != 12 || len(r.AuthCode) != 6 {
		t.Errorf("approved: RRN %q auth %q", r.RRN, r.AuthCode)
	}
	if got := w.bank.balance(bankCard); got != 80000-4200 {
		t.Errorf("the bank card holds %d", got)
	}
	pays := w.submitted("card.payment.v1")
	if len(pays) != 1 || pays[0].IdempotencyKey != "pos-"+term1+"-000001-"+r.STAN {
		t.Fatalf("the hub got %+v", pays)
	}
	p := sentPayload(t, pays[0])
	if pin := zonePIN(t, p["pin_block"]); pin != bankPIN {
		t.Errorf("the pin_block holds another PIN")
	}
	want := `{"card":"` + bankCard + `","merchant":"M-POS-SHOP","terminal":"POS00001","amount":4200,"currency":"CNY","expiry":"3012","pin_block":"` + p["pin_block"].(string) + `"}`
	if string(pays[0].Payload) != want {
		t.Errorf("the hub got %s\nwant %s", pays[0].Payload, want)
	}
	// The terminal's block is not passed on as it came.
	pan, _ := cardcrypto.ParsePAN(bankCard)
	pin, _ := cardcrypto.ParsePIN(bankPIN)
	termBlock, _ := cardcrypto.EncryptPINBlock(term.Keys().PIN, pin, pan)
	if strings.EqualFold(hex.EncodeToString(termBlock), p["pin_block"].(string)) {
		t.Error("the PIN block was not translated")
	}

	// The wrong PIN is the bank's to decline.
	expect(t, "wrong PIN", "55")(term.Purchase(ctx(t), sim.Card{PAN: bankCard, PIN: "0000", Expiry: bankExpiry}, 100))
	// No PIN: nothing to translate.
	expect(t, "no PIN", "00")(term.Purchase(ctx(t), sim.Card{PAN: bankCard, Expiry: bankExpiry}, 100))
	if p := sentPayload(t, w.submitted("card.payment.v1")[2]); p["pin_block"] != nil || p["pin"] != nil {
		t.Errorf("a purchase without a PIN sent %v", p)
	}
	// No expiry: a bank card needs it.
	expect(t, "no expiry", "30")(term.Purchase(ctx(t), sim.Card{PAN: bankCard, PIN: bankPIN}, 100))

	logs := w.logs.String()
	for _, secret := range []string{`"` + bankPIN + `"`, "=" + bankPIN, bankCard, p["pin_block"].(string), zpkHex} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
	if !strings.Contains(logs, "622202******7894") {
		t.Error("the log does not name the masked card")
	}
}

// TestBankPINWithoutZoneKey: without pin_zone_key a bank card's PIN
// cannot be passed on: 40; without a PIN the purchase goes through.
func TestBankPINWithoutZoneKey(t *testing.T) {
	cfg := bankConfig()
	delete(cfg, "pin_zone_key")
	w := setupWith(t, cfg, nil)
	term := w.signedOn(term1)
	expect(t, "bank card with a PIN", "40")(term.Purchase(ctx(t), bankCardRead, 100))
	expect(t, "bank pre-authorisation with a PIN", "40")(term.PreAuth(ctx(t), bankCardRead, 100))
	expect(t, "bank balance with a PIN", "40")(term.Balance(ctx(t), bankCardRead))
	if n := len(w.hub.Submitted()); n != 0 {
		t.Errorf("the hub got %d messages", n)
	}
	expect(t, "bank card without a PIN", "00")(term.Purchase(ctx(t), sim.Card{PAN: bankCard, Expiry: bankExpiry}, 100))
}

// TestBankPINBlockUndecryptable: a bank card's PIN block that does not
// decipher to a format 0 block under the session's PIN key is 99, and
// nothing reaches the hub.
func TestBankPINBlockUndecryptable(t *testing.T) {
	w := setupWith(t, bankConfig(), nil)
	term := w.signedOn(term1)
	m := purchaseMsg(t, term, bankCard, 100, term.NextSTAN(), "000001")
	_ = m.Field(iso.FieldExpiry, bankExpiry)
	_ = m.BinaryField(iso.FieldPINBlock, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	_ = m.Field(iso.FieldSecurityControl, "1600000000000000")
	if rc := exchange(t, term, m, true); rc != "99" {
		t.Errorf("undecryptable PIN block: %s, want 99", rc)
	}
	if n := len(w.hub.Submitted()); n != 0 {
		t.Errorf("the hub got %d messages", n)
	}
}

// TestBankCardsOff: without bank_cards every transaction with a bank card
// is declined 15 before the hub is asked.
func TestBankCardsOff(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	expect(t, "bank purchase", "15")(term.Purchase(ctx(t), bankCardRead, 1000))
	expect(t, "bank pre-authorisation", "15")(term.PreAuth(ctx(t), bankCardRead, 1000))
	expect(t, "bank balance", "15")(term.Balance(ctx(t), bankCardRead))
	if n := len(w.hub.Submitted()); n != 0 {
		t.Errorf("the hub got %d messages", n)
	}
}

// TestBankPreAuthCompletion: a bank card's pre-authorisation is a
// card.hold.v1 with its expiry and pin_block, completed for part as a city
// card's is.
func TestBankPreAuthCompletion(t *testing.T) {
	w := setupWith(t, bankConfig(), nil)
	term := w.signedOn(term1)
	pa := expect(t, "bank pre-authorisation", "00")(term.PreAuth(ctx(t), bankCardRead, 10000))
	holds := w.submitted("card.hold.v1")
	if len(holds) != 1 || holds[0].IdempotencyKey != "pos-"+term1+"-000001-"+pa.STAN {
		t.Fatalf("the hub got %+v", holds)
	}
	p := sentPayload(t, holds[0])
	if zonePIN(t, p["pin_block"]) != bankPIN || p["expiry"] != bankExpiry || p["card"] != bankCard || p["amount"] != 10000.0 || p["pin"] != nil {
		t.Errorf("the hold: %s", holds[0].Payload)
	}
	if w.bank.held(bankCard) != 10000 {
		t.Errorf("held %d", w.bank.held(bankCard))
	}
	c := expect(t, "completion for part", "00")(term.Complete(ctx(t), pa, sim.Card{PAN: bankCard, Expiry: bankExpiry}, 6500))
	caps := w.submitted("card.capture.v1")
	if len(caps) != 1 || caps[0].IdempotencyKey != "pos-"+term1+"-000001-"+c.STAN ||
		string(caps[0].Payload) != `{"hold_key":"pos-`+term1+`-000001-`+pa.STAN+`","amount":6500,"currency":"CNY"}` {
		t.Errorf("the hub got %+v", caps)
	}
	if w.bank.balance(bankCard) != 80000-6500 || w.bank.held(bankCard) != 0 {
		t.Errorf("balance %d, held %d", w.bank.balance(bankCard), w.bank.held(bankCard))
	}
	expect(t, "second completion", "12")(term.Complete(ctx(t), pa, sim.Card{PAN: bankCard}, 100))
}

// TestBankPreAuthCancel: a bank card's pre-authorisation cancelled is a
// card.void.v1 of its hold.
func TestBankPreAuthCancel(t *testing.T) {
	w := setupWith(t, bankConfig(), nil)
	term := w.signedOn(term1)
	pa := expect(t, "bank pre-authorisation", "00")(term.PreAuth(ctx(t), bankCardRead, 3000))
	expect(t, "cancellation", "00")(term.CancelPreAuth(ctx(t), pa, sim.Card{PAN: bankCard, Expiry: bankExpiry}))
	voids := w.submitted("card.void.v1")
	if len(voids) != 1 || string(voids[0].Payload) != `{"hold_key":"pos-`+term1+`-000001-`+pa.STAN+`"}` {
		t.Errorf("the hub got %+v", voids)
	}
	if w.bank.held(bankCard) != 0 || w.bank.balance(bankCard) != 80000 {
		t.Errorf("balance %d, held %d", w.bank.balance(bankCard), w.bank.held(bankCard))
	}
	expect(t, "completion after the cancellation", "12")(term.Complete(ctx(t), pa, sim.Card{PAN: bankCard}, 100))
}

// TestBankVoid: a bank purchase voided is a card.reversal.v1 of kind void.
func TestBankVoid(t *testing.T) {
	w := setupWith(t, bankConfig(), nil)
	term := w.signedOn(term1)
	p := expect(t, "bank purchase", "00")(term.Purchase(ctx(t), bankCardRead, 2500))
	v := expect(t, "void", "00")(term.Void(ctx(t), p, sim.Card{PAN: bankCard, Expiry: bankExpiry}))
	revs := w.submitted("card.reversal.v1")
	if len(revs) != 1 || revs[0].IdempotencyKey != "pos-"+term1+"-000001-"+v.STAN ||
		string(revs[0].Payload) != `{"payment_key":"pos-`+term1+`-000001-`+p.STAN+`","memo":"POS `+term1+` void of batch 000001 STAN `+p.STAN+`","kind":"void"}` {
		t.Errorf("the hub got %+v", revs)
	}
	if w.bank.balance(bankCard) != 80000 {
		t.Errorf("the bank card holds %d", w.bank.balance(bankCard))
	}
	expect(t, "refund of a voided purchase", "94")(term.Refund(ctx(t), p, sim.Card{PAN: bankCard}, 100))
	if tot := term.Totals(); tot.Domestic.DebitCount != 0 {
		t.Errorf("totals %+v", tot)
	}
	if rc, err := term.Settle(ctx(t)); err != nil || rc != "00" {
		t.Errorf("settle: %s %v", rc, err)
	}
}

// TestBankPartialRefunds: a bank purchase refunded in parts; the journal
// keeps what is left, so a refund of more is 64 before the hub is asked,
// and so is a void once part was refunded.
func TestBankPartialRefunds(t *testing.T) {
	w := setupWith(t, bankConfig(), nil)
	term := w.signedOn(term1)
	p := expect(t, "bank purchase", "00")(term.Purchase(ctx(t), bankCardRead, 5000))
	card := sim.Card{PAN: bankCard, Expiry: bankExpiry}
	r1 := expect(t, "first partial refund", "00")(term.Refund(ctx(t), p, card, 1200))
	expect(t, "void after a refund", "64")(term.Void(ctx(t), p, card))
	r2 := expect(t, "second partial refund", "00")(term.Refund(ctx(t), p, card, 2000))
	expect(t, "refund of more than is left", "64")(term.Refund(ctx(t), p, card, 1801))
	revs := w.submitted("card.reversal.v1")
	memo := func(stan string) string { return "POS " + term1 + " refund of batch 000001 STAN " + stan }
	if len(revs) != 2 ||
		revs[0].IdempotencyKey != "pos-"+term1+"-000001-"+r1.STAN ||
		string(revs[0].Payload) != `{"payment_key":"pos-`+term1+`-000001-`+p.STAN+`","memo":"`+memo(p.STAN)+`","kind":"refund","amount":1200}` ||
		revs[1].IdempotencyKey != "pos-"+term1+"-000001-"+r2.STAN ||
		string(revs[1].Payload) != `{"payment_key":"pos-`+term1+`-000001-`+p.STAN+`","memo":"`+memo(p.STAN)+`","kind":"refund","amount":2000}` {
		t.Errorf("the hub got %+v", revs)
	}
	if refunded, kinds := w.bank.refundedOf("pos-" + term1 + "-000001-" + p.STAN); refunded != 3200 || len(kinds) != 2 {
		t.Errorf("the bank refunded %d (%v)", refunded, kinds)
	}
	if w.bank.balance(bankCard) != 80000-5000+3200 {
		t.Errorf("the bank card holds %d", w.bank.balance(bankCard))
	}
	// What is left can still be refunded; then nothing can.
	expect(t, "refund of the rest", "00")(term.Refund(ctx(t), p, card, 1800))
	expect(t, "refund when nothing is left", "64")(term.Refund(ctx(t), p, card, 1))
	// A reversal of the purchase now would undo the refunds too: it stands.
	rev, err := iso.NewReversal(purchaseMsg(t, term, bankCard, 5000, p.STAN, "000001"), iso.ReverseTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if rc := exchange(t, term, rev, true); rc != "12" {
		t.Errorf("reversal of a refunded purchase: %s, want 12", rc)
	}
	if n := len(w.submitted("card.reversal.v1")); n != 3 {
		t.Errorf("%d reversals at the hub", n)
	}
	if tot := term.Totals(); tot.Domestic.DebitAmount != 5000 || tot.Domestic.CreditAmount != 5000 || tot.Domestic.CreditCount != 3 {
		t.Errorf("totals %+v", tot)
	}
	if rc, err := term.Settle(ctx(t)); err != nil || rc != "00" {
		t.Errorf("settle: %s %v", rc, err)
	}
}

// TestBankBalanceInquiry: a bank card's balance comes from the hub's
// card.balance_inquiry.v1, with the PIN translated; a decline is answered
// with its reason's code.
func TestBankBalanceInquiry(t *testing.T) {
	w := setupWith(t, bankConfig(), nil)
	term := w.signedOn(term1)
	b := expect(t, "bank balance", "00")(term.Balance(ctx(t), bankCardRead))
	if b.Balance == nil || *b.Balance != 80000 {
		t.Errorf("balance %v, want 80000", b.Balance)
	}
	qs := w.submitted(pos.TypeCardBalanceInquiry)
	if len(qs) != 1 || qs[0].IdempotencyKey != "pos-"+term1+"-000001-"+b.STAN {
		t.Fatalf("the hub got %+v", qs)
	}
	p := sentPayload(t, qs[0])
	if zonePIN(t, p["pin_block"]) != bankPIN ||
		string(qs[0].Payload) != `{"card":"`+bankCard+`","expiry":"3012","pin_block":"`+p["pin_block"].(string)+`"}` {
		t.Errorf("the hub got %s", qs[0].Payload)
	}
	// No PIN, no expiry: the card alone.
	expect(t, "bank balance without PIN", "00")(term.Balance(ctx(t), sim.Card{PAN: bankCard}))
	if qs := w.submitted(pos.TypeCardBalanceInquiry); len(qs) != 2 || string(qs[1].Payload) != `{"card":"`+bankCard+`"}` {
		t.Errorf("the hub got %+v", qs)
	}
	// A wrong PIN is the bank's decline: 55.
	expect(t, "bank balance with the wrong PIN", "55")(term.Balance(ctx(t), sim.Card{PAN: bankCard, PIN: "0000"}))
	// A card the bank declines: bank_declined is 05.
	other := "6222020000000000018"
	if r := expect(t, "bank balance of an unknown card", "05")(term.Balance(ctx(t), sim.Card{PAN: other})); r.Balance != nil {
		t.Errorf("a decline with a balance: %v", *r.Balance)
	}
	// The hub has no bank acquirer for it: its error's code.
	w.hub.FailWith(&sdk.Error{Code: "bank_unavailable", Message: "the bank did not answer"})
	expect(t, "bank unavailable", "68")(term.Balance(ctx(t), sim.Card{PAN: bankCard}))
	w.hub.FailWith(nil)
	// A city card's balance is still the card_balance query.
	expect(t, "city card balance", "00")(term.Balance(ctx(t), sim.Card{PAN: alice, PIN: "123456"}))
	if n := len(w.submitted(pos.TypeCardBalanceInquiry)); n != 4 {
		t.Errorf("%d balance inquiries at the hub", n)
	}
}

// TestPINZoneKeyConfig: the zone key's check value is verified at
// configuration, and a sealed zone key opens from the key store.
func TestPINZoneKeyConfig(t *testing.T) {
	zpk := key(t, zpkHex)
	kcv, err := cardcrypto.KCV(zpk)
	if err != nil {
		t.Fatal(err)
	}
	h := plugintest.Start(t, pos.New(pos.WithLogger(discardLog())))
	cfg := bankConfig()
	cfg["pin_zone_key_check"] = hex.EncodeToString(kcv)
	if err := h.Configure(cfg); err != nil {
		t.Fatalf("the right check value: %v", err)
	}
	cfg["pin_zone_key_check"] = "000000"
	err = h.Configure(cfg)
	var e *sdk.Error
	if !errors.As(err, &e) || e.Code != sdk.CodeConfigInvalid || e.Field != "/pin_zone_key_check" || strings.Contains(err.Error(), zpkHex) {
		t.Errorf("the wrong check value: %v", err)
	}

	top := make([]byte, 32)
	for i := range top {
		top[i] = byte(i)
	}
	t.Setenv("POS_TEST_TOP_KEY", hex.EncodeToString(top))
	store, err := cardcrypto.NewKeyStore(top)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := store.Seal(pos.SealedZoneKeyName, zpk)
	if err != nil {
		t.Fatal(err)
	}
	cfg = bankConfig()
	delete(cfg, "pin_zone_key")
	cfg["pin_zone_key_sealed"] = b64(blob)
	cfg["pin_zone_key_check"] = hex.EncodeToString(kcv)
	cfg["key_store"] = map[string]any{"env": "POS_TEST_TOP_KEY"}
	w := setupWith(t, cfg, nil)
	term := w.signedOn(term1)
	expect(t, "bank purchase with a sealed zone key", "00")(term.Purchase(ctx(t), bankCardRead, 100))
	if zonePIN(t, sentPayload(t, w.submitted("card.payment.v1")[0])["pin_block"]) != bankPIN {
		t.Error("the pin_block holds another PIN")
	}

	// A key sealed under another name does not open.
	other, _ := store.Seal(pos.SealedKeyName(term1), zpk)
	cfg["pin_zone_key_sealed"] = b64(other)
	err = h.Configure(cfg)
	if !errors.As(err, &e) || e.Field != "/pin_zone_key_sealed" {
		t.Errorf("a key sealed under another name: %v", err)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
