package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/citycard/citycard/hub/internal/fault"
)

// syntaxError carries the byte offset where a body stopped being JSON; the
// problem document reports it as "offset".
type syntaxError struct {
	offset int64
	err    error
}

func (e *syntaxError) Error() string { return fmt.Sprintf("at byte %d: %v", e.offset, e.err) }

func invalidJSON(offset int64, err error) error {
	return &fault.Error{Code: fault.InvalidJSON,
		Detail: fmt.Sprintf("the body is not valid JSON (at byte offset %d)", offset),
		Err:    &syntaxError{offset: offset, err: err}}
}

// parseBody reads a body as exactly one JSON object. An empty body is an
// empty object, so that bodiless writes (loss, void…) hash like "{}".
func parseBody(body []byte) (map[string]any, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return map[string]any{}, nil
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		var se *json.SyntaxError
		switch {
		case errors.As(err, &se):
			return nil, invalidJSON(se.Offset, err)
		case errors.Is(err, io.ErrUnexpectedEOF):
			return nil, invalidJSON(int64(len(body)), err)
		default:
			return nil, invalidJSON(d.InputOffset(), err)
		}
	}
	end := d.InputOffset()
	if rest := bytes.TrimLeft(body[end:], " \t\r\n"); len(rest) > 0 {
		off := int64(len(body) - len(rest))
		return nil, invalidJSON(off, errors.New("data after the JSON value"))
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fault.E(fault.InvalidRequest, "", "the body must be a JSON object")
	}
	return m, nil
}

// canonical is the body with sorted keys and no insignificant whitespace:
// what the request hash covers, so that a retry that re-serialises the
// same request differently is still the same request.
func canonical(body []byte) ([]byte, error) {
	m, err := parseBody(body)
	if err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

// decodeStrict fills dst (a pointer to a request struct) from body. Fields
// the struct does not have, compared exactly, are refused with
// unknown_field naming the path; values of the wrong type with
// invalid_request naming the field.
func decodeStrict(body []byte, dst any) error {
	m, err := parseBody(body)
	if err != nil {
		return err
	}
	if path := unknownField(m, reflect.TypeOf(dst), ""); path != "" {
		return fault.E(fault.UnknownField, path, fmt.Sprintf("unknown field %q", path))
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			return fault.E(fault.InvalidRequest, field, fmt.Sprintf("%s must be %s, got %s", orBody(field), typeName(te.Type), te.Value))
		}
		return fault.E(fault.InvalidRequest, "", "the body does not fit this request: "+err.Error())
	}
	return nil
}

func orBody(field string) string {
	if field == "" {
		return "the body"
	}
	return field
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}

// unknownField returns the dotted path of the first member of v (in sorted
// order, for a stable answer) that t does not declare, or "".
func unknownField(v any, t reflect.Type, prefix string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch val := v.(type) {
	case map[string]any:
		if t.Kind() != reflect.Struct {
			return ""
		}
		fields := jsonFields(t)
		keys := make([]string, 0, len(val))
		for k := range val {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				return prefix + k
			}
			if p := unknownField(val[k], ft, prefix+k+"."); p != "" {
				return p
			}
		}
	case []any:
		if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
			return ""
		}
		base := strings.TrimSuffix(prefix, ".")
		for i, e := range val {
			if p := unknownField(e, t.Elem(), fmt.Sprintf("%s[%d].", base, i)); p != "" {
				return p
			}
		}
	}
	return ""
}

var fieldCache sync.Map // reflect.Type → map[string]reflect.Type

// jsonFields maps the JSON names of t's fields to their types, following
// encoding/json: embedded structs without a name contribute their fields,
// "-" hides a field (path parameters are tagged so).
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			for k, v := range jsonFields(ft) {
				if _, shadowed := m[k]; !shadowed {
					m[k] = v
				}
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	fieldCache.Store(t, m)
	return m
}
