package schemas

import (
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

var (
	snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	isoCode   = regexp.MustCompile(`^[0-9A-Z]{2}$`)
)

func TestRegistry(t *testing.T) {
	defs := Errors()
	if len(defs) == 0 {
		t.Fatal("empty registry")
	}
	seen := map[string]bool{}
	for _, d := range defs {
		if seen[d.Code] {
			t.Errorf("%s: duplicate code", d.Code)
		}
		seen[d.Code] = true
		if !snakeCase.MatchString(d.Code) {
			t.Errorf("%s: code is not snake_case", d.Code)
		}
		if http.StatusText(d.HTTPStatus) == "" {
			t.Errorf("%s: %d is not an HTTP status", d.Code, d.HTTPStatus)
		}
		switch d.Kind {
		case KindDecline:
			if d.HTTPStatus != http.StatusOK {
				t.Errorf("%s: a decline answers 200, not %d", d.Code, d.HTTPStatus)
			}
		case KindError:
			if d.HTTPStatus < 400 {
				t.Errorf("%s: an error needs a 4xx or 5xx status, not %d", d.Code, d.HTTPStatus)
			}
		default:
			t.Errorf("%s: kind %q", d.Code, d.Kind)
		}
		if !isoCode.MatchString(d.ISO8583) {
			t.Errorf("%s: iso8583 %q is not a 2-character response code", d.Code, d.ISO8583)
		}
		if d.ISO8583 == "00" {
			t.Errorf("%s: iso8583 00 means approved", d.Code)
		}
		if strings.TrimSpace(d.Title) == "" {
			t.Errorf("%s: empty title", d.Code)
		}
		got, ok := LookupError(d.Code)
		if !ok || got != d {
			t.Errorf("LookupError(%q) = %+v, %v", d.Code, got, ok)
		}
	}
	if _, ok := LookupError("no_such_code"); ok {
		t.Error("LookupError found an unknown code")
	}
	if err := Validate("error-registry", RegistrySource()); err != nil {
		t.Errorf("errors.json breaks error-registry.json: %v", err)
	}
}

func TestErrorsReturnsCopy(t *testing.T) {
	a := Errors()
	a[0].Code = "mutated"
	if Errors()[0].Code == "mutated" {
		t.Error("Errors exposes the registry's backing array")
	}
}

func TestSchemasCompile(t *testing.T) {
	if err := Compile(); err != nil {
		t.Fatal(err)
	}
	names, err := Names()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"card-product", "channel-policy", "error-registry"} {
		if !slices.Contains(names, want) {
			t.Errorf("Names() = %v, missing %s", names, want)
		}
	}
	for _, name := range names {
		src, err := Source(name)
		if err != nil {
			t.Fatal(err)
		}
		var head struct {
			Schema string `json:"$schema"`
			ID     string `json:"$id"`
		}
		if err := json.Unmarshal(src, &head); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if head.Schema != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s: $schema = %q", name, head.Schema)
		}
		if head.ID != BaseURL+name+".json" {
			t.Errorf("%s: $id = %q, want %q", name, head.ID, BaseURL+name+".json")
		}
	}
	if _, err := Source("errors"); !errors.Is(err, ErrUnknownSchema) {
		t.Errorf("Source(errors) = %v, want ErrUnknownSchema", err)
	}
}

const validProduct = `{
  "code": "standard", "name": "Named citizen card", "named": true, "currency": "CNY",
  "deposit": 2000, "max_balance": 500000, "concession": "none",
  "purses": [
    {"name": "cash", "refundable": true, "negative_limit": 500, "expires_after_days": 0},
    {"name": "welfare", "refundable": false, "expires_after_days": 270}
  ],
  "purse_order": {"welfare": ["welfare"], "transit": ["cash"]}
}`

const validPolicy = `{
  "channel": "retail", "accepts": ["city_card", "bank_card"], "purses": ["cash"],
  "purse_order": ["cash"], "pin": {"required": "above", "threshold": 20000},
  "max_amount": 500000, "allow_negative": false, "currency": "CNY"
}`

