package sdk

import (
	"encoding/json"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// withDefaults returns config with every property its schema gives a
// default for, and config leaves out, filled in: at the top level and in
// every object config holds (properties, pattern and additional
// properties, array items, through $ref and allOf). A missing object is not
// created to hold defaults unless the schema gives the object itself a
// default. config must have passed CheckConfig; it comes back unchanged
// when nothing was missing.
//
// The sdk calls it before Configure, so a plugin reads its defaults from
// its schema alone and never repeats them in code.
func (v *validator) withDefaults(config json.RawMessage) (json.RawMessage, error) {
	config = normalConfig(config)
	if v.config == nil {
		return config, nil
	}
	doc, err := decodeJSON(config)
	if err != nil {
		return nil, &Error{Code: CodeConfigInvalid, Message: "configuration of plugin " + v.desc.Name + ": " + err.Error()}
	}
	if !fillDefaults(v.config, doc) {
		return config, nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return nil, &Error{Code: CodeInternal, Message: err.Error()}
	}
	// A default the schema itself refuses is the plugin's mistake; say so
	// rather than hand Configure what its schema forbids.
	if err := v.CheckConfig(out); err != nil {
		e := AsError(err)
		return nil, &Error{Code: CodeConfigInvalid, Field: e.Field,
			Message: fmt.Sprintf("with the defaults of its config schema: %s", e.Message)}
	}
	return out, nil
}

// fillDefaults fills doc's missing properties from s's defaults, in place,
// and reports whether it filled any.
func fillDefaults(s *jsonschema.Schema, doc any) bool {
	if s == nil {
		return false
	}
	filled := false
	for _, sub := range append([]*jsonschema.Schema{s.Ref}, s.AllOf...) {
		if fillDefaults(sub, doc) {
			filled = true
		}
	}
	switch d := doc.(type) {
	case map[string]any:
		for name, ps := range s.Properties {
			if _, ok := d[name]; ok {
				continue
			}
			if def, ok := defaultOf(ps); ok {
				d[name] = cloneJSON(def)
				filled = true
			}
		}
		for name, val := range d {
			for _, ps := range propertySchemas(s, name) {
				if fillDefaults(ps, val) {
					filled = true
				}
			}
		}
	case []any:
		for i, val := range d {
			var is *jsonschema.Schema
			switch {
			case i < len(s.PrefixItems):
				is = s.PrefixItems[i]
			case s.Items2020 != nil:
				is = s.Items2020
			default:
				is, _ = s.Items.(*jsonschema.Schema)
			}
			if fillDefaults(is, val) {
				filled = true
			}
		}
	}
	return filled
}

// propertySchemas returns the schemas that apply to the property name of
// an object of schema s, by JSON Schema's rules.
func propertySchemas(s *jsonschema.Schema, name string) []*jsonschema.Schema {
	var out []*jsonschema.Schema
	if ps, ok := s.Properties[name]; ok {
		out = append(out, ps)
	}
	for re, ps := range s.PatternProperties {
		if re.MatchString(name) {
			out = append(out, ps)
		}
	}
	if len(out) == 0 {
		if ps, ok := s.AdditionalProperties.(*jsonschema.Schema); ok {
			out = append(out, ps)
		}
	}
	return out
}

// defaultOf returns the default a property's schema gives, looking through
// a $ref; a default of null counts as none.
func defaultOf(s *jsonschema.Schema) (any, bool) {
	for ; s != nil; s = s.Ref {
		if s.Default != nil {
			return s.Default, true
		}
	}
	return nil, false
}

// cloneJSON copies a decoded JSON value, so that filling a configuration
// never changes the compiled schema's defaults.
func cloneJSON(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = cloneJSON(e)
		}
		return m
	case []any:
		a := make([]any, len(t))
		for i, e := range t {
			a[i] = cloneJSON(e)
		}
		return a
	}
	return v
}
