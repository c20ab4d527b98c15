package schemas

import (
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// apiSamples holds one valid document for every api-*.json schema.
var apiSamples = map[string]string{
	"api-common": `{}`,
	"api-plugins": `{"plugins": [{"name": "utilities", "version": "1.0.0", "state": "running", "pid": 4242, "restarts": 1,
		"last_error": "process exited", "since": "2026-11-26T08:00:00Z", "channel": "utilities",
		"handles": ["utilities.bill.pay.v1"], "sends": ["card.payment.v1"]}]}`,
	"api-plugin-message-request": `{"type": "utilities.bill.query.v1", "payload": {"biller": "water", "account": "10020031"},
		"metadata": {"terminal": "counter-7"}}`,
	"api-plugin-message": `{"id": "0193a1b2-0000-7000-8000-000000000001", "replies": [{"id": "0193a1b2-0000-7000-8000-000000000002",
		"type": "utilities.bill.v1", "schema_id": "https://utilities.example/bill.json", "source": "utilities",
		"created_at": "2026-11-26T08:00:00Z", "payload": {"bill_id": "WATER-1"}}]}`,
	"api-dead-letters": `{"dead_letters": [{"id": 7, "topic": "hub.to-utilities.utilities.bill.pay.v1", "handler": "to-utilities-utilities_bill_pay_v1",
		"reason": "handler panicked", "message_uuid": "01JDX", "message": {"id": "m1"}, "metadata": {"correlation_id": "c1"},
		"at": "2026-11-26T08:00:00Z", "replayed_at": "2026-11-26T09:00:00Z"}]}`,
	"api-replay":         `{"id": 7, "replayed": true}`,
	"api-device-request": `{"id": "BUS-0001", "operator": "city-bus", "mode": "bus", "route": "15"}`,
	"api-device": `{"id": "BUS-0001", "operator": "city-bus", "merchant": "M-CITYBUS", "mode": "bus", "route": "15",
		"status": "active", "last_seq": 0, "created_at": "2026-11-26T08:00:00Z",
		"key": "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"}`,
	"api-devices": `{"devices": [{"id": "BUS-0001", "operator": "city-bus", "merchant": "M-CITYBUS", "status": "active",
		"last_seq": 12, "created_at": "2026-11-26T08:00:00Z"}]}`,
	"api-taps": `{"taps": [{"device": "BUS-0001", "seq": 1, "card": "3100990000000013", "at": "2026-11-26T08:00:00Z",
		"kind": "on", "route": "15", "offline": false, "status": "charged", "fare": 200, "balance": 800, "transfer": "12"}]}`,
	"api-denylist": `{"version": 42, "size": 3, "since": 40, "add": ["3100990000000013"], "remove": []}`,
	"api-issue-request": `{"holder": {"name": "Wang Fang", "id_type": "resident_id", "id_number": "310101199001011234",
		"phone": "+8613800000001"}, "product": "standard", "pin": "123456", "method": "cash"}`,
	"api-topup-request": `{"amount": 10000, "currency": "CNY", "purse": "cash", "method": "bank_card"}`,
	"api-payment-request": `{"card": "6200001234567890", "channel": "retail", "merchant": "SHOP", "terminal": "T-SHOP-1",
		"amount": 2500, "currency": "CNY", "pin": "123456"}`,
	"api-hold-request": `{"card": "6200001234567890", "channel": "retail", "merchant": "SHOP", "amount": 3000,
		"currency": "CNY", "expires_in": 600}`,
	"api-capture-request": `{"amount": 2000, "currency": "CNY"}`,
	"api-reverse-request": `{"memo": "goods returned"}`,
	"api-pin-request":     `{"pin": "654321"}`,
	"api-medical-reconciliation": `{"date": "2026-11-27", "plugin": "medical", "hub": {"count": 1, "fund_pay": 7000, "acct_pay": 1500, "cash_pay": 1500},
		"insurer": {"count": 1, "fund_pay": 7000, "acct_pay": 1500, "cash_pay": 1500}, "matched": true, "differences": [],
		"bills": [{"bill_id": "B1", "hospital": "M-HOSP", "setl_id": "ST1", "fund_pay": 7000, "acct_pay": 1500, "cash_pay": 1500}]}`,
	"api-bank-card-request": `{"pan": "6222021234567890128", "expiry": "3012"}`,
	"api-bank-card":         `{"card": "3100010000000013", "masked_pan": "622202*********0128", "last4": "0128", "linked_at": "2026-11-26T10:00:00Z"}`,
	"api-replace-request":   `{"method": "cash"}`,
	"api-empty-request":     `{}`,
	"api-merchant-request":  `{"id": "SHOP", "name": "Corner shop", "mcc": "5411", "fee_rate_bps": 60, "settlement_account": "6222000011112222"}`,
	"api-terminal-request":  `{"id": "T-SHOP-1", "merchant": "SHOP"}`,

	"api-card":   `{` + sampleCard + `}`,
	"api-issue":  `{` + sampleCard + `, "receipt": ` + sampleReceipt + `}`,
	"api-topup":  `{"receipt": ` + sampleReceipt + `, "purses": [{"purse": "cash", "posted": 10000, "pending": 0, "available": 10000}]}`,
	"api-cancel": `{` + sampleCard + `, "refund": 7000, "deposit_refunded": 2000, "balances_refunded": 5000, "debt_settled": 0, "unrefunded": 700, "receipt": ` + sampleReceipt + `}`,
	"api-replace": `{` + strings.Replace(sampleCard, `"replaces": "6200001234567882", `, "", 1) +
		`, "replaces": "6200001234567882", "moved": 13800, "receipt": ` + sampleReceipt + `}`,
	"api-payment": `{"id": "12", "status": "approved", "card": "6200001234567890", "channel": "retail", "merchant": "SHOP",
		"amount": 2500, "currency": "CNY", "legs": [{"purse": "cash", "amount": 2500}], "balance": 7500, "at": "2026-11-26T10:00:00Z"}`,
	"api-hold": `{"hold": "3", "status": "posted", "card": "6200001234567890", "merchant": "SHOP", "amount": 3000, "captured": 2000,
		"currency": "CNY", "transfer": "14", "legs": [{"purse": "cash", "amount": 2000}], "at": "2026-11-26T10:00:00Z"}`,
	"api-hold-view": `{"id": "3", "card": "6200001234567890", "merchant": "SHOP", "amount": 3000, "currency": "CNY", "captured": 0,
		"status": "pending", "expires_at": "2026-11-26T10:10:00Z", "updated_at": "2026-11-26T10:00:00Z"}`,
	"api-reverse": `{"id": "15", "reverses": "12", "kind": "reversal", "card": "6200001234567890", "amount": 2500, "currency": "CNY",
		"at": "2026-11-26T10:00:00Z"}`,
	"api-transfer": `{"id": "12", "batch": 4, "kind": "payment", "currency": "CNY", "card": "6200001234567890", "pending": false,
		"amount": 2500, "channel": "retail", "merchant": "SHOP", "at": "2026-11-26T10:00:00Z",
		"entries": [{"account": "cash:6200001234567890", "account_id": 7, "amount": 2500}, {"account": "merchant:SHOP", "account_id": 9, "amount": -2500}]}`,
	"api-trial-balance": `{"accounts": [{"code": "cash:outlets", "kind": "asset", "debits": 2000, "credits": 0}],
		"total_debits": 2000, "total_credits": 2000, "balanced": true}`,
	"api-merchant":  `{"id": "SHOP", "name": "Corner shop", "mcc": "5411", "fee_rate_bps": 60, "settlement_account": "6222000011112222", "created_at": "2026-11-26T10:00:00Z"}`,
	"api-merchants": `{"merchants": []}`,
	"api-terminal":  `{"id": "T-SHOP-1", "merchant": "SHOP", "created_at": "2026-11-26T10:00:00Z"}`,
	"api-terminals": `{"terminals": [{"id": "T-SHOP-1", "merchant": "SHOP", "created_at": "2026-11-26T10:00:00Z"}]}`,
	"api-products":  `{"products": [{"code": "standard"}]}`,
	"api-audit": `{"entries": [{"id": 1, "at": "2026-11-26T10:00:00Z", "operator": "teller1", "role": "teller",
		"action": "cards.issue", "outcome": "ok"}], "next_after": 1}`,
	"api-health": `{"status": "ready", "store": "sqlite"}`,
	"api-problem": `{"type": "https://citycard.example/problems/unknown_field", "title": "The request has a field this API does not know",
		"status": 400, "code": "unknown_field", "field": "holder.age", "iso8583": "30", "request_id": "abc",
		"instance": "/v1/cards", "detail": "unknown field \"holder.age\""}`,
}

const sampleCard = `"number": "6200001234567890", "status": "active", "product": "standard", "currency": "CNY",
	"holder": {"name": "Wang Fang", "id_type": "resident_id", "id_number_masked": "**************1234"},
	"purses": [{"purse": "cash", "posted": -300, "pending": 0, "available": -300}], "deposit": 2000, "balance": -300,
	"pin_set": true, "pin_locked": false, "replaces": "6200001234567882", "issued_at": "2026-11-26T10:00:00.123456789Z"`

const sampleReceipt = `{"number": "R0000000012", "at": "2026-11-26T10:00:00Z", "teller": "teller1", "kind": "topup",
	"card": "6200001234567890", "purse": "cash", "method": "cash", "amount": 10000, "currency": "CNY",
	"balance_after": 10000, "transfer": "12"}`

func apiNames(t *testing.T) []string {
	t.Helper()
	names, err := Names()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, "api-") {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		t.Fatal("no api-*.json schemas")
	}
	return out
}

