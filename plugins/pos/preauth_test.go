package pos_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/citycard/citycard/plugins/pos/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/pos/iso"
)

// TestPreAuthAndCompletion: a pre-authorisation holds money (it counts
// against what the card can spend), its completion for less posts that
// and releases the rest, and the settlement counts the completion as a
// sale and the pre-authorisation not at all.
func TestPreAuthAndCompletion(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	pa := expect(t, "pre-authorisation", "00")(term.PreAuth(ctx(t), sim.Card{PAN: alice, PIN: "123456"}, 10000))
	if len(pa.AuthCode) != 6 || len(pa.RRN) != 12 || pa.Balance == nil || *pa.Balance != 40000 {
		t.Errorf("approved: RRN %q auth %q balance %v", pa.RRN, pa.AuthCode, pa.Balance)
	}
	if mti, _ := pa.Response.GetMTI(); mti != "0110" {
		t.Errorf("answered with %s", mti)
	}
	holds := w.submitted("card.hold.v1")
	if len(holds) != 1 || holds[0].IdempotencyKey != "pos-"+term1+"-000001-"+pa.STAN ||
		string(holds[0].Payload) != `{"card":"`+alice+`","merchant":"M-POS-SHOP","terminal":"POS00001","amount":10000,"currency":"CNY","pin":"123456"}` {
		t.Errorf("the hub got %+v", holds)
	}
	if w.bank.balance(alice) != 50000 || w.bank.held(alice) != 10000 {
		t.Errorf("alice: balance %d, held %d", w.bank.balance(alice), w.bank.held(alice))
	}
	// The hold counts against what alice can spend.
	expect(t, "purchase over what is available", "51")(term.Purchase(ctx(t), sim.Card{PAN: alice, PIN: "123456"}, 45000))
	w.publishBalances()
	if b := expect(t, "balance", "00")(term.Balance(ctx(t), sim.Card{PAN: alice, PIN: "123456"})); b.Balance == nil || *b.Balance != 40000 {
		t.Errorf("available %v, want 40000", b.Balance)
	}
	// Bob holds 3.00 yuan: 51, and nothing is held.
	expect(t, "bob's pre-authorisation", "51")(term.PreAuth(ctx(t), sim.Card{PAN: bob, PIN: "654321"}, 2500))
	if w.bank.held(bob) != 0 {
		t.Errorf("bob has %d held", w.bank.held(bob))
	}

	// Completion for less: 80.00 posted, the rest released.
	c := expect(t, "completion", "00")(term.Complete(ctx(t), pa, sim.Card{PAN: alice}, 8000))
	if len(c.RRN) != 12 || len(c.AuthCode) != 6 {
		t.Errorf("completion: RRN %q auth %q", c.RRN, c.AuthCode)
	}
	caps := w.submitted("card.capture.v1")
	if len(caps) != 1 || caps[0].IdempotencyKey != "pos-"+term1+"-000001-"+c.STAN ||
		string(caps[0].Payload) != `{"hold_key":"pos-`+term1+`-000001-`+pa.STAN+`","amount":8000,"currency":"CNY"}` {
		t.Errorf("the hub got %+v", caps)
	}
	if w.bank.balance(alice) != 42000 || w.bank.held(alice) != 0 {
		t.Errorf("alice: balance %d, held %d", w.bank.balance(alice), w.bank.held(alice))
	}
	// The hold is gone: a second completion or a cancellation is 12.
	expect(t, "second completion", "12")(term.Complete(ctx(t), pa, sim.Card{PAN: alice}, 1000))
	expect(t, "cancellation after the completion", "12")(term.CancelPreAuth(ctx(t), pa, sim.Card{PAN: alice}))
	if n := len(w.submitted("card.capture.v1")) + len(w.submitted("card.void.v1")); n != 1 {
		t.Errorf("%d captures and voids at the hub", n)
	}

	// Settlement: the completion is the one sale.
	if tot := term.Totals(); tot.Domestic.DebitAmount != 8000 || tot.Domestic.DebitCount != 1 {
		t.Errorf("terminal totals %+v", tot)
	}
	if rc, err := term.Settle(ctx(t)); err != nil || rc != "00" {
		t.Errorf("settle: %s %v", rc, err)
	}
	// Nothing in the logs gives a card number or a PIN away.
	logs := w.logs.String()
	for _, secret := range []string{alice, bob, `"123456"`, "654321"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
}

// TestCompletionOverTheHold: a completion for more than was held is
// declined (the registry's capture_exceeds_hold) without asking the hub;
// one within the hold goes through.
func TestCompletionOverTheHold(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	pa := expect(t, "pre-authorisation", "00")(term.PreAuth(ctx(t), sim.Card{PAN: dave, PIN: "111111"}, 5000))
	expect(t, "completion for more", "13")(term.Complete(ctx(t), pa, sim.Card{PAN: dave}, 6000))
	if n := len(w.submitted("card.capture.v1")); n != 0 {
		t.Errorf("%d captures at the hub", n)
	}
	if w.bank.balance(dave) != 10000 || w.bank.held(dave) != 5000 {
		t.Errorf("dave: balance %d, held %d", w.bank.balance(dave), w.bank.held(dave))
	}
	// Another card, or another authorisation code: not that pre-authorisation.
	expect(t, "completion with another card", "25")(term.Complete(ctx(t), pa, sim.Card{PAN: alice}, 5000))
	wrongAuth := pa
	wrongAuth.AuthCode = "999999"
	expect(t, "completion with another authorisation code", "25")(term.Complete(ctx(t), wrongAuth, sim.Card{PAN: dave}, 5000))
	expect(t, "completion in full", "00")(term.Complete(ctx(t), pa, sim.Card{PAN: dave}, 5000))
	if w.bank.balance(dave) != 5000 || w.bank.held(dave) != 0 {
		t.Errorf("dave: balance %d, held %d", w.bank.balance(dave), w.bank.held(dave))
	}
}

// TestPreAuthCancel: a cancellation releases the hold once; what is
// cancelled cannot be completed; a completion or cancellation of a
// pre-authorisation nobody made is 25.
func TestPreAuthCancel(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	pa := expect(t, "pre-authorisation", "00")(term.PreAuth(ctx(t), sim.Card{PAN: alice, PIN: "123456"}, 7000))
	short := pa
	short.Amount = 5000
	expect(t, "cancellation for another amount", "64")(term.CancelPreAuth(ctx(t), short, sim.Card{PAN: alice}))
	cn := expect(t, "cancellation", "00")(term.CancelPreAuth(ctx(t), pa, sim.Card{PAN: alice}))
	if mti, _ := cn.Response.GetMTI(); mti != "0110" {
		t.Errorf("answered with %s", mti)
	}
	voids := w.submitted("card.void.v1")
	if len(voids) != 1 || string(voids[0].Payload) != `{"hold_key":"pos-`+term1+`-000001-`+pa.STAN+`"}` {
		t.Errorf("the hub got %+v", voids)
	}
	if w.bank.balance(alice) != 50000 || w.bank.held(alice) != 0 {
		t.Errorf("alice: balance %d, held %d", w.bank.balance(alice), w.bank.held(alice))
	}
	expect(t, "cancellation again", "12")(term.CancelPreAuth(ctx(t), pa, sim.Card{PAN: alice}))
	expect(t, "completion of a cancelled pre-authorisation", "12")(term.Complete(ctx(t), pa, sim.Card{PAN: alice}, 7000))
	ghost := pa
	ghost.STAN = "999999"
	expect(t, "completion of an unknown pre-authorisation", "25")(term.Complete(ctx(t), ghost, sim.Card{PAN: alice}, 1000))
	expect(t, "cancellation of an unknown pre-authorisation", "25")(term.CancelPreAuth(ctx(t), ghost, sim.Card{PAN: alice}))
	// A purchase is not a pre-authorisation.
	p := expect(t, "purchase", "00")(term.Purchase(ctx(t), sim.Card{PAN: alice}, 1000))
	p.AuthCode = "000000"
	expect(t, "completion of a purchase", "25")(term.Complete(ctx(t), p, sim.Card{PAN: alice}, 1000))
	if n := len(w.submitted("card.void.v1")) + len(w.submitted("card.capture.v1")); n != 1 {
		t.Errorf("%d captures and voids at the hub", n)
	}
	// Neither the pre-authorisation nor its cancellation is in the totals.
	if rc, err := term.Settle(ctx(t)); err != nil || rc != "00" {
		t.Errorf("settle: %s %v", rc, err)
	}
}

// TestPreAuthReversal: a pre-authorisation the terminal timed out on is
// reversed, its hold released at the hub exactly once, however often the
// 0400 comes; a reversal of a pre-authorisation the hub never held is 25.
func TestPreAuthReversal(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	w.hub.SetDelay(700 * time.Millisecond)
	term.SetTimeout(200 * time.Millisecond)
	if _, err := term.PreAuth(ctx(t), sim.Card{PAN: alice, PIN: "123456"}, 9000); !errors.Is(err, sim.ErrTimeout) {
		t.Fatalf("pre-authorisation: %v, want a timeout", err)
	}
	if !term.PendingReversal() {
		t.Fatal("no reversal kept")
	}
	w.hub.SetDelay(0)
	term.SetTimeout(5 * time.Second)
	if rc, err := term.SendReversal(ctx(t)); err != nil || rc != "00" {
		t.Fatalf("reversal: %s %v", rc, err)
	}
	if h, v := len(w.submitted("card.hold.v1")), len(w.submitted("card.void.v1")); h != 1 || v != 1 {
		t.Errorf("hub: %d holds, %d voids; want 1 and 1", h, v)
	}
	if w.bank.held(alice) != 0 || w.bank.balance(alice) != 50000 {
		t.Errorf("alice: balance %d, held %d", w.bank.balance(alice), w.bank.held(alice))
	}

	// By hand: approved, then the same 0400 twice: one void.
	stan := term.NextSTAN()
	resp := exchangeMsg(t, term, preAuthMsg(t, term, alice, 3000, stan), true)
	if rc, _ := resp.GetString(iso.FieldResponseCode); rc != "00" {
		t.Fatalf("pre-authorisation: %s", rc)
	}
	auth, _ := resp.GetString(iso.FieldAuthCode)
	for range 2 {
		rev, err := iso.NewReversal(preAuthMsg(t, term, alice, 3000, stan), iso.ReverseTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if rc := exchange(t, term, rev, true); rc != "00" {
			t.Errorf("reversal: %s, want 00", rc)
		}
	}
	if v := len(w.submitted("card.void.v1")); v != 2 || w.bank.held(alice) != 0 {
		t.Errorf("hub: %d voids (want 2 in all), alice holds %d", v, w.bank.held(alice))
	}
	// A reversed pre-authorisation cannot be completed.
	reversed := iso.Original{Batch: "000001", STAN: stan, AuthCode: auth}
	if rc := exchange(t, term, completionMsg(t, term, alice, 3000, term.NextSTAN(), reversed), true); rc != "12" {
		t.Errorf("completion of a reversed pre-authorisation: %s, want 12", rc)
	}
	// A pre-authorisation nobody saw: the hub holds nothing under its
	// key, so there is nothing to release: 00.
	late := term.NextSTAN()
	rev, _ := iso.NewReversal(preAuthMsg(t, term, alice, 500, late), iso.ReverseTimeout)
	if rc := exchange(t, term, rev, true); rc != "00" {
		t.Errorf("reversal of an unknown pre-authorisation: %s, want 00", rc)
	}
	if rc := exchange(t, term, preAuthMsg(t, term, alice, 500, late), true); rc != "94" {
		t.Errorf("pre-authorisation after its reversal: %s, want 94", rc)
	}
	// A completion the hub applied cannot be undone: its reversal is 12
	// and it stands.
	pa := expect(t, "pre-authorisation", "00")(term.PreAuth(ctx(t), sim.Card{PAN: alice, PIN: "123456"}, 2000))
	cstan := term.NextSTAN()
	orig := iso.Original{Batch: pa.Batch, STAN: pa.STAN, Date: pa.Date, AuthCode: pa.AuthCode}
	if rc := exchange(t, term, completionMsg(t, term, alice, 2000, cstan, orig), true); rc != "00" {
		t.Fatalf("completion: %s", rc)
	}
	rev, _ = iso.NewReversal(completionMsg(t, term, alice, 2000, cstan, orig), iso.ReverseTimeout)
	if rc := exchange(t, term, rev, true); rc != "12" {
		t.Errorf("reversal of a completion: %s, want 12", rc)
	}
	// Nor can its pre-authorisation be reversed once completed.
	rev, _ = iso.NewReversal(preAuthMsg(t, term, alice, 2000, pa.STAN), iso.ReverseTimeout)
	if rc := exchange(t, term, rev, true); rc != "12" {
		t.Errorf("reversal of a completed pre-authorisation: %s, want 12", rc)
	}
	if w.bank.balance(alice) != 48000 || w.bank.held(alice) != 0 {
		t.Errorf("alice: balance %d, held %d", w.bank.balance(alice), w.bank.held(alice))
	}
}

// TestPreAuthDuplicateSTAN: a resent pre-authorisation is answered as the
// first time and held once; another request under its STAN is 94.
func TestPreAuthDuplicateSTAN(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	stan := term.NextSTAN()
	first := exchangeMsg(t, term, preAuthMsg(t, term, alice, 6000, stan), true)
	again := exchangeMsg(t, term, preAuthMsg(t, term, alice, 6000, stan), true)
	for _, f := range []int{iso.FieldResponseCode, iso.FieldRRN, iso.FieldAuthCode, iso.FieldBalance} {
		a, _ := first.GetString(f)
		b, _ := again.GetString(f)
		if a != b || a == "" {
			t.Errorf("field %d: %q then %q", f, a, b)
		}
	}
	if rc := exchange(t, term, preAuthMsg(t, term, alice, 6100, stan), true); rc != "94" {
		t.Errorf("another request under the same STAN: %s, want 94", rc)
	}
	if rc := exchange(t, term, purchaseMsg(t, term, alice, 6000, stan, "000001"), true); rc != "94" {
		t.Errorf("a purchase under the pre-authorisation's STAN: %s, want 94", rc)
	}
	if n := len(w.submitted("card.hold.v1")); n != 1 || w.bank.held(alice) != 6000 {
		t.Errorf("%d holds, alice holds %d", n, w.bank.held(alice))
	}
	// A completion resent: one capture.
	cstan := term.NextSTAN()
	auth, _ := first.GetString(iso.FieldAuthCode)
	orig := iso.Original{Batch: "000001", STAN: stan, AuthCode: auth}
	for range 2 {
		if rc := exchange(t, term, completionMsg(t, term, alice, 6000, cstan, orig), true); rc != "00" {
			t.Errorf("completion: %s", rc)
		}
	}
	if n := len(w.submitted("card.capture.v1")); n != 1 || w.bank.balance(alice) != 44000 {
		t.Errorf("%d captures, alice %d", n, w.bank.balance(alice))
	}
	// Without a MAC, a pre-authorisation is refused.
	if rc := exchange(t, term, preAuthMsg(t, term, alice, 100, term.NextSTAN()), false); rc != "A0" {
		t.Errorf("pre-authorisation without a MAC: %s, want A0", rc)
	}
}

// TestBalanceInquiryPIN: the PIN block of a balance inquiry is decrypted
// (99 when it cannot be) but not checked by the hub.
func TestBalanceInquiryPIN(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	// A wrong PIN still gets the balance: the hub has no PIN check alone.
	if b := expect(t, "balance with another PIN", "00")(term.Balance(ctx(t), sim.Card{PAN: dave, PIN: "999999"})); b.Balance == nil || *b.Balance != 10000 {
		t.Errorf("balance %v", b.Balance)
	}
	pan, _ := cardcrypto.ParsePAN(dave)
	m, err := iso.NewBalanceInquiry(iso.Request{Terminal: iso.Terminal{Envelope: iso.DefaultEnvelope(3, 0), TerminalID: term.ID(), MerchantID: acceptor},
		STAN: term.NextSTAN(), Batch: "000001", Card: iso.Card{PAN: pan, EntryMode: iso.EntryChipPIN, PINBlock: []byte{1, 2, 3, 4, 5, 6, 7, 8}}})
	if err != nil {
		t.Fatal(err)
	}
	if rc := exchange(t, term, m, true); rc != "99" {
		t.Errorf("balance with a PIN block that does not decrypt: %s, want 99", rc)
	}
	if len(w.submitted("card.payment.v1")) != 0 {
		t.Error("a balance inquiry reached the hub as a payment")
	}
}

func preAuthMsg(t *testing.T, term *sim.Terminal, number string, amount int64, stan string) *iso8583.Message {
	t.Helper()
	pan, err := cardcrypto.ParsePAN(number)
	if err != nil {
		t.Fatal(err)
	}
	m, err := iso.NewPreAuth(iso.Request{Terminal: iso.Terminal{Envelope: iso.DefaultEnvelope(3, 0), TerminalID: term.ID(), MerchantID: acceptor},
		STAN: stan, Batch: "000001", Amount: amount, Currency: "156", Card: iso.Card{PAN: pan, EntryMode: iso.EntryChipNoPIN}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func completionMsg(t *testing.T, term *sim.Terminal, number string, amount int64, stan string, orig iso.Original) *iso8583.Message {
	t.Helper()
	pan, err := cardcrypto.ParsePAN(number)
	if err != nil {
		t.Fatal(err)
	}
	m, err := iso.NewCompletion(iso.Request{Terminal: iso.Terminal{Envelope: iso.DefaultEnvelope(3, 0), TerminalID: term.ID(), MerchantID: acceptor},
		STAN: stan, Batch: "000001", Amount: amount, Currency: "156", Card: iso.Card{PAN: pan, EntryMode: iso.EntryChipNoPIN}, Original: orig})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestPreAuthHubOutage: a pre-authorisation the hub did not answer is
// answered 91; once the hub is back the plugin sends the same hold again
// under its key and releases it, so nothing stays held.
func TestPreAuthHubOutage(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	w.hub.FailWith(&sdk.Error{Code: sdk.CodeUnavailable, Message: "the hub is restarting", Retryable: true})
	pa := expect(t, "pre-authorisation during the outage", "91")(term.PreAuth(ctx(t), sim.Card{PAN: alice, PIN: "123456"}, 4000))
	w.hub.FailWith(nil)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(w.logs.String(), "released a hold the terminal was told had failed") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if h, v := len(w.submitted("card.hold.v1")), len(w.submitted("card.void.v1")); h != 1 || v != 1 {
		t.Fatalf("hub: %d holds, %d voids; want 1 and 1", h, v)
	}
	if w.bank.held(alice) != 0 || w.bank.balance(alice) != 50000 {
		t.Errorf("alice: balance %d, held %d", w.bank.balance(alice), w.bank.held(alice))
	}
	// The terminal was told it failed: it cannot be completed.
	pa.AuthCode = "000000"
	expect(t, "completion of a failed pre-authorisation", "25")(term.Complete(ctx(t), pa, sim.Card{PAN: alice}, 4000))
	if rc, err := term.Settle(ctx(t)); err != nil || rc != "00" {
		t.Errorf("settle: %s %v", rc, err)
	}
}
