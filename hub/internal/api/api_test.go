package api_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/cardno"
	"github.com/citycard/citycard/hub/internal/operators"
	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

// Roles, as the harness names their tokens.
const (
	admin   = "admin"
	teller  = operators.Teller
	risk    = operators.Risk
	finance = operators.Finance
	auditor = operators.Auditor
)

// TestAPI runs every flow of the operator API against a real server, on
// each store driver: the card life cycle, payments and their declines,
// holds, reversals, merchants and terminals, the trial balance, the audit
// log and metrics; then bad input, each refusal checked to change nothing.
func TestAPI(t *testing.T) {
	t.Cleanup(pin.SetCostForTesting(1, 8))
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		h := newHarness(t, st)
		s := &suite{h: h}
		steps := []struct {
			name string
			fn   func(*testing.T)
		}{
			{"Operations", s.operations},
			{"MerchantsAndTerminals", s.merchantsAndTerminals},
			{"Issue", s.issue},
			{"Get", s.getCard},
			{"TopUp", s.topUp},
			{"Payments", s.payments},
			{"PINLockAndChange", s.pinLockAndChange},
			{"Holds", s.holds},
			{"Reversal", s.reversal},
			{"FreezeAndLoss", s.freezeAndLoss},
			{"Replace", s.replace},
			{"Cancel", s.cancel},
			{"Products", s.products},
			{"BadInput", s.badInput},
			{"TrialBalance", s.trialBalance},
			{"Audit", s.audit},
			{"Metrics", s.metrics},
		}
		for _, step := range steps {
			h.t = t
			if !t.Run(step.name, func(t *testing.T) {
				h.t = t
				step.fn(t)
			}) {
				h.t = t
				break // later steps build on this one
			}
		}
		h.t = t
		h.verify()
	})
}

// suite carries what the flows create for later ones.
type suite struct {
	h *harness

	cardA, cardB, cardC string // A is lost and replaced by B; C is cancelled
	payment1            string // a retail payment on A, later reversed
	reversal1           string
	expiredHold         string
}

func (s *suite) operations(t *testing.T) {
	h := s.h
	h.req("GET", "/healthz", "", nil, nil).want(200)
	r := h.req("GET", "/readyz", "", nil, nil).want(200)
	if r.str("store") != h.st.Driver() {
		t.Fatalf("readyz store %q, want %q", r.str("store"), h.st.Driver())
	}
	// A caller's correlation id is kept, echoed and logged.
	resp := h.req("GET", "/v1/products", h.tokens[teller], nil, map[string]string{"X-Request-Id": "trace-abc-123"})
	resp.want(200)
	if got := resp.header.Get("X-Request-Id"); got != "trace-abc-123" {
		t.Fatalf("X-Request-Id echoed as %q", got)
	}
	if !strings.Contains(h.logs.String(), `"request_id":"trace-abc-123"`) {
		t.Fatalf("the request id is not in the logs:\n%s", h.logs.String())
	}
	// Without one, the server makes one.
	if got := h.req("GET", "/healthz", "", nil, nil).header.Get("X-Request-Id"); len(got) < 16 {
		t.Fatalf("generated request id %q", got)
	}
	h.req("GET", "/v1/nowhere", h.tokens[teller], nil, nil).problem(404, "not_found", "")
}

