package pos_test

import (
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/citycard/citycard/plugins/pos/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/pos/iso"
)

func TestSignOn(t *testing.T) {
	w := setup(t)
	if s := w.status(term1); !s.Known || s.SignedOn || s.Listen == "" {
		t.Fatalf("before sign-on: %+v", s)
	}
	for _, tc := range []struct {
		name    string
		tid     string
		scheme  iso.KeyScheme
		pin     int
		macKey  int
		withTDK bool
	}{
		{"single-length keys", term1, iso.KeysSingle, 8, 8, false},
		{"double-length keys", term1, iso.KeysDouble, 16, 8, false},
		{"with a track data key", term1, iso.KeysWithData, 16, 8, true},
		{"X9.19 terminal", term2, iso.KeysDouble, 16, 16, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := sim.Config{Addr: w.addr, TerminalID: tc.tid, MerchantID: acceptor, MasterKey: key(t, tmkHex), Keys: tc.scheme}
			if tc.tid == term2 {
				cfg.MasterKey, cfg.MAC = key(t, tmk2Hex), iso.MACX919
			}
			term, err := sim.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer term.Close()
			// SignOn unwraps each key under the master key and checks its
			// check value (cardcrypto.ParseSignOnKeys).
			if rc, err := term.SignOn(ctx(t)); err != nil || rc != "00" {
				t.Fatalf("sign-on: %s %v", rc, err)
			}
			k := term.Keys()
			if len(k.PIN) != tc.pin || len(k.MAC) != tc.macKey || (k.Data != nil) != tc.withTDK {
				t.Errorf("keys: PIN %d bytes, MAC %d, data %v", len(k.PIN), len(k.MAC), k.Data != nil)
			}
			if !cardcrypto.HasOddParity(k.PIN) || !cardcrypto.HasOddParity(k.MAC) {
				t.Error("working keys without odd parity")
			}
			// A purchase MACed and PIN-enciphered under these keys goes through.
			expect(t, "purchase", "00")(term.Purchase(ctx(t), sim.Card{PAN: dave, PIN: "111111"}, 100))
		})
	}
	if s := w.status(term1); !s.SignedOn || s.Batch != "000001" || s.MAC != "ecb" {
		t.Errorf("after sign-on: %+v", s)
	}
	if s := w.status(term2); s.MAC != "x919" {
		t.Errorf("term2: %+v", s)
	}

	// The wrong master key cannot unwrap the keys: the check values fail.
	bad, _ := sim.New(sim.Config{Addr: w.addr, TerminalID: term1, MerchantID: acceptor, MasterKey: key(t, tmk2Hex)})
	defer bad.Close()
	if _, err := bad.SignOn(ctx(t)); !errors.Is(err, cardcrypto.ErrKeyCheck) {
		t.Errorf("sign-on under the wrong master key: %v, want a key check failure", err)
	}
}

func TestPurchase(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	r := expect(t, "purchase", "00")(term.Purchase(ctx(t), sim.Card{PAN: alice, PIN: "123456"}, 2500))
	if r.RRN != "000000001001" || r.AuthCode != "001001" || r.Balance == nil || *r.Balance != 47500 {
		t.Errorf("approved: RRN %q auth %q balance %v", r.RRN, r.AuthCode, r.Balance)
	}
	if got := w.bank.balance(alice); got != 47500 {
		t.Errorf("alice holds %d, want 47500", got)
	}
	pays := w.submitted("card.payment.v1")
	if len(pays) != 1 || pays[0].IdempotencyKey != "pos-"+term1+"-000001-"+r.STAN ||
		string(pays[0].Payload) != `{"card":"`+alice+`","merchant":"M-POS-SHOP","terminal":"POS00001","amount":2500,"currency":"CNY","pin":"123456"}` {
		t.Errorf("the hub got %+v", pays)
	}
	// No PIN below the retail threshold.
	expect(t, "purchase without PIN", "00")(term.Purchase(ctx(t), sim.Card{PAN: alice}, 1000))
	// Above it, the hub asks for one: 55.
	expect(t, "purchase above 200.00 without PIN", "55")(term.Purchase(ctx(t), sim.Card{PAN: alice}, 30000))
	// Bob holds 3.00 yuan: 51.
	expect(t, "bob's purchase", "51")(term.Purchase(ctx(t), sim.Card{PAN: bob, PIN: "654321"}, 2500))
	if got := w.bank.balance(bob); got != 300 {
		t.Errorf("bob holds %d", got)
	}
	// Carol's card was reported lost: 41.
	expect(t, "carol's purchase", "41")(term.Purchase(ctx(t), sim.Card{PAN: carol}, 100))

	// Nothing in the logs gives a card number or a PIN away.
	logs := w.logs.String()
	for _, secret := range []string{alice, bob, carol, `"123456"`, "654321", tmkHex} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
	if !strings.Contains(logs, "310099******0013") {
		t.Error("the log does not name the masked card")
	}
}

