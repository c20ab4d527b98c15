package pos_test

import (
	"strings"
	"testing"

	"github.com/citycard/citycard/plugins/pos/sim"
	"github.com/citycard/citycard/sdk/cardcrypto"
)

// cvkHex is the city's card verification key pair in the tests.
const cvkHex = "0123456789ABCDEFFEDCBA9876543210"

// stripe builds a city card's track 2 with the service code sc and its
// CVV under the tests' keys (or cvv when given) first in the
// discretionary data.
func stripe(t *testing.T, number, sc, cvv string) string {
	t.Helper()
	pan, err := cardcrypto.ParsePAN(number)
	if err != nil {
		t.Fatal(err)
	}
	if cvv == "" {
		if cvv, err = cardcrypto.CVV(key(t, cvkHex), pan, "3012", cardcrypto.ServiceCode(sc)); err != nil {
			t.Fatal(err)
		}
	}
	return number + "=3012" + sc + cvv + "00000"
}

// TestSwipedCards: a swiped city card's CVV is checked under the city's
// keys, and the service code's restrictions hold for every card.
func TestSwipedCards(t *testing.T) {
	cfg := config()
	cfg["city_cvk"] = cvkHex
	w := setupWith(t, cfg, nil)
	term := w.signedOn(term1)
	c := ctx(t)

	good := sim.Card{Track2: stripe(t, alice, "201", ""), PIN: "123456"}
	p := expect(t, "swiped with a good CVV", "00")(term.Purchase(c, good, 1000))
	expect(t, "void of the swiped purchase", "00")(term.Void(c, p, good))
	expect(t, "a CVV that does not verify", "05")(term.Purchase(c, sim.Card{Track2: stripe(t, alice, "201", "999"), PIN: "123456"}, 1000))
	expect(t, "ATM-only service code", "62")(term.Purchase(c, sim.Card{Track2: stripe(t, alice, "203", ""), PIN: "123456"}, 1000))
	expect(t, "cash-only service code", "62")(term.Purchase(c, sim.Card{Track2: stripe(t, alice, "204", ""), PIN: "123456"}, 1000))
	expect(t, "PIN required by the service code, none entered", "55")(term.Purchase(c, sim.Card{Track2: stripe(t, dave, "200", "")}, 100))
	expect(t, "PIN required by the service code, entered", "00")(term.Purchase(c, sim.Card{Track2: stripe(t, dave, "200", ""), PIN: "111111"}, 100))
	if n := len(w.submitted("card.payment.v1")); n != 2 {
		t.Fatalf("the hub was asked for %d payments, want the 2 approved", n)
	}
	if w.bank.balance(alice) != 50000 || w.bank.balance(dave) != 9900 {
		t.Fatalf("balances: alice %d, dave %d", w.bank.balance(alice), w.bank.balance(dave))
	}
	// The log never shows the stripe or its CVV.
	if logs := w.logs.String(); strings.Contains(logs, good.Track2) || strings.Contains(logs, alice) {
		t.Fatal("the log shows a card number or a track")
	}
}