func (s *suite) merchantsAndTerminals(t *testing.T) {
	h := s.h
	shop := map[string]any{"id": "SHOP", "name": "Corner shop", "mcc": "5411", "fee_rate_bps": 60, "settlement_account": "6222000011112222"}
	first := h.postKey(finance, "/v1/merchants", "m-shop", shop)
	m := first.want(201)
	m.keys("id", "name", "mcc", "fee_rate_bps", "settlement_account")
	if m.str("id") != "SHOP" || m.int("fee_rate_bps") != 60 || m.str("mcc") != "5411" {
		t.Fatalf("merchant %s", m.json())
	}
	// A retry of the creation is a replay with the same answer.
	again := h.postKey(finance, "/v1/merchants", "m-shop", shop)
	again.want(201)
	if again.header.Get("Idempotent-Replayed") != "true" || string(again.raw) != string(first.raw) {
		t.Fatalf("merchant retry: header %q, body %s, first %s", again.header.Get("Idempotent-Replayed"), again.raw, first.raw)
	}
	for _, mm := range []map[string]any{
		{"id": "BUS", "name": "City buses", "mcc": "4111", "fee_rate_bps": 0, "settlement_account": "6222000011113333"},
		{"id": "HOSP", "name": "First hospital", "mcc": "8062", "fee_rate_bps": 20, "settlement_account": "6222000011114444"},
		{"id": "WELF", "name": "Welfare grocery", "mcc": "5411", "fee_rate_bps": 0, "settlement_account": "6222000011115555"},
	} {
		h.post(admin, "/v1/merchants", mm).want(201)
	}
	list := h.get(teller, "/v1/merchants").want(200)
	if n := len(list.list("merchants")); n != 4 {
		t.Fatalf("%d merchants listed: %s", n, list.json())
	}
	if got := h.get(auditor, "/v1/merchants/HOSP").want(200); got.str("name") != "First hospital" {
		t.Fatalf("merchant HOSP: %s", got.json())
	}
	h.get(teller, "/v1/merchants/NOPE").problem(404, "merchant_not_found", "id")

	term := h.post(finance, "/v1/terminals", map[string]any{"id": "T-SHOP-1", "merchant": "SHOP"}).want(201)
	if term.str("merchant") != "SHOP" {
		t.Fatalf("terminal %s", term.json())
	}
	h.post(finance, "/v1/terminals", map[string]any{"id": "T-BUS-1", "merchant": "BUS"}).want(201)
	ts := h.get(teller, "/v1/terminals?merchant=SHOP").want(200).list("terminals")
	if len(ts) != 1 || ts[0].str("id") != "T-SHOP-1" {
		t.Fatalf("terminals of SHOP: %v", ts)
	}
	if n := len(h.get(teller, "/v1/terminals").want(200).list("terminals")); n != 2 {
		t.Fatalf("%d terminals in all", n)
	}
	h.get(teller, "/v1/terminals?merchant=NOPE").problem(404, "merchant_not_found", "merchant")
	h.post(finance, "/v1/terminals", map[string]any{"id": "T-X", "merchant": "NOPE"}).problem(422, "merchant_not_found", "merchant")
	// A teller may not register merchants.
	h.post(teller, "/v1/merchants", map[string]any{"id": "T1", "name": "x", "mcc": "5411", "settlement_account": "1"}).
		problem(403, "forbidden", "")
}

