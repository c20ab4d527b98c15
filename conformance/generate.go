package conformance

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// The kit makes three kinds of documents from a plugin's schemas: a minimal
// valid payload for a handled type without a sample, payloads that break a
// handled type's schema, and configurations that break the configuration
// schema. It understands only plain schemas (types, required, properties,
// enum, const, bounds); whatever it makes is checked against the schema
// before use, so a schema it misreads costs a sample, never a false verdict.

// errCannotGenerate says the kit cannot make a valid payload from a schema.
var errCannotGenerate = errors.New("cannot make a payload from this schema")

// minimal returns the smallest value valid against schema s, as far as the
// kit can tell.
func minimal(s map[string]any, depth int) (any, error) {
	if depth > 8 {
		return nil, fmt.Errorf("%w: nested too deep", errCannotGenerate)
	}
	if v, ok := s["const"]; ok {
		return v, nil
	}
	if e, ok := s["enum"].([]any); ok && len(e) > 0 {
		return e[0], nil
	}
	for _, k := range []string{"$ref", "allOf", "anyOf", "oneOf", "not", "if", "$dynamicRef"} {
		if _, ok := s[k]; ok {
			return nil, fmt.Errorf("%w: it uses %s", errCannotGenerate, k)
		}
	}
	switch typeOf(s) {
	case "object":
		props, _ := s["properties"].(map[string]any)
		out := map[string]any{}
		for _, r := range required(s) {
			ps, ok := props[r].(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%w: required property %q has no schema", errCannotGenerate, r)
			}
			v, err := minimal(ps, depth+1)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", r, err)
			}
			out[r] = v
		}
		return out, nil
	case "string":
		if _, ok := s["pattern"]; ok {
			return nil, fmt.Errorf("%w: a string with a pattern", errCannotGenerate)
		}
		if _, ok := s["format"]; ok {
			return nil, fmt.Errorf("%w: a string with a format", errCannotGenerate)
		}
		n := number(s["minLength"])
		if n < 1 {
			n = 1
		}
		if n > 1024 {
			return nil, fmt.Errorf("%w: minLength %v", errCannotGenerate, n)
		}
		return strings.Repeat("a", int(n)), nil
	case "integer", "number":
		v := float64(0)
		if m, ok := s["minimum"]; ok {
			v = number(m)
		}
		if m, ok := s["exclusiveMinimum"]; ok {
			v = number(m) + 1
		}
		if m, ok := s["maximum"]; ok && number(m) < v {
			v = number(m)
		}
		return int64(v), nil
	case "boolean":
		return false, nil
	case "array":
		n := int(number(s["minItems"]))
		out := make([]any, 0, n)
		if n > 0 {
			items, ok := s["items"].(map[string]any)
			if !ok {
				return nil, fmt.Errorf("%w: an array without items", errCannotGenerate)
			}
			for range n {
				v, err := minimal(items, depth+1)
				if err != nil {
					return nil, err
				}
				out = append(out, v)
			}
		}
		return out, nil
	case "null":
		return nil, nil
	}
	return nil, fmt.Errorf("%w: no type", errCannotGenerate)
}

// typeOf is the first non-null type of s, or "object" for a schema that
// only lists properties.
func typeOf(s map[string]any) string {
	switch t := s["type"].(type) {
	case string:
		return t
	case []any:
		for _, x := range t {
			if x, ok := x.(string); ok && x != "null" {
				return x
			}
		}
	}
	if _, ok := s["properties"]; ok {
		return "object"
	}
	if _, ok := s["required"]; ok {
		return "object"
	}
	return ""
}

func required(s map[string]any) []string {
	var out []string
	r, _ := s["required"].([]any)
	for _, x := range r {
		if x, ok := x.(string); ok {
			out = append(out, x)
		}
	}
	return out
}

func number(v any) float64 {
	switch n := v.(type) {
	case float64:
		return n
	case json.Number:
		f, _ := n.Float64()
		return f
	}
	return 0
}

// closed reports whether s refuses properties it does not list.
func closed(s map[string]any) bool {
	for _, k := range []string{"additionalProperties", "unevaluatedProperties"} {
		if b, ok := s[k].(bool); ok && !b {
			return true
		}
	}
	return false
}

// wrongValue is a value of a type the property schema does not allow, or
// nil when the kit cannot tell.
func wrongValue(s map[string]any) any {
	switch typeOf(s) {
	case "string":
		return 12345
	case "integer", "number":
		return "not a number"
	case "boolean":
		return "yes"
	case "object":
		return "not an object"
	case "array":
		return "not an array"
	}
	if _, ok := s["enum"]; ok {
		return "conformance-kit-not-in-enum"
	}
	return nil
}

// mutation is a document made to break a schema, with what is wrong with
// it and the property a clear error would name ("" when none).
type mutation struct {
	doc      json.RawMessage
	why      string
	property string
}

// unknownProperty is the name the kit adds to break a closed schema.
const unknownProperty = "conformance_kit_unknown_setting"

// mutations returns documents that break schema, made from the valid doc:
// a required property left out, a property of the wrong type, a property
// the schema does not know. Each still needs checking against the schema.
func mutations(schema json.RawMessage, doc json.RawMessage) []mutation {
	var s map[string]any
	if json.Unmarshal(schema, &s) != nil {
		return nil
	}
	var base map[string]any
	if len(bytes.TrimSpace(doc)) == 0 || json.Unmarshal(doc, &base) != nil || base == nil {
		base = map[string]any{}
	}
	edit := func(change func(m map[string]any)) json.RawMessage {
		m := make(map[string]any, len(base)+1)
		for k, v := range base {
			m[k] = v
		}
		change(m)
		b, _ := json.Marshal(m)
		return b
	}
	var out []mutation
	if r := required(s); len(r) > 0 {
		p := r[0]
		out = append(out, mutation{doc: edit(func(m map[string]any) { delete(m, p) }),
			why: fmt.Sprintf("required property %q left out", p), property: p})
	}
	props, _ := s["properties"].(map[string]any)
	names := make([]string, 0, len(props))
	for n := range props {
		names = append(names, n)
	}
	sort.Strings(names)
	// The first property the kit can give a wrong value, preferring one
	// the valid document sets.
	var wrongName string
	for _, pass := range []bool{true, false} {
		for _, n := range names {
			ps, _ := props[n].(map[string]any)
			if _, set := base[n]; set != pass || ps == nil || wrongValue(ps) == nil {
				continue
			}
			wrongName = n
			break
		}
		if wrongName != "" {
			break
		}
	}
	if wrongName != "" {
		ps := props[wrongName].(map[string]any)
		v := wrongValue(ps)
		out = append(out, mutation{doc: edit(func(m map[string]any) { m[wrongName] = v }),
			why: fmt.Sprintf("property %q given a value of the wrong type", wrongName), property: wrongName})
	}
	if closed(s) {
		out = append(out, mutation{doc: edit(func(m map[string]any) { m[unknownProperty] = true }),
			why: fmt.Sprintf("unknown property %q added", unknownProperty), property: unknownProperty})
	}
	return out
}
