package unionpay_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/citycard/citycard/plugins/unionpay"
	"github.com/citycard/citycard/plugins/unionpay/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/plugintest"
)

func tokenizeCard(t testing.TB, h *plugintest.Harness, pan, expiry string) unionpay.Token {
	t.Helper()
	var tok unionpay.Token
	send(t, h, msg(unionpay.TypeTokenize, "tok-"+pan, map[string]any{"pan": pan, "expiry": expiry}), unionpay.TypeToken, &tok)
	return tok
}

func answer(t testing.TB, h *plugintest.Harness, m sdk.Message) unionpay.Authorization {
	t.Helper()
	var a unionpay.Authorization
	send(t, h, m, unionpay.TypeAuthorization, &a)
	return a
}

func completeMsg(key, ref string, amount int64) sdk.Message {
	return msg(unionpay.TypeComplete, key, map[string]any{"authorization_key": ref, "amount": amount, "currency": "CNY"})
}

func cancelMsg(key, ref, kind string, amount int64) sdk.Message {
	return msg(unionpay.TypeCancel, key, map[string]any{"authorization_key": ref, "kind": kind, "amount": amount, "currency": "CNY"})
}

func preauthMsg(key, pan string, amount int64) sdk.Message {
	return msg(unionpay.TypeAuthorize, key, map[string]any{"pan": pan, "expiry": "3012", "amount": amount, "currency": "CNY",
		"merchant": merchant, "terminal": terminal, "transaction": "preauth"})
}

func pinMsg(key, pan, block string, amount int64) sdk.Message {
	return msg(unionpay.TypeAuthorize, key, map[string]any{"pan": pan, "expiry": "3012", "amount": amount, "currency": "CNY",
		"merchant": merchant, "terminal": terminal, "pin_block": block})
}

func want(t testing.TB, what string, a unionpay.Authorization, status, rc string) {
	t.Helper()
	if a.Status != status || a.ResponseCode != rc {
		t.Errorf("%s = %+v, want %s %s", what, a, status, rc)
	}
}