func (s *suite) issue(t *testing.T) {
	h := s.h
	r := h.post(teller, "/v1/cards", map[string]any{
		"holder":  map[string]any{"name": "Wang Fang", "id_type": "resident_id", "id_number": "310101199001011234", "phone": "+8613800000001"},
		"product": "standard",
		"pin":     "123456",
	}).want(201)
	r.keys("number", "status", "product", "purses", "deposit", "receipt")
	s.cardA = r.str("number")
	if !cardno.Luhn(s.cardA) || len(s.cardA) != cardno.Length {
		t.Fatalf("card number %q", s.cardA)
	}
	if r.str("status") != "active" || r.str("product") != "standard" || r.int("deposit") != 2000 {
		t.Fatalf("issued card %s", r.json())
	}
	for _, name := range []string{"cash", "medical", "welfare"} {
		p := r.purse(name)
		p.keys("purse", "posted", "pending", "available")
		if p.int("posted") != 0 || p.int("pending") != 0 || p.int("available") != 0 {
			t.Fatalf("new purse %s", p.json())
		}
	}
	rc := r.get("receipt")
	receipt := doc{t: t, v: rc, where: "receipt"}
	if receipt.str("number") == "" || receipt.int("amount") != 2000 || receipt.str("kind") != "issue" || receipt.str("teller") != "teller1" {
		t.Fatalf("issue receipt %s", receipt.json())
	}
	// The deposit is in the ledger: cash taken at the outlet, held for the holder.
	tb := h.get(finance, "/v1/ledger/trial-balance").want(200)
	if acc := account(t, tb, "deposit:"+s.cardA); acc.int("credits") != 2000 || acc.str("kind") != "deposit" {
		t.Fatalf("deposit account %s", acc.json())
	}
	if acc := account(t, tb, "cash:outlets"); acc.int("debits") != 2000 {
		t.Fatalf("cash account %s", acc.json())
	}

	// Card C, without a PIN, is cancelled later.
	c := h.post(teller, "/v1/cards", map[string]any{
		"holder": map[string]any{"name": "Zhao Min", "id_type": "passport", "id_number": "E98765432"},
	}).want(201)
	s.cardC = c.str("number")
	if c.str("product") != "standard" || s.cardC == s.cardA {
		t.Fatalf("card C %s", c.json())
	}
}

func (s *suite) getCard(t *testing.T) {
	h := s.h
	r := h.get(teller, "/v1/cards/"+s.cardA).want(200)
	r.keys("number", "status", "product", "purses", "deposit")
	if r.str("number") != s.cardA || r.str("status") != "active" || !r.bool("pin_set") || r.bool("pin_locked") {
		t.Fatalf("card %s", r.json())
	}
	if id := r.str("holder.id_number_masked"); !strings.HasSuffix(id, "1234") || strings.Contains(id, "310101") {
		t.Fatalf("holder id shown as %q", id)
	}
	if strings.Contains(string(r.json()), "310101199001011234") {
		t.Fatal("the full ID number is in the answer")
	}
}

func (s *suite) topUp(t *testing.T) {
	h := s.h
	r := h.post(teller, "/v1/cards/"+s.cardA+"/topups", map[string]any{"amount": 10000, "currency": "CNY", "purse": "cash", "method": "cash"}).want(201)
	r.keys("receipt", "purses")
	rc := doc{t: t, v: r.get("receipt"), where: "topup receipt"}
	rc.keys("number", "at", "teller", "amount", "currency", "balance_after")
	if rc.str("number") == "" || rc.str("teller") != "teller1" || rc.int("amount") != 10000 ||
		rc.str("currency") != "CNY" || rc.int("balance_after") != 10000 || rc.str("card") != s.cardA {
		t.Fatalf("top-up receipt %s", rc.json())
	}
	if _, err := time.Parse(time.RFC3339Nano, rc.str("at")); err != nil {
		t.Fatalf("receipt time %q: %v", rc.str("at"), err)
	}
	if p := r.purse("cash"); p.int("posted") != 10000 || p.int("available") != 10000 {
		t.Fatalf("cash purse after top-up %s", p.json())
	}
	// Purse defaults to cash; bank-card top-ups; other purses.
	h.post(teller, "/v1/cards/"+s.cardA+"/topups", map[string]any{"amount": 30000, "currency": "CNY", "method": "bank_card"}).want(201)
	h.post(teller, "/v1/cards/"+s.cardA+"/topups", map[string]any{"amount": 1500, "currency": "CNY", "purse": "medical"}).want(201)
	last := h.post(teller, "/v1/cards/"+s.cardA+"/topups", map[string]any{"amount": 3000, "currency": "CNY", "purse": "welfare"}).want(201)
	s.wantPurses(t, last, map[string]int64{"cash": 40000, "medical": 1500, "welfare": 3000})

	h.post(teller, "/v1/cards/"+s.cardC+"/topups", map[string]any{"amount": 5000, "currency": "CNY"}).want(201)
	h.post(teller, "/v1/cards/"+s.cardC+"/topups", map[string]any{"amount": 700, "currency": "CNY", "purse": "medical"}).want(201)

	// The maximum balance (5,000.00 yuan on the standard card) is refused.
	h.post(teller, "/v1/cards/"+s.cardA+"/topups", map[string]any{"amount": 500000 - 44500 + 1, "currency": "CNY"}).
		problem(422, "exceeds_max_balance", "amount")
	s.wantBalances(t, s.cardA, map[string]int64{"cash": 40000, "medical": 1500, "welfare": 3000})
}

