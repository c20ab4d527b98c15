package payments_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/citycard/citycard/schemas"
	"github.com/citycard/citycard/sdk"
)

// TestVocabularyMatchesSchemas holds the sdk's message structs to the
// schemas the hub checks payloads against: every JSON name of a struct is
// a property of its schema and back, and a field is left out when empty
// only if the schema does not require it. A struct that drifted from its
// schema would decode a plugin's message into zero values without a word.
func TestVocabularyMatchesSchemas(t *testing.T) {
	for _, tc := range []struct {
		schema string
		v      any
	}{
		{"msg-card-payment-v1", sdk.CardPayment{}},
		{"msg-card-hold-v1", sdk.CardHold{}},
		{"msg-card-capture-v1", sdk.CardCapture{}},
		{"msg-card-void-v1", sdk.CardVoid{}},
		{"msg-card-reversal-v1", sdk.CardReversal{}},
		{"msg-card-balance-inquiry-v1", sdk.CardBalanceInquiry{}},
		{"msg-card-balance-v1", sdk.CardBalance{}},
		{"msg-card-status-v1", sdk.CardStatus{}},
		{"msg-answer-v1", sdk.Answer{}},
		{"msg-medical-bill-v1", sdk.MedicalBill{}},
		{"msg-medical-refund-v1", sdk.MedicalRefund{}},
		{"msg-medical-receipt-v1", sdk.MedicalReceipt{}},
		{"api-payment", sdk.PaymentResult{}},
		{"api-hold", sdk.HoldResult{}},
	} {
		t.Run(tc.schema, func(t *testing.T) {
			src, err := schemas.Source(tc.schema)
			if err != nil {
				t.Fatal(err)
			}
			var s struct {
				Required   []string                   `json:"required"`
				Properties map[string]json.RawMessage `json:"properties"`
			}
			if err := json.Unmarshal(src, &s); err != nil {
				t.Fatal(err)
			}
			fields := jsonFields(reflect.TypeOf(tc.v))
			for name, omitempty := range fields {
				if _, ok := s.Properties[name]; !ok {
					t.Errorf("%T has %q, which schema %s does not define", tc.v, name, tc.schema)
				}
				if omitempty && slices.Contains(s.Required, name) {
					t.Errorf("%T leaves out %q when empty, which schema %s requires", tc.v, name, tc.schema)
				}
			}
			for name := range s.Properties {
				if _, ok := fields[name]; !ok {
					t.Errorf("%T lacks %q of schema %s", tc.v, name, tc.schema)
				}
			}
		})
	}
}

// jsonFields maps the JSON names of a struct's fields to whether they are
// omitted when empty.
func jsonFields(rt reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range rt.NumField() {
		f := rt.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		out[name] = strings.Contains(opts, "omitempty")
	}
	return out
}