// TestAPISchemasValidSamples compiles every api-*.json through Validate and
// checks that a realistic document passes, and that answers tolerate
// fields added later while requests refuse them.
func TestAPISchemasValidSamples(t *testing.T) {
	for _, name := range apiNames(t) {
		t.Run(name, func(t *testing.T) {
			sample, ok := apiSamples[name]
			if !ok {
				t.Fatalf("no sample for %s; add one to apiSamples", name)
			}
			if err := Validate(name, []byte(sample)); err != nil {
				t.Fatalf("sample: %v", err)
			}
			if name == "api-common" {
				return
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(sample), &m); err != nil {
				t.Fatal(err)
			}
			m["added_later"] = true
			b, _ := json.Marshal(m)
			err := Validate(name, b)
			if strings.HasSuffix(name, "-request") {
				var ve *ValidationError
				if !errors.As(err, &ve) || len(ve.Violations) != 1 ||
					ve.Violations[0] != (Violation{"/added_later", "unevaluatedProperties", ve.Violations[0].Message}) {
					t.Fatalf("a request with an unknown field: %v", err)
				}
			} else if err != nil {
				t.Fatalf("an answer with an extra field: %v", err)
			}
		})
	}
	for name := range apiSamples {
		if _, err := Source(name); err != nil {
			t.Errorf("sample for %s, which has no schema", name)
		}
	}
}

