package wiring_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/cardno"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/hub/internal/pluginhost"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
	"github.com/citycard/citycard/hub/internal/wiring"
	"github.com/citycard/citycard/plugins/pos"
	possim "github.com/citycard/citycard/plugins/pos/sim"
	"github.com/citycard/citycard/plugins/unionpay"
	upsim "github.com/citycard/citycard/plugins/unionpay/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
)

const (
	acqMasterKey = "0123456789ABCDEFFEDCBA9876543210" // the UnionPay link's, test only
	posMasterKey = "FEDCBA98765432100123456789ABCDEF" // the terminal's, test only
	acqTerminal  = "TACQ0001"
	acqMerchant  = "M-ACQ"
	bankPIN      = "2468"
)

// acqHub is a hub with the real POS and UnionPay plugins, the UnionPay
// switch simulator, and a terminal simulator signed on over TCP.
type acqHub struct {
	*splitHub
	sw   *upsim.Switch
	term *possim.Terminal
}

func startAcqHub(t *testing.T, st store.Store) *acqHub {
	t.Helper()
	t.Cleanup(pin.SetCostForTesting(1, 8))
	tmk, _ := cardcrypto.ParseKey(acqMasterKey)
	sw := upsim.New(upsim.Options{MasterKey: tmk, Logger: quiet})
	addr, stopSwitch, err := sw.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopSwitch)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "vault.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("ab", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	upCfg, _ := json.Marshal(unionpay.Config{SwitchAddr: addr, MasterKey: acqMasterKey, AcquirerID: "48020000",
		LinkTerminal: "CITYHUB1", LinkMerchant: "CITYCARDHUB0001", StateDir: filepath.Join(dir, "unionpay"),
		ResponseTimeoutMS: 400, PINZoneKey: unionpay.DemoPINZoneKey,
		KeyStore: &unionpay.KeyStoreConfig{File: keyFile}})
	posCfg, _ := json.Marshal(map[string]any{"listen": "127.0.0.1:0", "city_bins": []string{cardno.DefaultPrefix},
		"bank_cards": true, "pin_zone_key": unionpay.DemoPINZoneKey,
		"terminals": map[string]any{acqTerminal: map[string]any{"merchant": acqMerchant, "master_key": posMasterKey}}})
	posBin, posSum := testPlugin(t, "github.com/citycard/citycard/plugins/pos/cmd/citycard-plugin-pos")
	upBin, upSum := testPlugin(t, "github.com/citycard/citycard/plugins/unionpay/cmd/citycard-plugin-unionpay")
	app, err := wiring.New(context.Background(), st, wiring.Config{AdminToken: token, Logger: quiet, BankPlugin: "unionpay",
		BankTimeout: 3 * time.Second, SagaStaleAfter: time.Hour,
		Ledger: ledger.Config{Now: func() time.Time { return time.Now().Truncate(time.Microsecond) }},
		Plugins: []pluginhost.Spec{
			{Name: "pos", Path: posBin, SHA256: posSum, Channel: "retail", Config: posCfg},
			{Name: "unionpay", Path: upBin, SHA256: upSum, Config: upCfg},
		}})
	if err != nil {
		t.Fatal(err)
	}
	c, stop, done := serve(t, app)
	h := &acqHub{splitHub: &splitHub{pluginHub: &pluginHub{app: app, c: c, st: st}, stop: func() { stop(); <-done }}, sw: sw}
	t.Cleanup(h.stop)
	c.must("POST", "/v1/merchants", map[string]any{"id": acqMerchant, "name": "Shop", "mcc": "5411", "settlement_account": "1"}, 201)
	c.must("POST", "/v1/terminals", map[string]any{"id": acqTerminal, "merchant": acqMerchant}, 201)
	body, _ := json.Marshal(map[string]any{"terminal": acqTerminal})
	replies, err := app.Send(context.Background(), "pos", sdk.Message{Type: pos.TypeTerminalStatus, Payload: body})
	if err != nil {
		t.Fatal(err)
	}
	var ts pos.TerminalState
	if err := json.Unmarshal(replies[0].Payload, &ts); err != nil {
		t.Fatal(err)
	}
	master, _ := cardcrypto.ParseKey(posMasterKey)
	h.term, err = possim.New(possim.Config{Addr: ts.Listen, TerminalID: acqTerminal, MerchantID: acqMerchant + strings.Repeat(" ", 15-len(acqMerchant)),
		MasterKey: master, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.term.Close() })
	if rc, err := h.term.SignOn(context.Background()); err != nil || rc != "00" {
		t.Fatalf("sign-on: %q %v", rc, err)
	}
	return h
}

