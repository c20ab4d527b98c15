package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/cardno"
)

// Tables a refusal may add one row to: the audit log (a denied request, a
// refused merchant or terminal, a card read, and every refusal the ledger
// writer decides are recorded) and the batch chain (a refusal decided by the
// writer commits its audit entry in a batch with no transfer). Whether the
// card service checks a rule before the writer or inside it is its own
// business, so refusals that reach the service may add both; refusals the
// API decides itself (JSON, fields, tokens, keys) may add nothing but the
// audit entry of a denial.
const (
	auditLog = "audit_log"
	batches  = "batches"
)

var viaService = []string{auditLog, batches}

// badInput sends requests that must be refused, or answered from the
// idempotency record, and checks for each that no ledger table and no
// balance changed.
func (s *suite) badInput(t *testing.T) {
	h := s.h
	b := s.cardB
	topups := "/v1/cards/" + b + "/topups"
	unknownCard, err := cardno.New(cardno.DefaultPrefix, 99_999_999)
	if err != nil {
		t.Fatal(err)
	}
	last := b[len(b)-1]
	badLuhn := b[:len(b)-1] + string('0'+(last-'0'+1)%10)

	// Set up what some cases refer to.
	first := h.postKey(teller, topups, "dup-key", map[string]any{"amount": 100, "currency": "CNY"})
	first.want(201)
	small := h.post(teller, "/v1/holds", map[string]any{"card": b, "channel": "retail", "merchant": "SHOP", "amount": 100, "currency": "CNY"}).want(201)
	expiring := h.post(teller, "/v1/holds", map[string]any{"card": b, "channel": "retail", "merchant": "SHOP", "amount": 300, "currency": "CNY", "expires_in": 30}).want(201)
	h.clk.Advance(time.Minute)
	payment := func(amount int64, currency, merchant, terminal, card string) map[string]any {
		m := map[string]any{"card": card, "channel": "retail", "merchant": merchant, "amount": amount, "currency": currency}
		if terminal != "" {
			m["terminal"] = terminal
		}
		return m
	}
	withKey := map[string]string{"Idempotency-Key": "k-fixed"}

	cases := []struct {
		name   string
		send   func() *reply
		status int
		code   string // "" for the idempotent replay, which succeeds
		field  string
		grows  []string
	}{
		{"malformed JSON", func() *reply {
			return h.req("POST", topups, h.tokens[teller], `{"amount": 100, "currency": "CNY"`, map[string]string{"Idempotency-Key": h.newKey()})
		}, 400, "invalid_json", "", nil},
		{"JSON syntax error", func() *reply { return h.post(teller, topups, `{"amount": 1OO}`) }, 400, "invalid_json", "", nil},
		{"data after the JSON", func() *reply { return h.post(teller, topups, `{"amount":100,"currency":"CNY"} {}`) }, 400, "invalid_json", "", nil},
		{"body not an object", func() *reply { return h.post(teller, topups, `[100]`) }, 400, "invalid_request", "", nil},
		{"unknown field", func() *reply {
			return h.post(teller, topups, map[string]any{"amount": 100, "currency": "CNY", "colour": "red"})
		}, 400, "unknown_field", "colour", nil},
		{"unknown nested field", func() *reply {
			return h.post(teller, "/v1/cards", map[string]any{"holder": map[string]any{"name": "X", "id_type": "passport", "id_number": "E1", "nickname": "x"}})
		}, 400, "unknown_field", "holder.nickname", nil},
		{"path parameter in the body", func() *reply {
			return h.post(teller, topups, map[string]any{"card": unknownCard, "amount": 100, "currency": "CNY"})
		}, 400, "unknown_field", "card", nil},
		{"field name in another case", func() *reply {
			return h.post(teller, topups, map[string]any{"Amount": 100, "currency": "CNY"})
		}, 400, "unknown_field", "Amount", nil},
		{"fields on a bodiless write", func() *reply { return h.post(teller, "/v1/cards/"+b+"/loss", map[string]any{"reason": "x"}) }, 400, "unknown_field", "reason", nil},
		{"amount as a string", func() *reply { return h.post(teller, topups, map[string]any{"amount": "100", "currency": "CNY"}) }, 400, "invalid_request", "amount", nil},
		{"fractional amount", func() *reply { return h.post(teller, topups, `{"amount": 10.5, "currency": "CNY"}`) }, 400, "invalid_request", "amount", nil},
		{"holder of the wrong type", func() *reply { return h.post(teller, "/v1/cards", map[string]any{"holder": "Wang"}) }, 400, "invalid_request", "holder", nil},
		{"zero amount", func() *reply { return h.post(teller, topups, map[string]any{"amount": 0, "currency": "CNY"}) }, 400, "invalid_amount", "amount", viaService},
		{"negative top-up", func() *reply { return h.post(teller, topups, map[string]any{"amount": -500, "currency": "CNY"}) }, 400, "invalid_amount", "amount", viaService},
		{"negative payment", func() *reply { return h.post(teller, "/v1/payments", payment(-1, "CNY", "SHOP", "", b)) }, 400, "invalid_amount", "amount", viaService},
		{"zero payment", func() *reply { return h.post(teller, "/v1/payments", payment(0, "CNY", "SHOP", "", b)) }, 400, "invalid_amount", "amount", viaService},
		{"wrong currency top-up", func() *reply { return h.post(teller, topups, map[string]any{"amount": 100, "currency": "USD"}) }, 400, "currency_mismatch", "currency", viaService},
		{"wrong currency payment", func() *reply { return h.post(teller, "/v1/payments", payment(100, "USD", "SHOP", "", b)) }, 400, "currency_mismatch", "currency", viaService},
		{"over the maximum balance", func() *reply { return h.post(teller, topups, map[string]any{"amount": 500000, "currency": "CNY"}) }, 422, "exceeds_max_balance", "amount", viaService},
		{"unknown card read", func() *reply { return h.get(teller, "/v1/cards/"+unknownCard) }, 404, "card_not_found", "number", []string{auditLog}},
		{"unknown card top-up", func() *reply {
			return h.post(teller, "/v1/cards/"+unknownCard+"/topups", map[string]any{"amount": 100, "currency": "CNY"})
		}, 404, "card_not_found", "card", viaService},
		{"unknown card payment", func() *reply { return h.post(teller, "/v1/payments", payment(100, "CNY", "SHOP", "", unknownCard)) }, 404, "card_not_found", "card", viaService},
		{"Luhn failure payment", func() *reply { return h.post(teller, "/v1/payments", payment(100, "CNY", "SHOP", "", badLuhn)) }, 400, "luhn_failed", "card", viaService},
		{"Luhn failure read", func() *reply { return h.get(teller, "/v1/cards/"+badLuhn) }, 400, "luhn_failed", "number", []string{auditLog}},
		{"Luhn failure loss", func() *reply { return h.post(teller, "/v1/cards/"+badLuhn+"/loss", nil) }, 400, "luhn_failed", "number", viaService},
		{"top-up of a replaced card", func() *reply {
			return h.post(teller, "/v1/cards/"+s.cardA+"/topups", map[string]any{"amount": 100, "currency": "CNY"})
		}, 409, "card_not_active", "card", viaService},
		{"unknown merchant", func() *reply { return h.post(teller, "/v1/payments", payment(100, "CNY", "NOPE", "", b)) }, 422, "merchant_not_found", "merchant", viaService},
		{"terminal of another merchant", func() *reply {
			return h.post(teller, "/v1/payments", payment(100, "CNY", "SHOP", "T-BUS-1", b))
		}, 422, "terminal_merchant_mismatch", "terminal", viaService},
		{"unknown channel", func() *reply {
			p := payment(100, "CNY", "SHOP", "", b)
			p["channel"] = "teleport"
			return h.post(teller, "/v1/payments", p)
		}, 422, "channel_not_allowed", "channel", viaService},
		{"unknown product", func() *reply {
			return h.post(teller, "/v1/cards", map[string]any{"holder": map[string]any{"name": "X", "id_type": "passport", "id_number": "E1"}, "product": "platinum"})
		}, 404, "product_not_found", "product", viaService},
		{"bad id type", func() *reply {
			return h.post(teller, "/v1/cards", map[string]any{"holder": map[string]any{"name": "X", "id_type": "library_card", "id_number": "E1"}})
		}, 400, "invalid_request", "holder.id_type", viaService},
		{"PIN of five digits", func() *reply { return h.post(teller, "/v1/cards/"+b+"/pin", map[string]any{"pin": "12345"}) }, 400, "pin_invalid_format", "pin", viaService},
		{"capture of an expired hold", func() *reply {
			return h.post(teller, "/v1/holds/"+expiring.str("id")+"/capture", map[string]any{"amount": 100})
		}, 409, "hold_expired", "hold", viaService},
		{"capture of a swept hold", func() *reply {
			return h.post(teller, "/v1/holds/"+s.expiredHold+"/capture", nil)
		}, 409, "hold_not_pending", "hold", viaService},
		{"void of a swept hold", func() *reply {
			return h.post(teller, "/v1/holds/"+s.expiredHold+"/void", nil)
		}, 409, "hold_not_pending", "hold", viaService},
		{"capture beyond the hold", func() *reply {
			return h.post(teller, "/v1/holds/"+small.str("id")+"/capture", map[string]any{"amount": 200})
		}, 400, "capture_exceeds_hold", "amount", viaService},
		{"capture of no hold", func() *reply { return h.post(teller, "/v1/holds/424242/capture", nil) }, 404, "hold_not_found", "hold", viaService},
		{"second reversal", func() *reply { return h.post(finance, "/v1/transfers/"+s.payment1+"/reverse", nil) }, 409, "already_reversed", "transfer", viaService},
		{"reversal of a reversal", func() *reply { return h.post(finance, "/v1/transfers/"+s.reversal1+"/reverse", nil) }, 409, "not_reversible", "transfer", viaService},
		{"idempotency key reused with another body", func() *reply {
			return h.postKey(teller, topups, "dup-key", map[string]any{"amount": 200, "currency": "CNY"})
		}, 422, "idempotency_conflict", "Idempotency-Key", nil},
		{"idempotency key reused on another card", func() *reply {
			return h.postKey(teller, "/v1/cards/"+s.cardA+"/topups", "dup-key", map[string]any{"amount": 100, "currency": "CNY"})
		}, 422, "idempotency_conflict", "Idempotency-Key", nil},
		{"same key, same body", func() *reply {
			// The same request, serialised differently.
			return h.req("POST", topups, h.tokens[teller], "{ \"currency\" : \"CNY\",\n \"amount\": 100 }", map[string]string{"Idempotency-Key": "dup-key"})
		}, 201, "", "", nil},
		{"missing Idempotency-Key", func() *reply {
			return h.req("POST", topups, h.tokens[teller], map[string]any{"amount": 100, "currency": "CNY"}, nil)
		}, 400, "idempotency_key_required", "Idempotency-Key", nil},
		{"missing token", func() *reply {
			return h.req("POST", topups, "", map[string]any{"amount": 100, "currency": "CNY"}, withKey)
		}, 401, "unauthorized", "Authorization", []string{auditLog}},
		{"wrong token", func() *reply {
			return h.req("POST", topups, "not-a-token", map[string]any{"amount": 100, "currency": "CNY"}, withKey)
		}, 401, "unauthorized", "Authorization", []string{auditLog}},
		{"not a bearer token", func() *reply {
			return h.req("GET", "/v1/cards/"+b, "", nil, map[string]string{"Authorization": "Basic dGVsbGVyOnB3"})
		}, 401, "unauthorized", "Authorization", []string{auditLog}},
		{"teller reversing", func() *reply { return h.post(teller, "/v1/transfers/"+s.reversal1+"/reverse", nil) }, 403, "forbidden", "", []string{auditLog}},
		{"auditor writing", func() *reply { return h.post(auditor, topups, map[string]any{"amount": 100, "currency": "CNY"}) }, 403, "forbidden", "", []string{auditLog}},
		{"risk issuing", func() *reply {
			return h.post(risk, "/v1/cards", map[string]any{"holder": map[string]any{"name": "X", "id_type": "passport", "id_number": "E1"}})
		}, 403, "forbidden", "", []string{auditLog}},
		{"body over 1 MiB", func() *reply {
			return h.post(teller, topups, `{"amount":100,"currency":"CNY","memo":"`+strings.Repeat("x", 1<<20)+`"}`)
		}, 413, "invalid_request", "", nil},
		{"merchant id taken with other fields", func() *reply {
			return h.post(finance, "/v1/merchants", map[string]any{"id": "SHOP", "name": "Another shop", "mcc": "5411", "settlement_account": "1"})
		}, 409, "duplicate", "id", []string{auditLog}},
		{"terminal id taken by another merchant", func() *reply {
			return h.post(finance, "/v1/terminals", map[string]any{"id": "T-SHOP-1", "merchant": "BUS"})
		}, 409, "duplicate", "id", []string{auditLog}},
		{"bad merchant category", func() *reply {
			return h.post(finance, "/v1/merchants", map[string]any{"id": "NEW", "name": "New", "mcc": "54", "settlement_account": "1"})
		}, 400, "invalid_request", "mcc", []string{auditLog}},
		{"method not allowed", func() *reply { return h.req("DELETE", "/v1/cards/"+b, h.tokens[admin], nil, nil) }, 405, "invalid_request", "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h.t = t
			before := h.snapshot()
			r := tc.send()
			if tc.code == "" {
				r.want(tc.status)
				if r.header.Get("Idempotent-Replayed") != "true" || string(r.raw) != string(first.raw) {
					t.Fatalf("replay: header %q, body %s, first answer %s", r.header.Get("Idempotent-Replayed"), r.raw, first.raw)
				}
			} else {
				p := r.problem(tc.status, tc.code, tc.field)
				if tc.code == "invalid_json" && !p.has("offset") {
					t.Fatalf("invalid_json without the byte offset: %s", r.raw)
				}
				if tc.status == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") == "" {
					t.Fatal("401 without WWW-Authenticate")
				}
			}
			if d := before.diff(h.snapshot(), tc.grows...); d != "" {
				t.Fatalf("the refused request changed the store: %s", d)
			}
		})
	}
	h.t = t
	// The holds the cases used are released, the balances are as before.
	h.post(teller, "/v1/holds/"+small.str("id")+"/void", nil).want(200)
	if n, err := h.app.Service().ExpireHolds(context.Background()); err != nil || n != 1 {
		t.Fatalf("ExpireHolds = %d, %v", n, err)
	}
	if p := h.get(teller, "/v1/cards/"+b).want(200).purse("cash"); p.int("pending") != 0 {
		t.Fatalf("holds left pending: %s", p.json())
	}
	s.wantBalances(t, b, map[string]int64{"cash": 13300, "welfare": 2000})
}
