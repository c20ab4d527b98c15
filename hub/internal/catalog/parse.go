package catalog

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/citycard/citycard/schemas"
)

// Keywords of the violations found by the checks a schema cannot express.
// They appear in schemas.Violation.Keyword beside the schema's own.
const (
	// KeywordDuplicate: a purse name appears twice in one product.
	KeywordDuplicate = "duplicate"
	// KeywordUnknownPurse: a purse order names a purse not in the list
	// it must be drawn from.
	KeywordUnknownPurse = "unknownPurse"
	// KeywordBankFallback: bank_fallback on a channel without bank cards.
	KeywordBankFallback = "bankFallback"
	// KeywordThreshold: a PIN threshold is set but the rule is not "above".
	KeywordThreshold = "threshold"
)

const (
	productSchema = "card-product"
	policySchema  = "channel-policy"
)

// ParseProduct reads a card product document. A document that breaks
// schemas/card-product.json or the rules beyond it (purse names unique,
// purse orders naming declared purses) yields an error wrapping a
// *schemas.ValidationError; malformed JSON yields one wrapping
// schemas.ErrInvalidJSON. A missing concession becomes "none".
func ParseProduct(doc []byte) (Product, error) {
	var p Product
	if err := parse(productSchema, doc, &p); err != nil {
		return Product{}, fmt.Errorf("catalog: product: %w", err)
	}
	if p.Concession == "" {
		p.Concession = ConcessionNone
	}
	if err := checkProduct(p); err != nil {
		return Product{}, fmt.Errorf("catalog: product %s: %w", p.Code, err)
	}
	return p, nil
}

// ParsePolicy reads a channel policy document. A document that breaks
// schemas/channel-policy.json or the rules beyond it (purse_order drawn from
// purses, a threshold only with "above") yields an error wrapping a
// *schemas.ValidationError; malformed JSON yields one wrapping
// schemas.ErrInvalidJSON.
func ParsePolicy(doc []byte) (Policy, error) {
	var pol Policy
	if err := parse(policySchema, doc, &pol); err != nil {
		return Policy{}, fmt.Errorf("catalog: policy: %w", err)
	}
	if err := checkPolicy(pol); err != nil {
		return Policy{}, fmt.Errorf("catalog: policy %s: %w", pol.Channel, err)
	}
	return pol, nil
}

// parse validates doc against the schema, which also refuses trailing data,
// then decodes it strictly.
func parse(schema string, doc []byte, v any) error {
	if err := schemas.Validate(schema, doc); err != nil {
		return err
	}
	d := json.NewDecoder(bytes.NewReader(doc))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		// The schema admits 2e3 and 2000.0 as integers; int64 fields do not.
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			vs := notPlainIntegers(doc)
			if len(vs) == 0 {
				vs = []schemas.Violation{{
					InstancePath: "/" + strings.ReplaceAll(te.Field, ".", "/"),
					Keyword:      "type",
					Message:      fmt.Sprintf("expected %s, got %s", te.Type, te.Value),
				}}
			}
			return &schemas.ValidationError{Schema: schema, Violations: vs}
		}
		return err
	}
	return nil
}

func checkProduct(p Product) error {
	var vs []schemas.Violation
	declared := map[string]bool{}
	for i, ps := range p.Purses {
		if declared[ps.Name] {
			vs = append(vs, schemas.Violation{
				InstancePath: "/purses/" + strconv.Itoa(i) + "/name",
				Keyword:      KeywordDuplicate,
				Message:      fmt.Sprintf("purse %q is declared twice", ps.Name),
			})
		}
		declared[ps.Name] = true
	}
	for channel, order := range p.PurseOrder {
		for j, name := range order {
			if !declared[name] {
				vs = append(vs, schemas.Violation{
					InstancePath: "/purse_order/" + escape(channel) + "/" + strconv.Itoa(j),
					Keyword:      KeywordUnknownPurse,
					Message:      fmt.Sprintf("purse %q is not one of the product's purses", name),
				})
			}
		}
	}
	return violations(productSchema, vs)
}

func checkPolicy(pol Policy) error {
	var vs []schemas.Violation
	for j, name := range pol.PurseOrder {
		if !slices.Contains(pol.Purses, name) {
			vs = append(vs, schemas.Violation{
				InstancePath: "/purse_order/" + strconv.Itoa(j),
				Keyword:      KeywordUnknownPurse,
				Message:      fmt.Sprintf("purse %q is not in purses", name),
			})
		}
	}
	if pol.BankFallback && !pol.AcceptsCard(BankCard) {
		vs = append(vs, schemas.Violation{
			InstancePath: "/bank_fallback",
			Keyword:      KeywordBankFallback,
			Message:      "a channel that falls back to a linked bank card must accept bank cards",
		})
	}
	if pol.PIN.Required != PINAbove && pol.PIN.Threshold != 0 {
		vs = append(vs, schemas.Violation{
			InstancePath: "/pin/threshold",
			Keyword:      KeywordThreshold,
			Message:      fmt.Sprintf("a threshold applies only when required is %q", PINAbove),
		})
	}
	return violations(policySchema, vs)
}

func violations(schema string, vs []schemas.Violation) error {
	if len(vs) == 0 {
		return nil
	}
	// Map iteration above is random; keep reports stable.
	slices.SortStableFunc(vs, func(a, b schemas.Violation) int { return cmp.Compare(a.InstancePath, b.InstancePath) })
	return &schemas.ValidationError{Schema: schema, Violations: vs}
}

// escape makes s a JSON pointer reference token (RFC 6901).
func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

func marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	return b, nil
}

// notPlainIntegers finds the numbers written with a fraction or an exponent,
// with their exact paths (a decode error's Field leaves out array indexes).
// Every number in these documents is an integer, so each one is at fault.
func notPlainIntegers(doc []byte) []schemas.Violation {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return nil
	}
	var out []schemas.Violation
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(x, path+"/"+escape(k))
			}
		case []any:
			for i, x := range v {
				walk(x, path+"/"+strconv.Itoa(i))
			}
		case json.Number:
			if strings.ContainsAny(string(v), ".eE") {
				out = append(out, schemas.Violation{
					InstancePath: path,
					Keyword:      "type",
					Message:      fmt.Sprintf("write %s as a plain integer", v),
				})
			}
		}
	}
	walk(v, "")
	slices.SortFunc(out, func(a, b schemas.Violation) int { return cmp.Compare(a.InstancePath, b.InstancePath) })
	return out
}