func (h *acqHub) buy(t *testing.T, c possim.Card, amount int64) possim.Result {
	t.Helper()
	r, err := h.term.Purchase(context.Background(), c, amount)
	if err != nil {
		t.Fatalf("purchase: %v", err)
	}
	return r
}

// TestAcquiringOverTCP runs the city's terminal over ISO 8583 and TCP
// through the POS plugin, the hub, the UnionPay plugin and the switch:
// the city card with its PIN, a linked bank card paying a shortfall, a
// bank that does not answer during such a payment (the city card's part
// undone), and PINs wrong three times on both kinds of card.
func TestAcquiringOverTCP(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		h := startAcqHub(t, st)
		ctx := context.Background()
		h.card = h.c.must("POST", "/v1/cards", map[string]any{"holder": map[string]any{"name": "Wang", "id_type": "passport", "id_number": "G1"},
			"pin": "123456"}, 201)["number"].(string)
		h.c.must("POST", "/v1/cards/"+h.card+"/topups", map[string]any{"amount": 10000, "currency": "CNY"}, 201)
		city := possim.Card{PAN: h.card, PIN: "123456"}

		if r := h.buy(t, city, 2500); r.RC != "00" || r.Balance == nil || *r.Balance != 7500 {
			t.Fatalf("city card purchase: %+v", r)
		}
		// Fallback: 100.00 on a card holding 75.00 pays 25.00 by bank card.
		bank := bankPAN(t, "0027")
		h.sw.SetCard(bank, upsim.Card{Limit: 1000000})
		h.link(t, bank)
		before := len(h.sw.Authorisations())
		if r := h.buy(t, city, 10000); r.RC != "00" {
			t.Fatalf("fallback purchase: %+v", r)
		}
		if b := h.balance(); b != 0 {
			t.Fatalf("balance after the fallback %v, want 0", b)
		}
		auths := h.sw.Authorisations()
		if len(auths) != before+1 || auths[len(auths)-1].Amount != 2500 {
			t.Fatalf("switch authorisations %+v, want one of 2500 more", auths[before:])
		}
		// The bank does not answer in time during a fallback: the city
		// card's part is released and the bank's part reversed.
		h.c.must("POST", "/v1/cards/"+h.card+"/topups", map[string]any{"amount": 5000, "currency": "CNY"}, 201)
		revBefore := len(h.sw.Reversals())
		h.sw.SetDelay(1500 * time.Millisecond)
		r := h.buy(t, city, 8000)
		h.sw.SetDelay(0)
		if r.RC == "00" {
			t.Fatalf("fallback with the bank silent was approved: %+v", r)
		}
		if b := h.balance(); b != 5000 {
			t.Fatalf("balance after a bank timeout during fallback %v, want 5000", b)
		}
		if n := h.pendingHolds(t); n != 0 {
			t.Fatalf("%d holds pending after the bank timed out", n)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(h.sw.Reversals()) == revBefore {
			if time.Now().After(deadline) {
				t.Fatal("the switch never got the reversal of the timed-out authorisation")
			}
			time.Sleep(50 * time.Millisecond)
		}
		// Every transaction type, with the city card and with a bank card,
		// through the whole chain.
		h.c.must("POST", "/v1/cards/"+h.card+"/topups", map[string]any{"amount": 20000, "currency": "CNY"}, 201)
		plain := bankPAN(t, "0043")
		h.sw.SetCard(plain, upsim.Card{Limit: 1000000})
		bankCard := possim.Card{PAN: plain, Expiry: "3012"}
		for _, c := range []struct {
			name string
			card possim.Card
		}{{"city card", city}, {"bank card", bankCard}} {
			step := func(what string) func(possim.Result, error) possim.Result {
				return func(r possim.Result, err error) possim.Result {
					t.Helper()
					if err != nil || r.RC != "00" {
						t.Fatalf("%s, %s: %+v %v", c.name, what, r, err)
					}
					return r
				}
			}
			p := step("purchase")(h.term.Purchase(ctx, c.card, 1000))
			step("void")(h.term.Void(ctx, p, c.card))
			p = step("purchase")(h.term.Purchase(ctx, c.card, 1000))
			step("refund")(h.term.Refund(ctx, p, c.card, 1000))
			pa := step("pre-authorisation")(h.term.PreAuth(ctx, c.card, 3000))
			step("completion for less")(h.term.Complete(ctx, pa, c.card, 2500))
			pa = step("pre-authorisation")(h.term.PreAuth(ctx, c.card, 3000))
			step("cancellation")(h.term.CancelPreAuth(ctx, pa, c.card))
			if b := step("balance inquiry")(h.term.Balance(ctx, c.card)); b.Balance == nil {
				t.Fatalf("%s balance inquiry without a balance: %+v", c.name, b)
			}
		}
		// The city card paid only the completed 25.00 of all that.
		if b := h.balance(); b != 25000-2500 {
			t.Fatalf("city card balance %v, want %d", b, 25000-2500)
		}
		// Part of a bank card's purchase refunded twice; more than is left
		// is refused.
		p := h.buy(t, bankCard, 5000)
		for _, amount := range []int64{2000, 2000} {
			if r, err := h.term.Refund(ctx, p, bankCard, amount); err != nil || r.RC != "00" {
				t.Fatalf("partial refund of %d: %+v %v", amount, r, err)
			}
		}
		if r, err := h.term.Refund(ctx, p, bankCard, 2000); err != nil || r.RC != "64" {
			t.Fatalf("a refund beyond what is left: %+v %v", r, err)
		}

		// Three wrong PINs lock the city card's PIN.
		wrong := possim.Card{PAN: h.card, PIN: "000000"}
		for i, want := range []string{"55", "55", "38"} {
			if r := h.buy(t, wrong, 100); r.RC != want {
				t.Fatalf("wrong city PIN %d: %s, want %s", i+1, r.RC, want)
			}
		}
		if r := h.buy(t, city, 100); r.RC != "38" {
			t.Fatalf("right PIN after the lock: %s, want 38", r.RC)
		}
		// A bank card with its PIN, translated to the zone key, then
		// wrong three times: the issuer locks it.
		pinned := bankPAN(t, "0035")
		h.sw.SetCard(pinned, upsim.Card{Limit: 1000000, PIN: bankPIN})
		if r := h.buy(t, possim.Card{PAN: pinned, PIN: bankPIN, Expiry: "3012"}, 1200); r.RC != "00" {
			t.Fatalf("bank card with its PIN: %+v", r)
		}
		for i := range upsim.PINTries {
			if r := h.buy(t, possim.Card{PAN: pinned, PIN: "1111", Expiry: "3012"}, 1200); r.RC != "55" {
				t.Fatalf("wrong bank PIN %d: %s, want 55", i+1, r.RC)
			}
		}
		if r := h.buy(t, possim.Card{PAN: pinned, PIN: bankPIN, Expiry: "3012"}, 1200); r.RC != "75" {
			t.Fatalf("the right bank PIN after three wrong ones: %s, want 75 (PIN tries exceeded)", r.RC)
		}
		if _, err := ledger.Verify(ctx, st); err != nil {
			t.Fatal(err)
		}
		h.verify(t)
	})
}