func TestCardNotTaken(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	expect(t, "bank card", "15")(term.Purchase(ctx(t), sim.Card{PAN: bankCard, PIN: "123456"}, 1000))
	expect(t, "bank card balance", "15")(term.Balance(ctx(t), sim.Card{PAN: bankCard}))
	// A number failing its check digit: 14.
	m := purchaseMsg(t, term, alice, 100, term.NextSTAN(), "000001")
	_ = m.Field(iso.FieldPAN, "3100990000000012")
	if rc := exchange(t, term, m, true); rc != "14" {
		t.Errorf("bad check digit: %s, want 14", rc)
	}
	if n := len(w.hub.Submitted()); n != 0 {
		t.Errorf("the hub got %d messages", n)
	}
}

func TestWrongMAC(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	m := purchaseMsg(t, term, alice, 100, term.NextSTAN(), "000001")
	if err := iso.SetMAC(m, iso.MACECB, term.Keys().MAC); err != nil {
		t.Fatal(err)
	}
	// Altered after the MAC: the amount is now 9,999.00.
	if err := m.Field(iso.FieldAmount, "000000999900"); err != nil {
		t.Fatal(err)
	}
	resp := exchangeMsg(t, term, m, false)
	if rc, _ := resp.GetString(iso.FieldResponseCode); rc != "A0" {
		t.Errorf("altered message: %s, want A0", rc)
	}
	if iso.EnvelopeOf(resp).Header.ProcessingRequirement != iso.ProcessSignOnAgain {
		t.Error("the answer does not ask the terminal to sign on again")
	}
	// A purchase without a MAC: A0 too.
	if rc := exchange(t, term, purchaseMsg(t, term, alice, 100, term.NextSTAN(), "000001"), false); rc != "A0" {
		t.Errorf("no MAC: %s, want A0", rc)
	}
	// A MAC under another key: A0.
	m = purchaseMsg(t, term, alice, 100, term.NextSTAN(), "000001")
	if err := iso.SetMAC(m, iso.MACECB, key(t, "1111111111111111")); err != nil {
		t.Fatal(err)
	}
	if rc := exchange(t, term, m, false); rc != "A0" {
		t.Errorf("wrong key: %s, want A0", rc)
	}
	if n := len(w.hub.Submitted()); n != 0 {
		t.Errorf("the hub got %d messages", n)
	}
}