func TestTokens(t *testing.T) {
	sw, addr := startSwitch(t)
	dir := t.TempDir()
	h := start(t, config(addr, dir))
	pan := card(t, "622230")
	tok := tokenizeCard(t, h, pan, "3012")
	if !regexp.MustCompile(`^tok_[0-9a-f]{32}$`).MatchString(tok.Token) || tok.Last4 != pan[12:] || tok.Expiry != "3012" ||
		tok.MaskedPAN != pan[:6]+"******"+pan[12:] {
		t.Errorf("token = %+v", tok)
	}
	if again := tokenizeCard(t, h, pan, "3012"); again != tok {
		t.Errorf("the same card tokenised again = %+v, first %+v", again, tok)
	}
	other := tokenizeCard(t, h, card(t, "622231"), "3012")
	if other.Token == tok.Token {
		t.Error("two cards share a token")
	}
	a := answer(t, h, msg(unionpay.TypeAuthorize, "tok-pay-1", map[string]any{"token": tok.Token, "amount": 1_500,
		"currency": "CNY", "merchant": merchant, "terminal": terminal}))
	want(t, "authorisation by token", a, unionpay.Approved, "00")
	if a.MaskedPAN != tok.MaskedPAN || sw.Limit(pan) != sim.DefaultLimit-1_500 {
		t.Errorf("authorisation %+v, limit %d", a, sw.Limit(pan))
	}
	unknown := answer(t, h, msg(unionpay.TypeAuthorize, "tok-pay-2", map[string]any{"token": "tok_" + strings.Repeat("0", 32),
		"amount": 100, "currency": "CNY", "merchant": merchant, "terminal": terminal}))
	want(t, "unknown token", unknown, unionpay.Declined, "14")
	if n := len(sw.Authorisations()); n != 1 {
		t.Errorf("%d requests at the switch, want 1", n)
	}
	// Both pan and token, or neither, break the schema.
	for name, p := range map[string]map[string]any{
		"both":    {"pan": pan, "expiry": "3012", "token": tok.Token, "amount": 1, "currency": "CNY", "merchant": merchant, "terminal": terminal},
		"neither": {"expiry": "3012", "amount": 1, "currency": "CNY", "merchant": merchant, "terminal": terminal},
	} {
		if _, err := h.Handle(msg(unionpay.TypeAuthorize, "tok-bad-"+name, p)); err == nil || !strings.Contains(err.Error(), "schema_invalid") {
			t.Errorf("%s: %v", name, err)
		}
	}

	vault, err := os.ReadFile(filepath.Join(dir, "unionpay.vault"))
	if err != nil {
		t.Fatal(err)
	}
	if len(vault) == 0 || strings.Contains(string(vault), pan) || strings.Contains(string(vault), topKey) {
		t.Errorf("the vault holds a card number or the top key in clear:\n%s", vault)
	}

	// The vault survives a restart.
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h2 := start(t, config(addr, dir))
	if again := tokenizeCard(t, h2, pan, "3012"); again.Token != tok.Token {
		t.Errorf("after a restart the card has token %s, before %s", again.Token, tok.Token)
	}
	a = answer(t, h2, msg(unionpay.TypeAuthorize, "tok-pay-3", map[string]any{"token": tok.Token, "amount": 500,
		"currency": "CNY", "merchant": merchant, "terminal": terminal}))
	want(t, "authorisation by token after a restart", a, unionpay.Approved, "00")

	// Another top key does not open the vault.
	cfg := config(addr, dir)
	bad := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(bad, []byte(strings.Repeat("ab", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg["key_store"] = map[string]any{"file": bad}
	h3 := plugintest.Start(t, unionpay.NewWithLogger(slog.New(slog.DiscardHandler)))
	var e *sdk.Error
	if err := h3.Configure(cfg); !errors.As(err, &e) || e.Code != sdk.CodeConfigInvalid || e.Field != "/key_store" {
		t.Errorf("another top key: %v", err)
	}
}

func TestTokenizeWithoutKeyStore(t *testing.T) {
	_, addr := startSwitch(t)
	cfg := config(addr, t.TempDir())
	delete(cfg, "key_store")
	h := start(t, cfg)
	_, err := h.Handle(msg(unionpay.TypeTokenize, "k", map[string]any{"pan": card(t, "622232"), "expiry": "3012"}))
	var e *sdk.Error
	if !errors.As(err, &e) || e.Code != sdk.CodeConfigInvalid || !strings.Contains(e.Message, "key_store") {
		t.Errorf("tokenize without a key store: %v", err)
	}
	// Everything else works.
	want(t, "authorisation", authorise(t, h, authMsg("nks-1", card(t, "622232"), "3012", 100)), unionpay.Approved, "00")
}

func TestPINs(t *testing.T) {
	sw, addr := startSwitch(t)
	h := start(t, config(addr, t.TempDir()))
	pan := card(t, "622240")
	sw.SetCard(pan, sim.Card{Limit: 100_000, PIN: "2468"})
	right, wrong := pinBlock(t, "2468", pan), pinBlock(t, "1111", pan)

	want(t, "right PIN", answer(t, h, pinMsg("pin-1", pan, right, 100)), unionpay.Approved, "00")
	want(t, "no PIN for a card with one", authorise(t, h, authMsg("pin-2", pan, "3012", 100)), unionpay.Declined, "55")
	want(t, "wrong PIN", answer(t, h, pinMsg("pin-3", pan, wrong, 100)), unionpay.Declined, "55")
	want(t, "right PIN resets the count", answer(t, h, pinMsg("pin-4", pan, right, 100)), unionpay.Approved, "00")
	for i, key := range []string{"pin-5", "pin-6", "pin-7"} {
		want(t, "wrong PIN "+string(rune('1'+i)), answer(t, h, pinMsg(key, pan, wrong, 100)), unionpay.Declined, "55")
	}
	if !sw.PINLocked(pan) {
		t.Error("three wrong PINs in a row did not lock the PIN")
	}
	want(t, "right PIN once locked", answer(t, h, pinMsg("pin-8", pan, right, 100)), unionpay.Declined, "75")
	want(t, "wrong PIN once locked", answer(t, h, pinMsg("pin-9", pan, wrong, 100)), unionpay.Declined, "75")
	sw.ResetPINTries(pan)
	want(t, "right PIN once reset", answer(t, h, pinMsg("pin-10", pan, right, 100)), unionpay.Approved, "00")

	// A block that is not a PIN under the zone key never reaches the switch.
	before := len(sw.Authorisations())
	want(t, "undecipherable PIN block", answer(t, h, pinMsg("pin-11", pan, "0123456789ABCDEF", 100)), unionpay.Declined, "99")
	// A block for another card does not decipher to a PIN for this one either.
	other := card(t, "622241")
	want(t, "another card's PIN block", answer(t, h, pinMsg("pin-12", pan, pinBlock(t, "2468", other), 100)), unionpay.Declined, "99")
	if n := len(sw.Authorisations()) - before; n != 0 {
		t.Errorf("%d undecipherable PIN blocks reached the switch", n)
	}
	// The switch saw the PIN in field 52, not the zone key's block: a card
	// with no PIN of its own takes any PIN, translated.
	want(t, "PIN on a card without one", answer(t, h, pinMsg("pin-13", other, pinBlock(t, "9999", other), 100)), unionpay.Approved, "00")
	// The legacy wrong-PIN mark still declines 55.
	marked := card(t, "622242")
	sw.SetCard(marked, sim.Card{Limit: 1_000, WrongPIN: true})
	want(t, "marked card", answer(t, h, pinMsg("pin-14", marked, pinBlock(t, "1234", marked), 100)), unionpay.Declined, "55")
}

func TestPINWithoutZoneKeyIsDeclined99(t *testing.T) {
	sw, addr := startSwitch(t)
	cfg := config(addr, t.TempDir())
	delete(cfg, "pin_zone_key")
	h := start(t, cfg)
	pan := card(t, "622243")
	want(t, "PIN without a zone key", answer(t, h, pinMsg("nzk-1", pan, pinBlock(t, "1234", pan), 100)), unionpay.Declined, "99")
	if n := len(sw.Authorisations()); n != 0 {
		t.Errorf("%d requests at the switch", n)
	}
}

func TestPreAuthAndCompletion(t *testing.T) {
	sw, addr := startSwitch(t)
	h := start(t, config(addr, t.TempDir()))
	pan := card(t, "622250")
	pre := answer(t, h, preauthMsg("pre-1", pan, 10_000))
	want(t, "pre-authorisation", pre, unionpay.Approved, "00")
	if got := sw.Limit(pan); got != sim.DefaultLimit-10_000 {
		t.Errorf("limit under the hold = %d", got)
	}
	c := answer(t, h, completeMsg("comp-1", "pre-1", 7_000))
	want(t, "completion", c, unionpay.Approved, "00")
	if got := sw.Limit(pan); got != sim.DefaultLimit-7_000 {
		t.Errorf("limit after completing 7000 of 10000 = %d", got)
	}
	if again := answer(t, h, completeMsg("comp-1", "pre-1", 7_000)); again.STAN != c.STAN || again.Status != c.Status {
		t.Errorf("completion redelivered = %+v, first %+v", again, c)
	}
	want(t, "a second completion", answer(t, h, completeMsg("comp-2", "pre-1", 1_000)), unionpay.Declined, "25")
	auths := sw.Authorisations()
	if len(auths) != 3 || auths[0].Kind != sim.KindPreAuth || auths[0].MTI != "0100" || auths[1].Kind != sim.KindCompletion ||
		auths[1].Original != pre.STAN {
		t.Errorf("the switch saw %+v", auths)
	}

	answer(t, h, preauthMsg("pre-2", pan, 2_000))
	want(t, "completion above the hold", answer(t, h, completeMsg("comp-3", "pre-2", 2_001)), unionpay.Declined, "64")
	want(t, "completion of a purchase", answer(t, h, completeMsg("comp-4", "nothing", 10)), unionpay.Declined, "25")
	authorise(t, h, authMsg("buy-1", pan, "3012", 100))
	want(t, "completion of a purchase", answer(t, h, completeMsg("comp-5", "buy-1", 10)), unionpay.Declined, "12")
}

func TestPreAuthCancel(t *testing.T) {
	sw, addr := startSwitch(t)
	h := start(t, config(addr, t.TempDir()))
	pan := card(t, "622251")
	answer(t, h, preauthMsg("pre-3", pan, 5_000))
	want(t, "cancel for another amount", answer(t, h, cancelMsg("pc-1", "pre-3", "preauth_cancel", 4_000)), unionpay.Declined, "64")
	c := answer(t, h, cancelMsg("pc-2", "pre-3", "preauth_cancel", 5_000))
	want(t, "pre-authorisation cancellation", c, unionpay.Approved, "00")
	if got := sw.Limit(pan); got != sim.DefaultLimit {
		t.Errorf("limit after the cancellation = %d", got)
	}
	want(t, "completion of a cancelled hold", answer(t, h, completeMsg("pc-3", "pre-3", 100)), unionpay.Declined, "25")
	if a := sw.Authorisations(); a[len(a)-2].MTI != "0100" || a[len(a)-2].Kind != sim.KindPreAuthCancel {
		t.Errorf("the switch saw %+v", a)
	}
}

func TestVoid(t *testing.T) {
	sw, addr := startSwitch(t)
	h := start(t, config(addr, t.TempDir()))
	pan := card(t, "622252")
	authorise(t, h, authMsg("buy-2", pan, "3012", 3_000))
	want(t, "void of part", answer(t, h, cancelMsg("void-1", "buy-2", "void", 2_000)), unionpay.Declined, "64")
	want(t, "void", answer(t, h, cancelMsg("void-2", "buy-2", "void", 3_000)), unionpay.Approved, "00")
	if got := sw.Limit(pan); got != sim.DefaultLimit {
		t.Errorf("limit after the void = %d", got)
	}
	want(t, "void again", answer(t, h, cancelMsg("void-3", "buy-2", "void", 3_000)), unionpay.Declined, "25")
	before := len(sw.Authorisations())
	want(t, "void of an unknown key", answer(t, h, cancelMsg("void-4", "never", "void", 3_000)), unionpay.Declined, "25")
	sw.SetCard(card(t, "622253"), sim.Card{Limit: 10})
	authorise(t, h, authMsg("buy-3", card(t, "622253"), "3012", 3_000)) // declined 51
	want(t, "void of a declined purchase", answer(t, h, cancelMsg("void-5", "buy-3", "void", 3_000)), unionpay.Declined, "25")
	if n := len(sw.Authorisations()) - before; n != 1 {
		t.Errorf("%d requests reached the switch, want only the declined purchase", n)
	}
	answer(t, h, preauthMsg("pre-4", pan, 100))
	want(t, "void of a pre-authorisation", answer(t, h, cancelMsg("void-6", "pre-4", "void", 100)), unionpay.Declined, "12")
	// A completion can be voided.
	answer(t, h, completeMsg("comp-6", "pre-4", 80))
	want(t, "void of a completion", answer(t, h, cancelMsg("void-7", "comp-6", "void", 80)), unionpay.Approved, "00")
	if got := sw.Limit(pan); got != sim.DefaultLimit {
		t.Errorf("limit after voiding the completion = %d", got)
	}
}

func TestRefunds(t *testing.T) {
	sw, addr := startSwitch(t)
	h := start(t, config(addr, t.TempDir()))
	pan := card(t, "622254")
	authorise(t, h, authMsg("buy-4", pan, "3012", 10_000))
	want(t, "first refund", answer(t, h, cancelMsg("ref-1", "buy-4", "refund", 3_000)), unionpay.Approved, "00")
	want(t, "second refund", answer(t, h, cancelMsg("ref-2", "buy-4", "refund", 4_000)), unionpay.Approved, "00")
	want(t, "refund beyond what is left", answer(t, h, cancelMsg("ref-3", "buy-4", "refund", 4_000)), unionpay.Declined, "64")
	if got := sw.Limit(pan); got != sim.DefaultLimit-3_000 {
		t.Errorf("limit after refunding 7000 of 10000 = %d", got)
	}
	want(t, "void after refunds", answer(t, h, cancelMsg("ref-4", "buy-4", "void", 10_000)), unionpay.Declined, "64")
	a := sw.Authorisations()
	if r := a[1]; r.MTI != "0220" || r.Kind != sim.KindRefund || r.Amount != 3_000 {
		t.Errorf("the switch saw %+v", r)
	}
}

func TestBalance(t *testing.T) {
	sw, addr := startSwitch(t)
	h := start(t, config(addr, t.TempDir()))
	pan := card(t, "622255")
	sw.SetCard(pan, sim.Card{Limit: 123_456, PIN: "0000"})
	b := answer(t, h, msg(unionpay.TypeBalance, "bal-1", map[string]any{"pan": pan, "expiry": "3012", "pin_block": pinBlock(t, "0000", pan)}))
	want(t, "balance", b, unionpay.Approved, "00")
	if b.Balance == nil || *b.Balance != 123_456 {
		t.Errorf("balance = %+v", b)
	}
	want(t, "balance without the PIN", answer(t, h, msg(unionpay.TypeBalance, "bal-2", map[string]any{"pan": pan})), unionpay.Declined, "55")
	other := card(t, "622256")
	tok := tokenizeCard(t, h, other, "3012")
	authorise(t, h, authMsg("bal-buy", other, "3012", 1_000))
	b = answer(t, h, msg(unionpay.TypeBalance, "", map[string]any{"token": tok.Token}))
	if b.Status != unionpay.Approved || b.Balance == nil || *b.Balance != sim.DefaultLimit-1_000 {
		t.Errorf("balance by token = %+v", b)
	}
	if a := sw.Authorisations(); a[len(a)-1].Kind != sim.KindBalance {
		t.Errorf("the switch saw %+v", a[len(a)-1])
	}
}

func TestCompletionTimeoutIsReversed(t *testing.T) {
	sw, addr := startSwitch(t)
	h, logs := startLogged(t, config(addr, t.TempDir()))
	pan := card(t, "622260")
	answer(t, h, preauthMsg("pre-5", pan, 6_000))
	release := hold(t, sw)
	c := answer(t, h, completeMsg("comp-7", "pre-5", 5_000))
	want(t, "completion timed out", c, unionpay.Declined, "68")
	eventually(t, "the switch applies the completion's reversal", func() bool { return applied(sw, c.STAN) == 1 })
	release()
	waitDropped(t, logs, 1)
	if got := sw.Limit(pan); got != sim.DefaultLimit-6_000 {
		t.Errorf("limit after the reversed completion = %d, want the hold back", got)
	}
	if again := answer(t, h, completeMsg("comp-7", "pre-5", 5_000)); again.ResponseCode != "68" || again.STAN != c.STAN {
		t.Errorf("the completion redelivered = %+v", again)
	}
	// The hold stands and can be completed anew.
	want(t, "completion after the reversal", answer(t, h, completeMsg("comp-8", "pre-5", 5_000)), unionpay.Approved, "00")
	if got := sw.Limit(pan); got != sim.DefaultLimit-5_000 {
		t.Errorf("limit = %d", got)
	}

	// A pre-authorisation that times out is reversed too.
	release = hold(t, sw)
	p := answer(t, h, preauthMsg("pre-6", pan, 1_000))
	want(t, "pre-authorisation timed out", p, unionpay.Declined, "68")
	eventually(t, "the switch applies the pre-authorisation's reversal", func() bool { return applied(sw, p.STAN) == 1 })
	release()
	waitDropped(t, logs, 2)
	eventually(t, "the hold is released", func() bool { return sw.Limit(pan) == sim.DefaultLimit-5_000 })
}

func TestCancelTimeoutIsResent(t *testing.T) {
	sw, addr := startSwitch(t)
	dir := t.TempDir()
	h, logs := startLogged(t, config(addr, dir))
	pan := card(t, "622261")
	authorise(t, h, authMsg("buy-5", pan, "3012", 4_000))
	release := hold(t, sw)
	v := answer(t, h, cancelMsg("void-8", "buy-5", "void", 4_000))
	want(t, "void timed out", v, unionpay.Declined, "68")
	release()
	waitDropped(t, logs, 1) // the late answer arrives and is dropped
	if n := len(sw.Reversals()); n != 0 {
		t.Errorf("a void was reversed: %+v", sw.Reversals())
	}
	again := answer(t, h, cancelMsg("void-8", "buy-5", "void", 4_000))
	want(t, "void resent", again, unionpay.Approved, "00")
	if again.STAN != v.STAN {
		t.Errorf("the void went again under STAN %s, first %s", again.STAN, v.STAN)
	}
	if third := answer(t, h, cancelMsg("void-8", "buy-5", "void", 4_000)); third != again {
		t.Errorf("a third delivery = %+v, second %+v", third, again)
	}
	if got := sw.Limit(pan); got != sim.DefaultLimit {
		t.Errorf("limit = %d, want the purchase voided once", got)
	}
	voids := 0
	for _, a := range sw.Authorisations() {
		if a.Kind == sim.KindVoid {
			voids++
			if a.Repeats != 1 {
				t.Errorf("the void was repeated %d times at the switch, want 1", a.Repeats)
			}
		}
	}
	if voids != 1 {
		t.Errorf("%d voids applied at the switch", voids)
	}

	// A refund whose answer never came survives a restart and is resent.
	sw.DropAuthorisations(1)
	r := answer(t, h, cancelMsg("ref-5", "buy-5", "refund", 1_000))
	want(t, "refund unanswered", r, unionpay.Declined, "68")
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	h2 := start(t, config(addr, dir))
	// The purchase was voided, so the switch refuses the refund: once.
	r2 := answer(t, h2, cancelMsg("ref-5", "buy-5", "refund", 1_000))
	if r2.STAN != r.STAN || r2.ResponseCode != "25" {
		t.Errorf("refund after the restart = %+v, first %+v", r2, r)
	}
	if got := sw.Limit(pan); got != sim.DefaultLimit {
		t.Errorf("limit = %d", got)
	}
}

func TestCancelRedeliveryIsOneAtTheSwitch(t *testing.T) {
	sw, addr := startSwitch(t)
	h := start(t, config(addr, t.TempDir()))
	pan := card(t, "622262")
	authorise(t, h, authMsg("buy-6", pan, "3012", 2_000))
	first := answer(t, h, cancelMsg("ref-6", "buy-6", "refund", 500))
	for range 3 {
		if again := answer(t, h, cancelMsg("ref-6", "buy-6", "refund", 500)); again != first {
			t.Errorf("redelivery = %+v, first %+v", again, first)
		}
	}
	if n := len(sw.Authorisations()); n != 2 {
		t.Errorf("%d requests at the switch, want 2", n)
	}
	if got := sw.Limit(pan); got != sim.DefaultLimit-1_500 {
		t.Errorf("limit = %d", got)
	}
	if got := reverse(t, h, "ref-6"); got != unionpay.UnknownOriginal {
		t.Errorf("reversing a refund = %s", got)
	}
}