func TestAPIRequestSchemas(t *testing.T) {
	type want struct{ path, keyword string }
	edit := func(t *testing.T, name string, f func(m map[string]any)) []byte {
		t.Helper()
		d := jsonDecoder(apiSamples[name])
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	set := func(k string, v any) func(map[string]any) { return func(m map[string]any) { m[k] = v } }
	del := func(k string) func(map[string]any) { return func(m map[string]any) { delete(m, k) } }
	holder := func(f func(map[string]any)) func(map[string]any) {
		return func(m map[string]any) { f(m["holder"].(map[string]any)) }
	}
	cases := []struct {
		name   string
		schema string
		edit   func(map[string]any)
		want   []want
	}{
		{"issue minimal", "api-issue-request", func(m map[string]any) {
			delete(m, "product")
			delete(m, "pin")
			delete(m, "method")
			delete(m["holder"].(map[string]any), "phone")
		}, nil},
		{"issue passport", "api-issue-request", holder(set("id_type", "passport")), nil},
		{"issue military id", "api-issue-request", holder(set("id_type", "military_id")), nil},
		{"issue no holder", "api-issue-request", del("holder"), []want{{"", "required"}}},
		{"issue holder without name", "api-issue-request", holder(del("name")), []want{{"/holder", "required"}}},
		{"issue blank name", "api-issue-request", holder(set("name", "  ")), []want{{"/holder/name", "pattern"}}},
		{"issue driving licence", "api-issue-request", holder(set("id_type", "driving_licence")), []want{{"/holder/id_type", "enum"}}},
		{"issue unknown holder field", "api-issue-request", holder(set("age", 30)), []want{{"/holder/age", "unevaluatedProperties"}}},
		{"issue 4-digit pin", "api-issue-request", set("pin", "1234"), []want{{"/pin", "pattern"}}},
		{"issue numeric pin", "api-issue-request", set("pin", 123456), []want{{"/pin", "type"}}},
		{"issue method cheque", "api-issue-request", set("method", "cheque"), []want{{"/method", "enum"}}},

		{"topup defaults", "api-topup-request", func(m map[string]any) { delete(m, "purse"); delete(m, "method") }, nil},
		{"topup zero", "api-topup-request", set("amount", 0), []want{{"/amount", "minimum"}}},
		{"topup negative", "api-topup-request", set("amount", -100), []want{{"/amount", "minimum"}}},
		{"topup fraction", "api-topup-request", set("amount", 10.5), []want{{"/amount", "type"}}},
		{"topup amount as string", "api-topup-request", set("amount", "100"), []want{{"/amount", "type"}}},
		{"topup lowercase currency", "api-topup-request", set("currency", "cny"), []want{{"/currency", "pattern"}}},
		{"topup no currency", "api-topup-request", del("currency"), []want{{"", "required"}}},
		{"topup card in body", "api-topup-request", set("card", "6200001234567890"), []want{{"/card", "unevaluatedProperties"}}},

		{"payment without terminal and pin", "api-payment-request", func(m map[string]any) { delete(m, "terminal"); delete(m, "pin") }, nil},
		{"payment 19-digit card", "api-payment-request", set("card", "6200001234567890123"), nil},
		{"payment 15-digit card", "api-payment-request", set("card", "620000123456789"), []want{{"/card", "pattern"}}},
		{"payment 20-digit card", "api-payment-request", set("card", "62000012345678901234"), []want{{"/card", "pattern"}}},
		{"payment card with spaces", "api-payment-request", set("card", "6200 0012 3456 7890"), []want{{"/card", "pattern"}}},
		{"payment channel atm", "api-payment-request", set("channel", "atm"), []want{{"/channel", "enum"}}},
		{"payment each channel", "api-payment-request", set("channel", "utilities"), nil},
		{"payment zero", "api-payment-request", set("amount", 0), []want{{"/amount", "minimum"}}},
		{"payment 7-digit pin", "api-payment-request", set("pin", "1234567"), []want{{"/pin", "pattern"}}},
		{"payment no merchant", "api-payment-request", del("merchant"), []want{{"", "required"}}},
		{"payment expires_in", "api-payment-request", set("expires_in", 60), []want{{"/expires_in", "unevaluatedProperties"}}},

		{"hold zero expiry", "api-hold-request", set("expires_in", 0), []want{{"/expires_in", "minimum"}}},
		{"hold bad channel", "api-hold-request", set("channel", "Retail"), []want{{"/channel", "enum"}}},
		{"hold no card", "api-hold-request", del("card"), []want{{"", "required"}}},

		{"capture whole hold", "api-capture-request", func(m map[string]any) { clear(m) }, nil},
		{"capture negative", "api-capture-request", set("amount", -1), []want{{"/amount", "minimum"}}},
		{"capture hold id in body", "api-capture-request", set("hold", 3), []want{{"/hold", "unevaluatedProperties"}}},

		{"reverse memo number", "api-reverse-request", set("memo", 7), []want{{"/memo", "type"}}},
		{"reverse no memo", "api-reverse-request", del("memo"), nil},

		{"pin missing", "api-pin-request", del("pin"), []want{{"", "required"}}},
		{"bank card letters", "api-bank-card-request", set("pan", "6222x"), []want{{"/pan", "pattern"}}},
		{"bank card month 13", "api-bank-card-request", set("expiry", "3013"), []want{{"/expiry", "pattern"}}},
		{"pin letters", "api-pin-request", set("pin", "12345a"), []want{{"/pin", "pattern"}}},
		{"pin old pin", "api-pin-request", set("old_pin", "123456"), []want{{"/old_pin", "unevaluatedProperties"}}},

		{"replace bank card", "api-replace-request", set("method", "bank_card"), nil},
		{"replace method empty", "api-replace-request", set("method", ""), []want{{"/method", "enum"}}},

		{"empty with a field", "api-empty-request", set("reason", "stolen"), []want{{"/reason", "unevaluatedProperties"}}},

		{"merchant fee 10000", "api-merchant-request", set("fee_rate_bps", 10000), nil},
		{"merchant fee over 100%", "api-merchant-request", set("fee_rate_bps", 10001), []want{{"/fee_rate_bps", "maximum"}}},
		{"merchant 3-digit mcc", "api-merchant-request", set("mcc", "541"), []want{{"/mcc", "pattern"}}},
		{"merchant id with space", "api-merchant-request", set("id", "MY SHOP"), []want{{"/id", "pattern"}}},
		{"merchant no settlement", "api-merchant-request", del("settlement_account"), []want{{"", "required"}}},

		{"terminal no merchant", "api-terminal-request", del("merchant"), []want{{"", "required"}}},
		{"terminal id too long", "api-terminal-request", set("id", strings.Repeat("T", 65)), []want{{"/id", "pattern"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.schema, edit(t, tc.schema, tc.edit))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want *ValidationError, got %T %v", err, err)
			}
			var got []want
			for _, v := range ve.Violations {
				got = append(got, want{v.InstancePath, v.Keyword})
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("violations = %+v, want %+v", ve.Violations, tc.want)
			}
		})
	}
}