func TestWrongPINThreeTimes(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	for _, rc := range []string{"55", "55", "38"} {
		expect(t, "wrong PIN", rc)(term.Purchase(ctx(t), sim.Card{PAN: alice, PIN: "000000"}, 100))
	}
	// Locked: the right PIN no longer helps.
	expect(t, "right PIN after the lock", "38")(term.Purchase(ctx(t), sim.Card{PAN: alice, PIN: "123456"}, 100))
	if got := w.bank.balance(alice); got != 50000 {
		t.Errorf("alice holds %d", got)
	}
	// A PIN of four digits is not a city card PIN: 55 without asking the hub.
	before := len(w.hub.Submitted())
	expect(t, "short PIN", "55")(term.Purchase(ctx(t), sim.Card{PAN: dave, PIN: "1234"}, 100))
	if len(w.hub.Submitted()) != before {
		t.Error("a 4-digit PIN reached the hub")
	}
	// A PIN block that does not decrypt to a format 0 block: 99.
	m := purchaseMsg(t, term, dave, 100, term.NextSTAN(), "000001")
	_ = m.BinaryField(iso.FieldPINBlock, []byte{1, 2, 3, 4, 5, 6, 7, 8})
	_ = m.Field(iso.FieldSecurityControl, "1600000000000000")
	if rc := exchange(t, term, m, true); rc != "99" {
		t.Errorf("undecryptable PIN block: %s, want 99", rc)
	}
}

func TestTimeoutThenReversal(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	// The hub is slow: the terminal gives up first and keeps a reversal.
	w.hub.SetDelay(700 * time.Millisecond)
	term.SetTimeout(200 * time.Millisecond)
	if _, err := term.Purchase(ctx(t), sim.Card{PAN: alice, PIN: "123456"}, 4200); !errors.Is(err, sim.ErrTimeout) {
		t.Fatalf("purchase: %v, want a timeout", err)
	}
	if !term.PendingReversal() {
		t.Fatal("no reversal kept")
	}
	w.hub.SetDelay(0)
	term.SetTimeout(5 * time.Second)
	// The next transaction sends the reversal first; it reaches the plugin
	// while the payment may still be on its way to the hub.
	expect(t, "next purchase", "00")(term.Purchase(ctx(t), sim.Card{PAN: alice, PIN: "123456"}, 300))
	if term.PendingReversal() || term.Reversals() != 1 {
		t.Fatalf("reversal pending %v, answered %d", term.PendingReversal(), term.Reversals())
	}
	if got := w.bank.balance(alice); got != 50000-300 {
		t.Errorf("alice holds %d, want %d", got, 50000-300)
	}
	if n, r := len(w.submitted("card.payment.v1")), len(w.submitted("card.reversal.v1")); n != 2 || r != 1 || w.bank.reversals() != 1 {
		t.Errorf("hub: %d payments, %d reversals (bank %d); want 2 and 1", n, r, w.bank.reversals())
	}
	// The settlement counts only the second purchase.
	if rc, err := term.Settle(ctx(t)); err != nil || rc != "00" {
		t.Errorf("settle: %s %v", rc, err)
	}
}