// edit applies a change to a valid document so each case shows only what it breaks.
func edit(t *testing.T, doc string, change func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	change(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestValidate(t *testing.T) {
	type want struct{ path, keyword string }
	cases := []struct {
		name   string
		schema string
		doc    func(t *testing.T) []byte
		want   []want // nil: valid
	}{
		{"product valid", "card-product", func(t *testing.T) []byte { return []byte(validProduct) }, nil},
		{"product minimal", "card-product", func(t *testing.T) []byte {
			return []byte(`{"code":"anon","name":"A","named":false,"currency":"CNY","deposit":0,"max_balance":1,"purses":[{"name":"cash","refundable":true}]}`)
		}, nil},
		{"product missing code", "card-product", func(t *testing.T) []byte {
			return edit(t, validProduct, func(m map[string]any) { delete(m, "code") })
		}, []want{{"", "required"}}},
		{"product unknown field", "card-product", func(t *testing.T) []byte {
			return edit(t, validProduct, func(m map[string]any) { m["colour"] = "red" })
		}, []want{{"/colour", "unevaluatedProperties"}}},
		{"purse unknown field", "card-product", func(t *testing.T) []byte {
			return edit(t, validProduct, func(m map[string]any) {
				m["purses"].([]any)[1].(map[string]any)["colour"] = "red"
			})
		}, []want{{"/purses/1/colour", "unevaluatedProperties"}}},
		{"negative deposit", "card-product", func(t *testing.T) []byte {
			return edit(t, validProduct, func(m map[string]any) { m["deposit"] = -1 })
		}, []want{{"/deposit", "minimum"}}},
		{"fractional money", "card-product", func(t *testing.T) []byte {
			return edit(t, validProduct, func(m map[string]any) { m["max_balance"] = 12.5 })
		}, []want{{"/max_balance", "type"}}},
		{"money as string", "card-product", func(t *testing.T) []byte {
			return edit(t, validProduct, func(m map[string]any) { m["deposit"] = "2000" })
		}, []want{{"/deposit", "type"}}},
		{"bad code", "card-product", func(t *testing.T) []byte {
			return edit(t, validProduct, func(m map[string]any) { m["code"] = "Standard" })
		}, []want{{"/code", "pattern"}}},
		{"bad purse name", "card-product", func(t *testing.T) []byte {
			return edit(t, validProduct, func(m map[string]any) {
				m["purses"].([]any)[0].(map[string]any)["name"] = "c"
			})
		}, []want{{"/purses/0/name", "pattern"}}},
		{"purse missing refundable", "card-product", func(t *testing.T) []byte {
			return edit(t, validProduct, func(m map[string]any) {
				delete(m["purses"].([]any)[0].(map[string]any), "refundable")
			})
		}, []want{{"/purses/0", "required"}}},
		{"no purses", "card-product", func(t *testing.T) []byte {
			return edit(t, validProduct, func(m map[string]any) { m["purses"] = []any{} })
		}, []want{{"/purses", "minItems"}}},
		{"unknown concession", "card-product", func(t *testing.T) []byte {
			return edit(t, validProduct, func(m map[string]any) { m["concession"] = "veteran" })
		}, []want{{"/concession", "enum"}}},
		{"purse_order unknown channel", "card-product", func(t *testing.T) []byte {
			return edit(t, validProduct, func(m map[string]any) {
				m["purse_order"].(map[string]any)["bus"] = []any{"cash"}
			})
		}, []want{{"/purse_order/bus", "enum"}}},
		{"purse_order repeats a purse", "card-product", func(t *testing.T) []byte {
			return edit(t, validProduct, func(m map[string]any) {
				m["purse_order"].(map[string]any)["transit"] = []any{"cash", "cash"}
			})
		}, []want{{"/purse_order/transit", "uniqueItems"}}},
		{"two violations", "card-product", func(t *testing.T) []byte {
			return edit(t, validProduct, func(m map[string]any) {
				m["deposit"] = -5
				m["currency"] = "cny"
			})
		}, []want{{"/currency", "pattern"}, {"/deposit", "minimum"}}},

		{"policy valid", "channel-policy", func(t *testing.T) []byte { return []byte(validPolicy) }, nil},
		{"policy pin never", "channel-policy", func(t *testing.T) []byte {
			return edit(t, validPolicy, func(m map[string]any) { m["pin"] = map[string]any{"required": "never"} })
		}, nil},
		{"policy above without threshold", "channel-policy", func(t *testing.T) []byte {
			return edit(t, validPolicy, func(m map[string]any) { m["pin"] = map[string]any{"required": "above"} })
		}, []want{{"/pin", "required"}}},
		{"policy pin unknown rule", "channel-policy", func(t *testing.T) []byte {
			return edit(t, validPolicy, func(m map[string]any) { m["pin"] = map[string]any{"required": "sometimes"} })
		}, []want{{"/pin/required", "enum"}}},
		{"policy unknown channel", "channel-policy", func(t *testing.T) []byte {
			return edit(t, validPolicy, func(m map[string]any) { m["channel"] = "casino" })
		}, []want{{"/channel", "enum"}}},
		{"policy unknown card kind", "channel-policy", func(t *testing.T) []byte {
			return edit(t, validPolicy, func(m map[string]any) { m["accepts"] = []any{"city_card", "amex"} })
		}, []want{{"/accepts/1", "enum"}}},
		{"policy zero max", "channel-policy", func(t *testing.T) []byte {
			return edit(t, validPolicy, func(m map[string]any) { m["max_amount"] = 0 })
		}, []want{{"/max_amount", "minimum"}}},
		{"policy unknown field in pin", "channel-policy", func(t *testing.T) []byte {
			return edit(t, validPolicy, func(m map[string]any) {
				m["pin"].(map[string]any)["tries"] = 3
			})
		}, []want{{"/pin/tries", "unevaluatedProperties"}}},
		{"policy missing allow_negative", "channel-policy", func(t *testing.T) []byte {
			return edit(t, validPolicy, func(m map[string]any) { delete(m, "allow_negative") })
		}, []want{{"", "required"}}},
		{"not an object", "channel-policy", func(t *testing.T) []byte { return []byte(`[]`) }, []want{{"", "type"}}},

		{"registry decline with 402", "error-registry", func(t *testing.T) []byte {
			return []byte(`[{"code":"x_y","kind":"decline","http_status":402,"iso8583":"51","retryable":false,"title":"t"}]`)
		}, []want{{"/0/http_status", "const"}}},
		{"registry retryable decline", "error-registry", func(t *testing.T) []byte {
			return []byte(`[{"code":"x_y","kind":"decline","http_status":200,"iso8583":"51","retryable":true,"title":"t"}]`)
		}, []want{{"/0/retryable", "const"}}},
		{"registry entry without retryable", "error-registry", func(t *testing.T) []byte {
			return []byte(`[{"code":"x_y","kind":"error","http_status":503,"iso8583":"91","title":"t"}]`)
		}, []want{{"/0", "required"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.schema, tc.doc(t))
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
			if ve.Schema != tc.schema {
				t.Errorf("Schema = %q", ve.Schema)
			}
			var got []want
			for _, v := range ve.Violations {
				got = append(got, want{v.InstancePath, v.Keyword})
				if v.Message == "" {
					t.Errorf("%+v: empty message", v)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("violations = %+v, want %+v", ve.Violations, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("violation %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestValidateNotJSON(t *testing.T) {
	cases := []struct {
		name string
		doc  string
	}{
		{"empty", ""},
		{"truncated", `{"code":`},
		{"trailing data", `{} {}`},
		{"trailing garbage", `{}x`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate("card-product", []byte(tc.doc))
			if !errors.Is(err, ErrInvalidJSON) {
				t.Fatalf("got %v, want ErrInvalidJSON", err)
			}
		})
	}
}

func TestValidateUnknownSchema(t *testing.T) {
	for _, name := range []string{"nope", "errors", "../card-product", ""} {
		if err := Validate(name, []byte(`{}`)); !errors.Is(err, ErrUnknownSchema) {
			t.Errorf("Validate(%q) = %v, want ErrUnknownSchema", name, err)
		}
	}
}

func TestKeyword(t *testing.T) {
	cases := []struct{ loc, want string }{
		{"/required", "required"},
		{"/properties/purses/items/$ref/properties/name/pattern", "pattern"},
		{"/properties/minimum", "properties"},
		{"/properties/minimum/type", "type"},
		{"/allOf/1/minItems", "minItems"},
		{"/dependentRequired/a/0", "dependentRequired"},
		{"/properties/pin/$ref/then/required", "required"},
		{"/unevaluatedProperties", "unevaluatedProperties"},
		{"", ""},
	}
	for _, tc := range cases {
		if got := keyword(tc.loc); got != tc.want {
			t.Errorf("keyword(%q) = %q, want %q", tc.loc, got, tc.want)
		}
	}
}

func TestValidationErrorMessage(t *testing.T) {
	one := &ValidationError{Schema: "s", Violations: []Violation{{"/a", "minimum", "must be >= 0 but found -1"}}}
	if got, want := one.Error(), "schemas: s: 1 violation: /a: minimum: must be >= 0 but found -1"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	many := &ValidationError{Schema: "s"}
	for range 7 {
		many.Violations = append(many.Violations, Violation{"", "required", "missing properties: 'x'"})
	}
	got := many.Error()
	if !strings.HasPrefix(got, "schemas: s: 7 violations: /: required:") || !strings.HasSuffix(got, "; and 2 more") {
		t.Errorf("got %q", got)
	}
}

func TestValidateConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := Validate("card-product", []byte(validProduct)); err != nil {
				t.Error(err)
			}
			_ = Errors()
		}()
	}
	wg.Wait()
}