// wantPurses checks the posted balances in an answer's purses.
func (s *suite) wantPurses(t *testing.T, d doc, want map[string]int64) {
	t.Helper()
	for name, amount := range want {
		if got := d.purse(name).int("posted"); got != amount {
			t.Fatalf("purse %s holds %d, want %d: %s", name, got, amount, d.json())
		}
	}
}

func (s *suite) wantBalances(t *testing.T, card string, want map[string]int64) doc {
	t.Helper()
	d := s.h.get(teller, "/v1/cards/"+card).want(200)
	s.wantPurses(t, d, want)
	return d
}

// pay makes a payment and returns its answer (always 201).
func (s *suite) pay(card, channel, merchant, terminal string, amount int64, pinCode string) doc {
	s.h.t.Helper()
	body := map[string]any{"card": card, "channel": channel, "merchant": merchant, "amount": amount, "currency": "CNY"}
	if terminal != "" {
		body["terminal"] = terminal
	}
	if pinCode != "" {
		body["pin"] = pinCode
	}
	return s.h.post(teller, "/v1/payments", body).want(201)
}

func wantDecline(t *testing.T, d doc, reason string) {
	t.Helper()
	if d.str("status") != "declined" || d.str("reason") != reason || len(d.list("legs")) != 0 {
		t.Fatalf("want a %s decline, got %s", reason, d.json())
	}
}

func wantLegs(t *testing.T, d doc, legs ...any) {
	t.Helper()
	if d.str("status") != "approved" {
		t.Fatalf("payment not approved: %s", d.json())
	}
	got := d.list("legs")
	if len(got) != len(legs)/2 {
		t.Fatalf("legs %s, want %v", d.json(), legs)
	}
	for i := range got {
		if got[i].str("purse") != legs[2*i].(string) || got[i].int("amount") != int64(legs[2*i+1].(int)) {
			t.Fatalf("legs %s, want %v", d.json(), legs)
		}
	}
}

func (s *suite) payments(t *testing.T) {
	a := s.cardA
	p := s.pay(a, "retail", "SHOP", "T-SHOP-1", 2500, "")
	p.keys("id", "status", "legs")
	wantLegs(t, p, "cash", 2500)
	s.payment1 = p.str("id")
	if s.payment1 == "" {
		t.Fatal("approved payment has no id")
	}
	// Above the retail PIN threshold (200.00): no PIN, a wrong one, the right one.
	wantDecline(t, s.pay(a, "retail", "SHOP", "", 21000, ""), "pin_required")
	wantDecline(t, s.pay(a, "retail", "SHOP", "", 21000, "000000"), "pin_incorrect")
	wantLegs(t, s.pay(a, "retail", "SHOP", "", 21000, "123456"), "cash", 21000)
	// cash 40000-2500-21000 = 16500
	wantDecline(t, s.pay(a, "retail", "SHOP", "", 19000, ""), "insufficient_funds")
	// Welfare pays only from the welfare purse, whatever cash there is.
	wantLegs(t, s.pay(a, "welfare", "WELF", "", 1000, ""), "welfare", 1000)
	wantDecline(t, s.pay(a, "welfare", "WELF", "", 2500, ""), "insufficient_funds")
	// Medical takes the medical purse first, then cash.
	wantLegs(t, s.pay(a, "medical", "HOSP", "", 4000, ""), "medical", 1500, "cash", 2500)
	// Transit needs no PIN.
	wantLegs(t, s.pay(a, "transit", "BUS", "T-BUS-1", 200, ""), "cash", 200)
	s.wantBalances(t, a, map[string]int64{"cash": 13800, "medical": 0, "welfare": 2000})
}