func TestReversalResentAndUnknown(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	stan := term.NextSTAN()
	orig := purchaseMsg(t, term, alice, 800, stan, "000001")
	if rc := exchange(t, term, orig, true); rc != "00" {
		t.Fatalf("purchase: %s", rc)
	}
	for range 2 { // the same reversal twice: one reversal at the hub
		rev, err := iso.NewReversal(purchaseMsg(t, term, alice, 800, stan, "000001"), iso.ReverseTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if rc := exchange(t, term, rev, true); rc != "00" {
			t.Errorf("reversal: %s, want 00", rc)
		}
	}
	if w.bank.reversals() != 1 || w.bank.balance(alice) != 50000 {
		t.Errorf("bank: %d reversals, alice %d", w.bank.reversals(), w.bank.balance(alice))
	}
	// A reversal for a STAN nobody saw, which the hub has no payment
	// under: nothing to undo, 00; the original arriving after it: 94.
	late := term.NextSTAN()
	rev, _ := iso.NewReversal(purchaseMsg(t, term, alice, 500, late, "000001"), iso.ReverseTimeout)
	if rc := exchange(t, term, rev, true); rc != "00" {
		t.Errorf("reversal of an unknown STAN: %s, want 00", rc)
	}
	if rc := exchange(t, term, purchaseMsg(t, term, alice, 500, late, "000001"), true); rc != "94" {
		t.Errorf("original after its reversal: %s, want 94", rc)
	}
	// A declined purchase has nothing to undo: 00, and no hub reversal.
	dec := term.NextSTAN()
	if rc := exchange(t, term, purchaseMsg(t, term, bob, 9900, dec, "000001"), true); rc != "51" {
		t.Fatalf("bob: %s", rc)
	}
	rev, _ = iso.NewReversal(purchaseMsg(t, term, bob, 9900, dec, "000001"), iso.ReverseTimeout)
	if rc := exchange(t, term, rev, true); rc != "00" {
		t.Errorf("reversal of a declined purchase: %s, want 00", rc)
	}
	if w.bank.reversals() != 1 {
		t.Errorf("bank: %d reversals", w.bank.reversals())
	}
}

func TestDuplicateSTAN(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	stan := term.NextSTAN()
	first := exchangeMsg(t, term, purchaseMsg(t, term, alice, 1500, stan, "000001"), true)
	again := exchangeMsg(t, term, purchaseMsg(t, term, alice, 1500, stan, "000001"), true)
	for _, f := range []int{iso.FieldResponseCode, iso.FieldRRN, iso.FieldAuthCode, iso.FieldBalance} {
		a, _ := first.GetString(f)
		b, _ := again.GetString(f)
		if a != b || a == "" {
			t.Errorf("field %d: %q then %q", f, a, b)
		}
	}
	if rc := exchange(t, term, purchaseMsg(t, term, alice, 1600, stan, "000001"), true); rc != "94" {
		t.Errorf("another request under the same STAN: %s, want 94", rc)
	}
	if n := len(w.submitted("card.payment.v1")); n != 1 || w.bank.balance(alice) != 48500 {
		t.Errorf("%d payments, alice %d", n, w.bank.balance(alice))
	}
}

func TestVoid(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	p := expect(t, "purchase", "00")(term.Purchase(ctx(t), sim.Card{PAN: alice, PIN: "123456"}, 3000))
	short := p
	short.Amount = 2000
	expect(t, "void for another amount", "64")(term.Void(ctx(t), short, sim.Card{PAN: alice}))
	wrongRRN := p
	wrongRRN.RRN = "000000009999"
	expect(t, "void with another RRN", "25")(term.Void(ctx(t), wrongRRN, sim.Card{PAN: alice}))
	expect(t, "void", "00")(term.Void(ctx(t), p, sim.Card{PAN: alice}))
	if got := w.bank.balance(alice); got != 50000 {
		t.Errorf("alice holds %d after the void", got)
	}
	expect(t, "void again", "94")(term.Void(ctx(t), p, sim.Card{PAN: alice}))
	expect(t, "refund of a voided purchase", "94")(term.Refund(ctx(t), p, sim.Card{PAN: alice}, 3000))
	ghost := p
	ghost.STAN = "999999"
	expect(t, "void of an unknown purchase", "25")(term.Void(ctx(t), ghost, sim.Card{PAN: alice}))
	if r := w.submitted("card.reversal.v1"); len(r) != 1 ||
		string(r[0].Payload) != `{"payment_key":"pos-`+term1+`-000001-`+p.STAN+`","memo":"POS `+term1+` void of batch 000001 STAN `+p.STAN+`","kind":"void"}` {
		t.Errorf("reversals at the hub: %+v", r)
	}
	// The voided purchase counts in no total.
	if tot := term.Totals(); tot.Domestic.DebitCount != 0 {
		t.Errorf("totals %+v", tot)
	}
	if rc, err := term.Settle(ctx(t)); err != nil || rc != "00" {
		t.Errorf("settle: %s %v", rc, err)
	}
}

func TestRefund(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	p := expect(t, "purchase", "00")(term.Purchase(ctx(t), sim.Card{PAN: alice, PIN: "123456"}, 5000))
	if rc, err := term.Settle(ctx(t)); err != nil || rc != "00" {
		t.Fatalf("settle: %s %v", rc, err)
	}
	// After settlement a purchase is refunded, not voided.
	expect(t, "void after settlement", "12")(term.Void(ctx(t), p, sim.Card{PAN: alice}))
	// Refunds for part of the purchase, as long as something is left.
	expect(t, "partial refund", "00")(term.Refund(ctx(t), p, sim.Card{PAN: alice}, 2000))
	expect(t, "refund of more than is left", "64")(term.Refund(ctx(t), p, sim.Card{PAN: alice}, 3500))
	expect(t, "refund of the rest", "00")(term.Refund(ctx(t), p, sim.Card{PAN: alice}, 3000))
	expect(t, "refund when nothing is left", "64")(term.Refund(ctx(t), p, sim.Card{PAN: alice}, 100))
	if got := w.bank.balance(alice); got != 50000 {
		t.Errorf("alice holds %d after the refunds", got)
	}
	revs := w.submitted("card.reversal.v1")
	if len(revs) != 2 || !strings.Contains(string(revs[0].Payload), `"kind":"refund","amount":2000}`) ||
		!strings.Contains(string(revs[1].Payload), `"kind":"refund","amount":3000}`) {
		t.Errorf("the hub got %+v", revs)
	}
	// The refunds are credits of the new batch.
	if tot := term.Totals(); tot.Domestic.CreditAmount != 5000 || tot.Domestic.CreditCount != 2 {
		t.Errorf("totals %+v", tot)
	}
	if rc, err := term.Settle(ctx(t)); err != nil || rc != "00" {
		t.Errorf("settle: %s %v", rc, err)
	}
}

func TestSettlement(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	for _, amount := range []int64{1200, 3400, 560} {
		expect(t, "purchase", "00")(term.Purchase(ctx(t), sim.Card{PAN: alice}, amount))
	}
	// Totals that do not match the host's: 95, then the batch upload.
	off := term.Totals()
	off.Domestic.DebitAmount += 100
	if rc, err := term.SettleWith(ctx(t), off); err != nil || rc != "95" {
		t.Fatalf("unbalanced settlement: %s %v, want 95", rc, err)
	}
	if err := term.UploadBatch(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(w.logs.String(), `"matched":3,"differ":0,"not_uploaded":0`) {
		t.Errorf("no upload summary in the log")
	}
	// The batch is closed: a purchase in it is refused 77.
	if rc := exchange(t, term, purchaseMsg(t, term, alice, 100, term.NextSTAN(), "000001"), true); rc != "77" {
		t.Errorf("purchase in a settled batch: %s, want 77", rc)
	}
	// The next batch, balanced.
	if term.Batch() != "000002" {
		t.Fatalf("batch %s", term.Batch())
	}
	expect(t, "purchase", "00")(term.Purchase(ctx(t), sim.Card{PAN: alice}, 700))
	if rc, err := term.Settle(ctx(t)); err != nil || rc != "00" {
		t.Errorf("balanced settlement: %s %v", rc, err)
	}
	// Signing on again after the settlement gives the next batch.
	if rc, err := term.SignOn(ctx(t)); err != nil || rc != "00" || term.Batch() != "000003" {
		t.Errorf("sign-on: %s %v batch %s", rc, err, term.Batch())
	}
}

func TestBalanceInquiry(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	// The hub's card_balance: 00 and the available balance in field 54.
	r := expect(t, "balance", "00")(term.Balance(ctx(t), sim.Card{PAN: alice, PIN: "123456"}))
	if r.Balance == nil || *r.Balance != 50000 {
		t.Errorf("balance %v, want 50000", r.Balance)
	}
	expect(t, "balance of a lost card", "41")(term.Balance(ctx(t), sim.Card{PAN: carol}))
	expect(t, "balance of an unknown card", "14")(term.Balance(ctx(t), sim.Card{PAN: "3100990000000054"}))
}

func TestTerminalChecks(t *testing.T) {
	w := setup(t)
	// Unknown terminal: 03.
	stranger, _ := sim.New(sim.Config{Addr: w.addr, TerminalID: "POS09999", MerchantID: acceptor, MasterKey: key(t, tmkHex)})
	defer stranger.Close()
	if rc, err := stranger.SignOn(ctx(t)); err != nil || rc != "03" {
		t.Errorf("unknown terminal: %s %v, want 03", rc, err)
	}
	// Field 42 of another merchant: 03.
	other, _ := sim.New(sim.Config{Addr: w.addr, TerminalID: term1, MerchantID: "M-SOMEONE-ELSE ", MasterKey: key(t, tmkHex)})
	defer other.Close()
	if rc, err := other.SignOn(ctx(t)); err != nil || rc != "03" {
		t.Errorf("another merchant: %s %v, want 03", rc, err)
	}
	// Not signed on: 97 without a MAC, A0 with one, both asking for a sign-on.
	term := w.terminal(term2)
	m := purchaseMsg(t, term, alice, 100, "000001", "000001")
	resp := exchangeMsg(t, term, m, false)
	if rc, _ := resp.GetString(iso.FieldResponseCode); rc != "97" || iso.EnvelopeOf(resp).Header.ProcessingRequirement != iso.ProcessSignOnAgain {
		t.Errorf("not signed on: %s", rc)
	}
	_ = m.BinaryField(iso.FieldMAC, make([]byte, 8))
	if rc := exchange(t, term, m, false); rc != "A0" {
		t.Errorf("not signed on, with a MAC: %s, want A0", rc)
	}
	// A void of a completion: 40, the hub has no message to undo a capture.
	on := w.signedOn(term1)
	pan, _ := cardcrypto.ParsePAN(alice)
	req := iso.Request{Terminal: iso.Terminal{Envelope: iso.DefaultEnvelope(3, 0), TerminalID: term1, MerchantID: acceptor},
		STAN: on.NextSTAN(), Batch: "000001", Amount: 100, Currency: "156", Card: iso.Card{PAN: pan, EntryMode: iso.EntryChipNoPIN},
		Original: iso.Original{Batch: "000001", STAN: "000001", AuthCode: "123456"}}
	cv, err := iso.NewCompletion(req)
	if err != nil {
		t.Fatal(err)
	}
	f60, err := iso.Field60{MessageType: iso.TypeCompletionVoid, Batch: "000001"}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := cv.Field(iso.FieldProcessingCode, iso.ProcVoid); err != nil {
		t.Fatal(err)
	}
	if err := cv.Field(iso.FieldReserved60, f60); err != nil {
		t.Fatal(err)
	}
	if rc := exchange(t, on, cv, true); rc != "40" {
		t.Errorf("void of a completion: %s, want 40", rc)
	}
	if n := len(w.hub.Submitted()); n != 0 {
		t.Errorf("the hub got %d messages", n)
	}
}

func TestBadFrames(t *testing.T) {
	w := setup(t)
	good := frameOf(t, purchaseMsg(t, w.terminal(term1), alice, 100, "000001", "000001"))
	body := good[2:]
	bitmapAt := 2 + iso.EnvelopeSize + 2
	badBitmap := append([]byte(nil), good...)
	badBitmap[bitmapAt+7] |= 0x04 // field 62 claimed, its bytes missing
	wrongType := append([]byte(nil), good...)
	wrongType[bitmapAt+8+1] = 0x3A // field 2's digits: not BCD
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"truncated: length says more than is sent", append([]byte{0x01, 0x00}, body[:20]...)},
		{"too short for the envelope", withLength([]byte{0x60, 0x00, 0x03})},
		{"bad TPDU", withLength(append([]byte{0x61}, body[1:]...))},
		{"bad bitmap", badBitmap},
		{"wrong field type", wrongType},
		{"bytes after the last field", withLength(append(append([]byte(nil), body...), 0x00))},
		{"garbage", withLength([]byte(strings.Repeat("\xff", 40)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", w.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tc.frame); err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(tc.name, "truncated") {
				_ = c.(*net.TCPConn).CloseWrite()
			}
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 64)
			if n, err := c.Read(buf); err == nil {
				t.Errorf("answered %d bytes; want the connection closed", n)
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Error("the connection was left open")
			}
		})
	}
	// A keep-alive (zero length) is skipped; the plugin still answers.
	term := w.signedOn(term1)
	c, err := net.Dial("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte{0, 0})
	_, _ = c.Write(frameOf(t, purchaseMsg(t, term, alice, 100, term.NextSTAN(), "000001")))
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	m, err := iso.Codec{}.ReadMessage(c)
	if err != nil {
		t.Fatalf("after a keep-alive: %v", err)
	}
	if rc, _ := m.GetString(iso.FieldResponseCode); rc != "A0" { // sent without a MAC
		t.Errorf("rc %s", rc)
	}
	expect(t, "purchase after the bad frames", "00")(term.Purchase(ctx(t), sim.Card{PAN: alice}, 100))
}