func TestAPIRequestNotObject(t *testing.T) {
	for _, name := range apiNames(t) {
		if !strings.HasSuffix(name, "-request") {
			continue
		}
		var ve *ValidationError
		if err := Validate(name, []byte(`[]`)); !errors.As(err, &ve) || ve.Violations[0].Keyword != "type" {
			t.Errorf("%s: a JSON array: %v", name, err)
		}
	}
}

// The OpenAPI document describes the routes the hub registers.
var routeCall = regexp.MustCompile(`s\.(?:handle|plain)\("(GET|POST) (/[^"]*)"`)

func loadOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := jsonDecoder(string(b)).Decode(&doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return doc
}

func TestOpenAPIRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Errorf("openapi = %q, want 3.1.x", v)
	}
	var src []byte
	for _, f := range []string{"../hub/internal/api/api.go", "../hub/internal/api/plugins.go", "../hub/internal/api/transit.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src = append(src, b...)
	}
	routes := routeCall.FindAllStringSubmatch(string(src), -1)
	if len(routes) < 20 {
		t.Fatalf("found only %d routes in hub/internal/api", len(routes))
	}
	paths, _ := doc["paths"].(map[string]any)
	documented := 0
	for _, p := range paths {
		for m := range p.(map[string]any) {
			if m == "get" || m == "post" {
				documented++
			}
		}
	}
	if documented != len(routes) {
		t.Errorf("openapi.json has %d operations, the hub %d routes", documented, len(routes))
	}
	for _, r := range routes {
		method, path := strings.ToLower(r[1]), r[2]
		item, ok := paths[path].(map[string]any)
		if !ok {
			t.Errorf("%s %s: no path in openapi.json", r[1], path)
			continue
		}
		op, ok := item[method].(map[string]any)
		if !ok {
			t.Errorf("%s %s: no operation in openapi.json", r[1], path)
			continue
		}
		v1 := strings.HasPrefix(path, "/v1/")
		sec, hasSec := op["security"].([]any)
		if v1 == (hasSec && len(sec) == 0) {
			t.Errorf("%s %s: security %v; /v1 needs the bearer token and nothing else does", r[1], path, op["security"])
		}
		write := method == "post"
		if got := hasIdempotencyKey(op); got != write {
			t.Errorf("%s %s: Idempotency-Key parameter %v, want %v", r[1], path, got, write)
		}
		if write {
			body, _ := op["requestBody"].(map[string]any)
			if ref := jsonSchemaRef(body); !strings.HasSuffix(ref, "-request.json") {
				t.Errorf("%s %s: request body schema %q", r[1], path, ref)
			}
		}
		responses, _ := op["responses"].(map[string]any)
		ok2xx := false
		for code, resp := range responses {
			n, _ := strconv.Atoi(code)
			if n >= 200 && n < 300 {
				ok2xx = true
				if path != "/metrics" && !strings.HasPrefix(jsonSchemaRef(resp.(map[string]any)), BaseURL+"api-") {
					t.Errorf("%s %s: %s answer does not reference an api-*.json schema", r[1], path, code)
				}
			}
		}
		if !ok2xx {
			t.Errorf("%s %s: no 2xx answer", r[1], path)
		}
		if v1 && responses["default"] == nil {
			t.Errorf("%s %s: no default (problem) answer", r[1], path)
		}
		// Path parameters are declared.
		for _, name := range regexp.MustCompile(`\{(\w+)\}`).FindAllStringSubmatch(path, -1) {
			if !hasPathParam(doc, op, name[1]) {
				t.Errorf("%s %s: path parameter %s not declared", r[1], path, name[1])
			}
		}
	}
	schemesOK := false
	if c, _ := doc["components"].(map[string]any); c != nil {
		if ss, _ := c["securitySchemes"].(map[string]any); ss != nil {
			if b, _ := ss["bearerAuth"].(map[string]any); b != nil && b["type"] == "http" && b["scheme"] == "bearer" {
				schemesOK = true
			}
		}
		problem := resolvePointer(doc, "/components/responses/Problem/content/application~1problem+json/schema/$ref")
		if problem != BaseURL+"api-problem.json" {
			t.Errorf("problem answers reference %v, want api-problem.json as application/problem+json", problem)
		}
	}
	if !schemesOK {
		t.Error("no bearer security scheme bearerAuth")
	}
}