func (s *suite) pinLockAndChange(t *testing.T) {
	h := s.h
	a := s.cardA
	// Online always needs a PIN; the third wrong one locks it.
	wantDecline(t, s.pay(a, "online", "SHOP", "", 100, "111111"), "pin_incorrect")
	wantDecline(t, s.pay(a, "online", "SHOP", "", 100, "111111"), "pin_incorrect")
	wantDecline(t, s.pay(a, "online", "SHOP", "", 100, "111111"), "pin_locked")
	wantDecline(t, s.pay(a, "online", "SHOP", "", 100, "123456"), "pin_locked")
	if !h.get(teller, "/v1/cards/"+a).want(200).bool("pin_locked") {
		t.Fatal("the card's PIN is not shown locked")
	}
	// A new PIN set at the counter unlocks the card.
	r := h.post(teller, "/v1/cards/"+a+"/pin", map[string]any{"pin": "654321"}).want(200)
	if r.bool("pin_locked") || !r.bool("pin_set") {
		t.Fatalf("after a PIN change: %s", r.json())
	}
	wantDecline(t, s.pay(a, "online", "SHOP", "", 100, "123456"), "pin_incorrect")
	wantLegs(t, s.pay(a, "online", "SHOP", "", 100, "654321"), "cash", 100)
	s.wantBalances(t, a, map[string]int64{"cash": 13700})
}

func (s *suite) holds(t *testing.T) {
	h := s.h
	a := s.cardA
	hold := func(amount int64, expiresIn int64) doc {
		body := map[string]any{"card": a, "channel": "retail", "merchant": "SHOP", "terminal": "T-SHOP-1", "amount": amount, "currency": "CNY"}
		if expiresIn > 0 {
			body["expires_in"] = expiresIn
		}
		return h.post(teller, "/v1/holds", body).want(201)
	}
	h1 := hold(3000, 0)
	wantLegs(t, h1, "cash", 3000)
	if h1.str("expires_at") == "" {
		t.Fatalf("hold without expiry: %s", h1.json())
	}
	// A hold counts against the available balance.
	c := s.wantBalances(t, a, map[string]int64{"cash": 13700}).purse("cash")
	if c.int("pending") != 3000 || c.int("available") != 10700 {
		t.Fatalf("cash purse under a hold: %s", c.json())
	}
	// Partial capture: 2000 posted, the rest released.
	cp := h.post(teller, "/v1/holds/"+h1.str("id")+"/capture", map[string]any{"amount": 2000, "currency": "CNY"}).want(200)
	if cp.str("status") != "captured" || cp.int("captured") != 2000 || cp.str("transfer") == "" {
		t.Fatalf("capture %s", cp.json())
	}
	c = s.wantBalances(t, a, map[string]int64{"cash": 11700}).purse("cash")
	if c.int("pending") != 0 || c.int("available") != 11700 {
		t.Fatalf("cash purse after capture: %s", c.json())
	}
	h.post(teller, "/v1/holds/"+h1.str("id")+"/capture", map[string]any{"amount": 500}).problem(409, "hold_not_pending", "hold")

	// Void releases it all.
	h2 := hold(1000, 0)
	if p := h.get(teller, "/v1/cards/"+a).want(200).purse("cash"); p.int("available") != 10700 {
		t.Fatalf("after a second hold %s", p.json())
	}
	v := h.post(teller, "/v1/holds/"+h2.str("id")+"/void", nil).want(200)
	if v.str("status") != "voided" || v.int("captured") != 0 {
		t.Fatalf("void %s", v.json())
	}
	if p := h.get(teller, "/v1/cards/"+a).want(200).purse("cash"); p.int("available") != 11700 || p.int("pending") != 0 {
		t.Fatalf("after void %s", p.json())
	}
	if got := h.get(auditor, "/v1/holds/"+h2.str("id")).want(200); got.str("status") != "voided" {
		t.Fatalf("hold after void %s", got.json())
	}

	// A short hold, left to expire: capturing it is refused (in BadInput),
	// and the sweeper releases it.
	h3 := hold(500, 60)
	s.expiredHold = h3.str("id")
	h.clk.Advance(2 * time.Minute)
	if p := h.get(teller, "/v1/cards/"+a).want(200).purse("cash"); p.int("pending") != 500 {
		t.Fatalf("expired but unswept hold: %s", p.json())
	}
}