func withLength(b []byte) []byte {
	out := make([]byte, 2, 2+len(b))
	binary.BigEndian.PutUint16(out, uint16(len(b)))
	return append(out, b...)
}

func frameOf(t *testing.T, m *iso8583.Message) []byte {
	t.Helper()
	f, err := iso.EncodeFrame(m)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// purchaseMsg builds a purchase request with a chosen STAN and batch.
func purchaseMsg(t *testing.T, term *sim.Terminal, number string, amount int64, stan, batch string) *iso8583.Message {
	t.Helper()
	pan, err := cardcrypto.ParsePAN(number)
	if err != nil {
		t.Fatal(err)
	}
	m, err := iso.NewPurchase(iso.Request{Terminal: iso.Terminal{Envelope: iso.DefaultEnvelope(3, 0), TerminalID: term.ID(), MerchantID: acceptor},
		STAN: stan, Batch: batch, Amount: amount, Currency: "156", Card: iso.Card{PAN: pan, EntryMode: iso.EntryChipNoPIN}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func exchange(t *testing.T, term *sim.Terminal, m *iso8583.Message, mac bool) string {
	t.Helper()
	rc, _ := exchangeMsg(t, term, m, mac).GetString(iso.FieldResponseCode)
	return rc
}

func exchangeMsg(t *testing.T, term *sim.Terminal, m *iso8583.Message, mac bool) *iso8583.Message {
	t.Helper()
	resp, err := term.Exchange(ctx(t), m, mac)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestHubOutage: the hub does not answer a payment, so the terminal is
// told it failed (91); the plugin then makes sure it did not happen,
// resending it under its key once the hub is back and reversing it.
func TestHubOutage(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	w.hub.FailWith(&sdk.Error{Code: sdk.CodeUnavailable, Message: "the hub is restarting", Retryable: true})
	expect(t, "purchase during the outage", "91")(term.Purchase(ctx(t), sim.Card{PAN: alice, PIN: "123456"}, 2200))
	w.hub.FailWith(nil)
	deadline := time.Now().Add(5 * time.Second)
	// The journal marks the purchase reversed once the hub has answered
	// the reversal, and then says so in the log.
	for !strings.Contains(w.logs.String(), "reversed a payment the terminal was told had failed") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if p, r := len(w.submitted("card.payment.v1")), len(w.submitted("card.reversal.v1")); p != 1 || r != 1 {
		t.Fatalf("hub: %d payments, %d reversals; want 1 and 1", p, r)
	}
	if got := w.bank.balance(alice); got != 50000 {
		t.Errorf("alice holds %d, want 50000", got)
	}
	// The purchase stands in no total.
	if rc, err := term.Settle(ctx(t)); err != nil || rc != "00" {
		t.Errorf("settle: %s %v", rc, err)
	}
}