// TestOpenAPIRefs checks that every $ref resolves: within the document, or
// to an embedded schema (and the fragment within it).
func TestOpenAPIRefs(t *testing.T) {
	doc := loadOpenAPI(t)
	refs := 0
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "$ref" {
					refs++
					checkRef(t, doc, x)
					continue
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	if refs == 0 {
		t.Fatal("no $ref in openapi.json")
	}
}

func checkRef(t *testing.T, doc map[string]any, v any) {
	t.Helper()
	ref, ok := v.(string)
	if !ok {
		t.Errorf("$ref %v is not a string", v)
		return
	}
	file, frag, _ := strings.Cut(ref, "#")
	if file == "" {
		if resolvePointer(doc, frag) == nil {
			t.Errorf("$ref %s does not resolve in openapi.json", ref)
		}
		return
	}
	name, ok := strings.CutPrefix(file, BaseURL)
	if !ok || !strings.HasSuffix(name, ".json") {
		t.Errorf("$ref %s is not a schema under %s", ref, BaseURL)
		return
	}
	name = strings.TrimSuffix(name, ".json")
	src, err := Source(name)
	if err != nil {
		t.Errorf("$ref %s: %v", ref, err)
		return
	}
	if frag != "" {
		var s map[string]any
		if err := json.Unmarshal(src, &s); err != nil {
			t.Fatal(err)
		}
		if resolvePointer(s, frag) == nil {
			t.Errorf("$ref %s: no %s in %s.json", ref, frag, name)
		}
	}
}

// resolvePointer follows a JSON pointer; nil if it leads nowhere.
func resolvePointer(v any, ptr string) any {
	if ptr == "" {
		return v
	}
	if !strings.HasPrefix(ptr, "/") {
		return nil
	}
	for _, tok := range strings.Split(ptr[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch x := v.(type) {
		case map[string]any:
			v = x[tok]
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
		if v == nil {
			return nil
		}
	}
	return v
}

// jsonSchemaRef is the schema $ref of an application/json content map.
func jsonSchemaRef(withContent map[string]any) string {
	ref, _ := resolvePointer(withContent, "/content/application~1json/schema/$ref").(string)
	return ref
}

func params(doc, op map[string]any) []map[string]any {
	var out []map[string]any
	list, _ := op["parameters"].([]any)
	for _, p := range list {
		m, _ := p.(map[string]any)
		if ref, ok := m["$ref"].(string); ok {
			m, _ = resolvePointer(doc, strings.TrimPrefix(ref, "#")).(map[string]any)
		}
		if m != nil {
			out = append(out, m)
		}
	}
	return out
}

func hasIdempotencyKey(op map[string]any) bool {
	list, _ := op["parameters"].([]any)
	for _, p := range list {
		if m, _ := p.(map[string]any); m["$ref"] == "#/components/parameters/IdempotencyKey" {
			return true
		}
	}
	return false
}

func hasPathParam(doc, op map[string]any, name string) bool {
	for _, p := range params(doc, op) {
		if p["in"] == "path" && p["name"] == name && p["required"] == true {
			return true
		}
	}
	return false
}

func jsonDecoder(s string) *json.Decoder {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	return d
}