func (s *suite) reversal(t *testing.T) {
	h := s.h
	r := h.post(finance, "/v1/transfers/"+s.payment1+"/reverse", map[string]any{"memo": "goods returned"}).want(201)
	if r.str("reverses") != s.payment1 || r.str("kind") != "payment" || r.int("amount") != 2500 || r.str("id") == "" {
		t.Fatalf("reversal %s", r.json())
	}
	s.reversal1 = r.str("id")
	s.wantBalances(t, s.cardA, map[string]int64{"cash": 14200})
	tr := h.get(auditor, "/v1/transfers/"+s.payment1).want(200)
	if tr.str("reversed_by") != s.reversal1 || tr.str("kind") != "payment" || tr.int("amount") != 2500 {
		t.Fatalf("reversed payment %s", tr.json())
	}
	var sum int64
	seen := map[string]int64{}
	for _, e := range tr.list("entries") {
		sum += e.int("amount")
		seen[e.str("account")] = e.int("amount")
	}
	if sum != 0 || seen["purse:"+s.cardA+":cash"] != 2500 || seen["merchant:SHOP"] != -2500 {
		t.Fatalf("payment entries %s", tr.json())
	}
	rev := h.get(auditor, "/v1/transfers/"+s.reversal1).want(200)
	if rev.str("ref") != s.payment1 || rev.str("kind") != "reversal" {
		t.Fatalf("reversal transfer %s", rev.json())
	}
	h.get(auditor, "/v1/transfers/999999").problem(404, "transfer_not_found", "id")
}

func (s *suite) freezeAndLoss(t *testing.T) {
	h := s.h
	a := s.cardA
	if r := h.post(risk, "/v1/cards/"+a+"/freeze", nil).want(200); r.str("status") != "frozen" {
		t.Fatalf("freeze %s", r.json())
	}
	wantDecline(t, s.pay(a, "retail", "SHOP", "", 100, ""), "card_frozen")
	if r := h.post(risk, "/v1/cards/"+a+"/unfreeze", map[string]any{}).want(200); r.str("status") != "active" {
		t.Fatalf("unfreeze %s", r.json())
	}
	r := h.post(teller, "/v1/cards/"+a+"/loss", nil).want(200)
	if r.str("status") != "lost" {
		t.Fatalf("loss %s", r.json())
	}
	wantDecline(t, s.pay(a, "retail", "SHOP", "", 100, ""), "card_lost")
	wantDecline(t, s.pay(a, "transit", "BUS", "", 100, ""), "card_lost")
}

