package api_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/citycard/citycard/hub/internal/pin"
	"github.com/citycard/citycard/hub/internal/store/storetest"
	"github.com/citycard/citycard/schemas"
)

// TestAnswersMatchSchemas drives every /v1 route once and checks each
// request against its api-*-request.json schema and each answer, success
// or problem, against the answer schema openapi.json names for it, so the
// published schemas cannot drift from the structs the hub marshals.
func TestAnswersMatchSchemas(t *testing.T) {
	t.Cleanup(pin.SetCostForTesting(1, 8))
	h := newHarness(t, storetest.OpenSQLite(t))

	valid := func(t *testing.T, what, schema string, raw []byte) {
		t.Helper()
		if err := schemas.Validate(schema, raw); err != nil {
			t.Fatalf("%s: %v\n%s", what, err, raw)
		}
	}
	// send validates body against reqSchema, sends it and validates the
	// answer against ansSchema.
	send := func(t *testing.T, role, method, path, reqSchema string, body any, status int, ansSchema string) doc {
		t.Helper()
		h.t = t
		if reqSchema != "" {
			raw := []byte("{}")
			if body != nil {
				var err error
				if raw, err = json.Marshal(body); err != nil {
					t.Fatal(err)
				}
			}
			valid(t, "request "+method+" "+path, reqSchema, raw)
		}
		var r *reply
		switch {
		case role == "":
			r = h.req(method, path, "", body, nil)
		case method == "POST":
			r = h.post(role, path, body)
		default:
			r = h.get(role, path)
		}
		d := r.want(status)
		valid(t, "answer to "+r.req, ansSchema, r.raw)
		return d
	}

	send(t, "", "GET", "/healthz", "", nil, 200, "api-health")
	send(t, "", "GET", "/readyz", "", nil, 200, "api-health")

	send(t, finance, "POST", "/v1/merchants", "api-merchant-request", map[string]any{"id": "SHOP", "name": "Corner shop",
		"mcc": "5411", "fee_rate_bps": 60, "settlement_account": "6222000011112222"}, 201, "api-merchant")
	send(t, teller, "GET", "/v1/merchants", "", nil, 200, "api-merchants")
	send(t, teller, "GET", "/v1/merchants/SHOP", "", nil, 200, "api-merchant")
	send(t, finance, "POST", "/v1/terminals", "api-terminal-request", map[string]any{"id": "T-SHOP-1", "merchant": "SHOP"}, 201, "api-terminal")
	send(t, teller, "GET", "/v1/terminals?merchant=SHOP", "", nil, 200, "api-terminals")

	card := send(t, teller, "POST", "/v1/cards", "api-issue-request", map[string]any{
		"holder": map[string]any{"name": "Wang Fang", "id_type": "resident_id", "id_number": "310101199001011234", "phone": "+8613800000001"},
		"pin":    "123456", "method": "cash",
	}, 201, "api-issue").str("number")
	cards := "/v1/cards/" + card
	send(t, teller, "GET", cards, "", nil, 200, "api-card")
	send(t, teller, "POST", cards+"/topups", "api-topup-request", map[string]any{"amount": 20000, "currency": "CNY", "purse": "cash"}, 201, "api-topup")

	pay := map[string]any{"card": card, "channel": "retail", "merchant": "SHOP", "terminal": "T-SHOP-1", "amount": 2500, "currency": "CNY"}
	paid := send(t, teller, "POST", "/v1/payments", "api-payment-request", pay, 201, "api-payment")
	if paid.str("status") != "approved" {
		t.Fatalf("payment %s", paid.json())
	}
	big := map[string]any{"card": card, "channel": "retail", "merchant": "SHOP", "amount": 19000, "currency": "CNY", "pin": "123456"}
	if d := send(t, teller, "POST", "/v1/payments", "api-payment-request", big, 201, "api-payment"); d.str("status") != "declined" {
		t.Fatalf("payment past the balance %s", d.json())
	}

	hold := map[string]any{"card": card, "channel": "retail", "merchant": "SHOP", "amount": 3000, "currency": "CNY", "expires_in": 600}
	h1 := send(t, teller, "POST", "/v1/holds", "api-hold-request", hold, 201, "api-payment").str("id")
	send(t, auditor, "GET", "/v1/holds/"+h1, "", nil, 200, "api-hold-view")
	send(t, teller, "POST", "/v1/holds/"+h1+"/capture", "api-capture-request", map[string]any{"amount": 2000, "currency": "CNY"}, 200, "api-hold")
	hold["amount"] = 500
	h2 := send(t, teller, "POST", "/v1/holds", "api-hold-request", hold, 201, "api-payment").str("id")
	send(t, teller, "POST", "/v1/holds/"+h2+"/void", "api-empty-request", nil, 200, "api-hold")

	send(t, auditor, "GET", "/v1/transfers/"+paid.str("id"), "", nil, 200, "api-transfer")
	rev := send(t, finance, "POST", "/v1/transfers/"+paid.str("id")+"/reverse", "api-reverse-request",
		map[string]any{"memo": "goods returned"}, 201, "api-reverse")
	send(t, auditor, "GET", "/v1/transfers/"+rev.str("id"), "", nil, 200, "api-transfer")

	send(t, teller, "POST", cards+"/pin", "api-pin-request", map[string]any{"pin": "654321"}, 200, "api-card")
	send(t, risk, "POST", cards+"/freeze", "api-empty-request", nil, 200, "api-card")
	send(t, risk, "POST", cards+"/unfreeze", "api-empty-request", map[string]any{}, 200, "api-card")
	send(t, teller, "POST", cards+"/loss", "api-empty-request", nil, 200, "api-card")
	repl := send(t, teller, "POST", cards+"/replace", "api-replace-request", map[string]any{"method": "cash"}, 201, "api-replace")
	send(t, teller, "GET", cards, "", nil, 200, "api-card") // the replaced card
	send(t, teller, "POST", "/v1/cards/"+repl.str("number")+"/cancel", "api-empty-request", nil, 200, "api-cancel")

	send(t, auditor, "GET", "/v1/products", "", nil, 200, "api-products")
	send(t, finance, "GET", "/v1/ledger/trial-balance", "", nil, 200, "api-trial-balance")
	send(t, admin, "GET", "/v1/audit?limit=5", "", nil, 200, "api-audit")

	// Problems, including the members only some carry (field, offset).
	h.t = t
	problems := []*reply{
		h.req("GET", "/v1/products", "", nil, nil),
		h.get(teller, "/v1/audit"),
		h.get(teller, "/v1/cards/6200000000000000"),
		h.get(teller, "/v1/nowhere"),
		h.post(teller, "/v1/payments", `{"card": `),
		h.post(teller, "/v1/cards/"+card+"/topups", map[string]any{"amount": 0, "currency": "CNY"}),
	}
	unknown := map[string]any{"holder": map[string]any{"name": "A", "id_type": "passport", "id_number": "E1", "age": 30}}
	problems = append(problems, h.post(teller, "/v1/cards", unknown))
	for _, r := range problems {
		if r.status < 400 {
			t.Fatalf("%s: status %d: %s", r.req, r.status, r.raw)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: Content-Type %q", r.req, ct)
		}
		valid(t, "problem from "+r.req, "api-problem", r.raw)
	}
	// What the API refuses as an unknown field, the schema refuses too.
	b, _ := json.Marshal(unknown)
	var ve *schemas.ValidationError
	if err := schemas.Validate("api-issue-request", b); !errors.As(err, &ve) || ve.Violations[0].InstancePath != "/holder/age" {
		t.Errorf("api-issue-request accepts an unknown holder field: %v", err)
	}
}
