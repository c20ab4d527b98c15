package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/citycard/citycard/hub/internal/cards"
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

// maxDepth bounds how deeply a body may nest: no request needs more, and
// the walk below recurses once per level.
const maxDepth = 64

// parseBody reads a body as exactly one JSON object, walking it once to
// refuse what would otherwise be guessed at: a key given twice (the
// standard decoder keeps the last), and text no store holds alike or no
// real value contains (see checkString). An empty body is an empty object,
// so that bodiless writes (loss, void…) hash like "{}"; decodeStrict
// decides whether a request may be empty.
func parseBody(body []byte) (map[string]any, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return map[string]any{}, nil
	}
	p := &walker{d: json.NewDecoder(bytes.NewReader(body)), size: int64(len(body))}
	p.d.UseNumber()
	v, err := p.value("", "", 0)
	if err != nil {
		return nil, err
	}
	end := p.d.InputOffset()
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

// walker builds a decoded body token by token.
type walker struct {
	d    *json.Decoder
	size int64
}

func (p *walker) syntax(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return invalidJSON(se.Offset, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return invalidJSON(p.size, io.ErrUnexpectedEOF)
	default:
		return invalidJSON(p.d.InputOffset(), err)
	}
}

// value reads one JSON value at path (dotted, as fault fields are named);
// name is the member's key, which sets the limits of a string.
func (p *walker) value(path, name string, depth int) (any, error) {
	tok, err := p.d.Token()
	if err != nil {
		return nil, p.syntax(err)
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= maxDepth {
			return nil, fault.E(fault.InvalidRequest, path, fmt.Sprintf("the body nests deeper than %d levels", maxDepth))
		}
		if t == '[' {
			return p.array(path, name, depth+1)
		}
		return p.object(path, depth+1)
	case string:
		if err := checkString(path, name, t); err != nil {
			return nil, err
		}
		return t, nil
	default: // json.Number, bool or nil
		return t, nil
	}
}

func (p *walker) object(path string, depth int) (any, error) {
	m := map[string]any{}
	for p.d.More() {
		tok, err := p.d.Token()
		if err != nil {
			return nil, p.syntax(err)
		}
		key := tok.(string) // the decoder allows nothing else here
		child := key
		if path != "" {
			child = path + "." + key
		}
		if err := cards.CheckText(child, key, maxKeyLen, false); err != nil {
			return nil, err
		}
		if _, dup := m[key]; dup {
			where := "the body"
			if path != "" {
				where = path
			}
			return nil, fault.E(fault.InvalidRequest, child, fmt.Sprintf("the key %q appears more than once in %s", key, where))
		}
		v, err := p.value(child, key, depth)
		if err != nil {
			return nil, err
		}
		m[key] = v
	}
	if _, err := p.d.Token(); err != nil { // the closing brace
		return nil, p.syntax(err)
	}
	return m, nil
}

func (p *walker) array(path, name string, depth int) (any, error) {
	l := []any{}
	for i := 0; p.d.More(); i++ {
		v, err := p.value(fmt.Sprintf("%s[%d]", path, i), name, depth)
		if err != nil {
			return nil, err
		}
		l = append(l, v)
	}
	if _, err := p.d.Token(); err != nil { // the closing bracket
		return nil, p.syntax(err)
	}
	return l, nil
}

// maxKeyLen bounds a member name: unknown names are refused anyway, but a
// plugin message's payload and metadata take any.
const maxKeyLen = 64

// textLimits is the longest text each member of a /v1 body may hold, by its
// name wherever it appears; schemas/api-*-request.json declare the same
// maxLength (TestRequestSchemasBoundText checks). Members not listed, such
// as the strings of a plugin message's payload, get cards.MaxDefaultLen.
var textLimits = map[string]int{
	"name":               cards.MaxNameLen,
	"id":                 cards.MaxIDLen,
	"id_type":            cards.MaxIDLen,
	"id_number":          cards.MaxIDLen,
	"phone":              cards.MaxPhoneLen,
	"product":            cards.MaxIDLen,
	"settlement_account": cards.MaxIDLen,
	"mcc":                cards.MaxIDLen,
	"merchant":           cards.MaxIDLen,
	"terminal":           cards.MaxIDLen,
	"card":               cards.MaxIDLen,
	"channel":            cards.MaxIDLen,
	"currency":           cards.MaxIDLen,
	"purse":              cards.MaxIDLen,
	"method":             cards.MaxIDLen,
	"pin":                cards.MaxIDLen,
	"pan":                cards.MaxIDLen,
	"expiry":             cards.MaxIDLen,
	"operator":           cards.MaxIDLen,
	"mode":               32, // a transit device's, as api-device-request.json says
	"route":              32,
	"type":               cards.MaxTokenLen,
	"memo":               cards.MaxMemoLen,
}

// multiline members are free text: the only ones that may hold a tab or a
// newline.
var multiline = map[string]bool{"memo": true}

// checkString refuses a string that is not plain text of the member's
// length: control characters (PostgreSQL refuses U+0000 where SQLite keeps
// it, so the drivers would disagree), invalid UTF-8 (which the decoder
// turns into U+FFFD) and over-long text.
func checkString(path, name, s string) error {
	limit, ok := textLimits[name]
	if !ok {
		limit = cards.MaxDefaultLen
	}
	return cards.CheckText(path, s, limit, multiline[name])
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
// invalid_request naming the field. An empty body is refused unless the
// request has no fields or only optional ones (see mayBeEmpty), so that a
// body lost on the way is not read as a request of zero values.
func decodeStrict(body []byte, dst any) error {
	if len(bytes.TrimSpace(body)) == 0 && !mayBeEmpty(reflect.TypeOf(dst)) {
		return fault.E(fault.InvalidRequest, "", "the request body is empty")
	}
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

// optionalBodies are the requests whose every field is optional: a capture
// of the whole hold, a reversal without a memo, a replacement paid in cash.
var optionalBodies = map[reflect.Type]bool{
	reflect.TypeFor[cards.CaptureRequest](): true,
	reflect.TypeFor[cards.ReverseRequest](): true,
	reflect.TypeFor[cards.ReplaceRequest](): true,
}

// mayBeEmpty reports whether a request of type t (a pointer to a struct)
// may be sent with no body.
func mayBeEmpty(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return false
	}
	return optionalBodies[t] || len(jsonFields(t)) == 0
}

// checkContentType refuses a write whose body is declared as something
// other than JSON: application/json, with any parameters, or a structured
// syntax suffix such as application/merge-patch+json. A write without a
// Content-Type is read as JSON, as the README says, because many clients
// send bodiless writes (loss, void) without one.
func checkContentType(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return nil
	}
	return fault.E(fault.UnsupportedMediaType, "Content-Type",
		fmt.Sprintf("the body must be application/json, not %q", ct))
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