func (s *suite) replace(t *testing.T) {
	h := s.h
	// The expired hold must go before the balances can move.
	n, err := h.app.Service().ExpireHolds(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("ExpireHolds = %d, %v", n, err)
	}
	if got := h.get(teller, "/v1/holds/"+s.expiredHold).want(200); got.str("status") != "expired" {
		t.Fatalf("swept hold %s", got.json())
	}
	before := h.get(finance, "/v1/ledger/trial-balance").want(200)
	r := h.post(teller, "/v1/cards/"+s.cardA+"/replace", map[string]any{"method": "cash"}).want(201)
	s.cardB = r.str("number")
	if s.cardB == s.cardA || !cardno.Luhn(s.cardB) || r.str("replaces") != s.cardA || r.str("status") != "active" {
		t.Fatalf("replacement %s", r.json())
	}
	s.wantPurses(t, r, map[string]int64{"cash": 14200, "medical": 0, "welfare": 2000})
	if r.int("deposit") != 2000 {
		t.Fatalf("replacement deposit %s", r.json())
	}
	old := h.get(teller, "/v1/cards/"+s.cardA).want(200)
	if old.str("status") != "replaced" || old.str("replaced_by") != s.cardB {
		t.Fatalf("old card %s", old.json())
	}
	s.wantPurses(t, old, map[string]int64{"cash": 0, "medical": 0, "welfare": 0})
	// The old deposit is kept by the city, a new one is paid in cash.
	after := h.get(finance, "/v1/ledger/trial-balance").want(200)
	if got := account(t, after, "income:forfeited_deposits").int("credits"); got != 2000 {
		t.Fatalf("forfeited deposits %d", got)
	}
	if d := account(t, after, "cash:outlets").int("debits") - account(t, before, "cash:outlets").int("debits"); d != 2000 {
		t.Fatalf("cash taken for the new deposit: %d", d)
	}
	if got := account(t, after, "deposit:"+s.cardB).int("credits"); got != 2000 {
		t.Fatalf("new deposit %d", got)
	}
	// The new card keeps the PIN and pays.
	wantLegs(t, s.pay(s.cardB, "retail", "SHOP", "", 1000, "654321"), "cash", 1000)
}

func (s *suite) cancel(t *testing.T) {
	h := s.h
	before := h.get(finance, "/v1/ledger/trial-balance").want(200)
	r := h.post(teller, "/v1/cards/"+s.cardC+"/cancel", nil).want(200)
	if r.str("status") != "closed" || r.int("refund") != 7000 || r.int("deposit_refunded") != 2000 ||
		r.int("balances_refunded") != 5000 || r.int("unrefunded") != 700 {
		t.Fatalf("cancel %s", r.json())
	}
	after := h.get(finance, "/v1/ledger/trial-balance").want(200)
	if d := account(t, after, "cash:outlets").int("credits") - account(t, before, "cash:outlets").int("credits"); d != 7000 {
		t.Fatalf("cash paid out %d", d)
	}
	if got := account(t, after, "suspense:unclaimed_balances").int("credits"); got != 700 {
		t.Fatalf("unclaimed %d", got)
	}
	wantDecline(t, s.pay(s.cardC, "transit", "BUS", "", 100, ""), "card_closed")
}

func (s *suite) products(t *testing.T) {
	ps := s.h.get(auditor, "/v1/products").want(200).list("products")
	codes := map[string]doc{}
	for _, p := range ps {
		codes[p.str("code")] = p
	}
	std, ok := codes["standard"]
	if !ok || codes["anonymous"].v == nil {
		t.Fatalf("products %v", ps)
	}
	if std.int("deposit") != 2000 || std.int("max_balance") != 500000 {
		t.Fatalf("standard product %s", std.json())
	}
}

func (s *suite) trialBalance(t *testing.T) {
	tb := s.h.get(auditor, "/v1/ledger/trial-balance").want(200)
	tb.keys("accounts", "total_debits", "total_credits", "balanced")
	var d, c int64
	for _, a := range tb.list("accounts") {
		a.keys("code", "kind", "debits", "credits")
		d += a.int("debits")
		c += a.int("credits")
	}
	if !tb.bool("balanced") || d != c || tb.int("total_debits") != d || tb.int("total_credits") != c {
		t.Fatalf("trial balance %s", tb.json())
	}
}

func (s *suite) audit(t *testing.T) {
	h := s.h
	h.get(teller, "/v1/audit").problem(403, "forbidden", "")
	es := h.audit()
	for _, want := range []map[string]string{
		{"action": "cards.issue", "operator": "teller1", "outcome": "ok"},
		{"action": "cards.topup", "operator": "teller1", "target": s.cardA, "outcome": "ok"},
		{"action": "cards.topup", "outcome": "error:exceeds_max_balance"},
		{"action": "payments.create", "target": s.cardA, "outcome": "declined:pin_required"},
		{"action": "payments.create", "target": s.cardA, "outcome": "ok"},
		{"action": "holds.capture", "outcome": "ok"},
		{"action": "holds.expire", "operator": "system", "outcome": "ok"},
		{"action": "transfers.reverse", "operator": "finance1", "outcome": "ok"},
		{"action": "cards.loss", "target": s.cardA, "outcome": "ok"},
		{"action": "cards.freeze", "operator": "risk1", "outcome": "ok"},
		{"action": "cards.replace", "target": s.cardA, "outcome": "ok"},
		{"action": "cards.cancel", "target": s.cardC, "outcome": "ok"},
		{"action": "cards.pin", "target": s.cardA, "outcome": "ok"},
		{"action": "merchants.create", "operator": "finance1", "target": "SHOP", "outcome": "ok"},
		{"action": "terminals.create", "target": "T-SHOP-1", "outcome": "ok"},
		{"action": "cards.read", "operator": "teller1", "target": s.cardA, "outcome": "ok"},
		{"action": "merchants.create", "operator": "teller1", "outcome": "denied"},
		{"action": "audit.read", "operator": "teller1", "outcome": "denied"},
		{"action": "transfers.reverse", "operator": "teller1", "outcome": "denied"},
		{"action": "cards.topup", "operator": "auditor1", "outcome": "denied"},
		{"action": "cards.topup", "operator": "", "outcome": "denied"},
	} {
		if !auditHas(es, want) {
			t.Errorf("no audit entry like %v", want)
		}
	}
	for _, e := range es {
		if e.str("at") == "" || e.str("action") == "" || e.str("outcome") == "" {
			t.Errorf("incomplete audit entry %s", e.json())
		}
	}
	// Paging: after= skips what was seen.
	page := h.get(auditor, "/v1/audit?limit=2").want(200)
	if n := len(page.list("entries")); n != 2 {
		t.Fatalf("limit=2 gave %d entries", n)
	}
	next := h.get(auditor, "/v1/audit?limit=2&after="+strconv.FormatInt(page.int("next_after"), 10)).want(200)
	if next.list("entries")[0].int("id") <= page.int("next_after") {
		t.Fatalf("second page %s", next.json())
	}
	h.get(auditor, "/v1/audit?limit=0").problem(400, "invalid_request", "limit")
	h.get(auditor, "/v1/audit?after=x").problem(400, "invalid_request", "after")
}

func (s *suite) metrics(t *testing.T) {
	r := s.h.req("GET", "/metrics", "", nil, nil)
	if r.status != 200 {
		t.Fatalf("/metrics: %d", r.status)
	}
	body := string(r.raw)
	for _, want := range []string{
		`citycard_http_requests_total{route="POST /v1/payments",status="201"}`,
		`citycard_http_requests_total{route="POST /v1/cards/{number}/topups",status="422"}`,
		`citycard_http_request_duration_seconds_bucket{route="GET /v1/cards/{number}"`,
		`citycard_postings_total{action="payments.create"}`,
		"citycard_ledger_batch_size_count",
		"citycard_ledger_commit_seconds_bucket",
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// account finds one line of a trial balance answer.
func account(t *testing.T, tb doc, code string) doc {
	t.Helper()
	for _, a := range tb.list("accounts") {
		if a.str("code") == code {
			return a
		}
	}
	t.Fatalf("no account %s in the trial balance", code)
	return doc{}
}
