package api

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/fault"
)

func TestCanonical(t *testing.T) {
	same := []string{
		`{"amount":100,"currency":"CNY"}`,
		"{ \"currency\": \"CNY\",\n\t\"amount\": 100 }",
	}
	want, err := canonical([]byte(same[0]))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range same[1:] {
		got, err := canonical([]byte(s))
		if err != nil || string(got) != string(want) {
			t.Fatalf("canonical(%s) = %s, %v; want %s", s, got, err, want)
		}
	}
	// An empty body is the empty object.
	for _, s := range []string{"", "  ", "{}"} {
		if got, err := canonical([]byte(s)); err != nil || string(got) != "{}" {
			t.Fatalf("canonical(%q) = %s, %v", s, got, err)
		}
	}
	// Numbers keep their spelling: 100 and 1e2 are different requests.
	a, _ := canonical([]byte(`{"amount":100}`))
	b, _ := canonical([]byte(`{"amount":1e2}`))
	if string(a) == string(b) {
		t.Fatal("100 and 1e2 hash alike")
	}
}

type inner struct {
	Name string `json:"name"`
}

type embedded struct {
	Card string `json:"card"`
}

type outer struct {
	embedded
	Path   string  `json:"-"`
	Inner  inner   `json:"inner"`
	Items  []inner `json:"items"`
	Plain  int64
	hidden int64
}

func TestDecodeStrict(t *testing.T) {
	cases := []struct {
		body        string
		code, field string
	}{
		{`{"card":"1","inner":{"name":"x"},"items":[{"name":"a"}],"Plain":3}`, "", ""},
		{`{"card":"1","path":"x"}`, fault.UnknownField, "path"},
		{`{"inner":{"name":"x","age":3}}`, fault.UnknownField, "inner.age"},
		{`{"items":[{"name":"a"},{"nom":"b"}]}`, fault.UnknownField, "items[1].nom"},
		{`{"hidden":1}`, fault.UnknownField, "hidden"},
		{`{"b":1,"a":2}`, fault.UnknownField, "a"},
		{`{"inner":{"name":5}}`, fault.InvalidRequest, "inner.name"},
		{`{"Plain":"3"}`, fault.InvalidRequest, "Plain"},
		{`{"card":`, fault.InvalidJSON, ""},
		{`"text"`, fault.InvalidRequest, ""},
	}
	for _, tc := range cases {
		var v outer
		err := decodeStrict([]byte(tc.body), &v)
		if tc.code == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.body, err)
			}
			continue
		}
		if code := fault.CodeOf(err); code != tc.code {
			t.Errorf("%s: code %q, want %q (%v)", tc.body, code, tc.code, err)
		} else if fault.Problem(err, "").Field != tc.field {
			t.Errorf("%s: field %q, want %q", tc.body, fault.Problem(err, "").Field, tc.field)
		}
	}
}

// TestParseBodyRefuses: what the standard decoder would guess at (the last
// of two keys, a NUL the store cannot keep, bytes that are not UTF-8) is
// refused with the field at fault, at any depth.
func TestParseBodyRefuses(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	cases := []struct {
		name        string
		body        string
		code, field string
		detail      string // a part of the detail, when it matters
	}{
		{"plain", `{"amount":100,"currency":"CNY","holder":{"name":"Li Lei"}}`, "", "", ""},
		{"duplicated key", `{"amount":100,"amount":200}`, fault.InvalidRequest, "amount", `"amount" appears more than once in the body`},
		{"duplicated key, other spelling", `{"amount":100,"\u0061mount":200}`, fault.InvalidRequest, "amount", ""},
		{"duplicated nested key", `{"holder":{"name":"A","id_type":"passport","name":"B"}}`, fault.InvalidRequest, "holder.name", "in holder"},
		{"duplicated key in an array", `{"items":[{"a":1},{"a":1,"a":2}]}`, fault.InvalidRequest, "items[1].a", ""},
		{"same key in two objects", `{"a":{"x":1},"b":{"x":1}}`, "", "", ""},
		{"NUL in a name", `{"holder":{"name":"Li\u0000Lei"}}`, fault.InvalidRequest, "holder.name", "U+0000"},
		{"newline in a name", `{"name":"Corner\nshop"}`, fault.InvalidRequest, "name", "U+000A"},
		{"tab in an id", `{"id":"M\t1"}`, fault.InvalidRequest, "id", "U+0009"},
		{"C1 control", `{"name":"a\u0085b"}`, fault.InvalidRequest, "name", "U+0085"},
		{"DEL", `{"phone":"138\u007f"}`, fault.InvalidRequest, "phone", "U+007F"},
		{"newline and tab in a memo", `{"memo":"goods returned\n\tby post"}`, "", "", ""},
		{"NUL in a memo", `{"memo":"a\u0000"}`, fault.InvalidRequest, "memo", "U+0000"},
		{"invalid UTF-8", "{\"name\":\"Li \xff Lei\"}", fault.InvalidRequest, "name", "UTF-8"},
		{"lone surrogate", `{"name":"\ud800"}`, fault.InvalidRequest, "name", "UTF-8"},
		{"control character in a key", `{"payload":{"a\u0000b":1}}`, fault.InvalidRequest, "payload.a\x00b", ""},
		{"NUL deep in a payload", `{"payload":{"lines":[{"item":"x"},{"item":"y\u0000"}]}}`, fault.InvalidRequest, "payload.lines[1].item", ""},
		{"name at its limit", `{"name":"` + long(128) + `"}`, "", "", ""},
		{"name of Chinese at its limit", `{"name":"` + strings.Repeat("李", 128) + `"}`, "", "", ""},
		{"name over its limit", `{"name":"` + long(129) + `"}`, fault.InvalidRequest, "name", "at most 128"},
		{"id over its limit", `{"id":"` + long(65) + `"}`, fault.InvalidRequest, "id", "at most 64"},
		{"memo over its limit", `{"memo":"` + long(513) + `"}`, fault.InvalidRequest, "memo", "at most 512"},
		{"payload text over the default", `{"payload":{"note":"` + long(1025) + `"}}`, fault.InvalidRequest, "payload.note", "at most 1024"},
		{"key over its limit", `{"payload":{"` + long(65) + `":1}}`, fault.InvalidRequest, "payload." + long(65), ""},
		{"too deep", `{"a":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`, fault.InvalidRequest, "a" + strings.Repeat("[0]", 63), "deeper"},
		{"truncated", `{"holder":{"name":"A"`, fault.InvalidJSON, "", ""},
		{"raw NUL", "{\"name\":\"a\x00\"}", fault.InvalidJSON, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseBody([]byte(tc.body))
			if tc.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			p := fault.Problem(err, "")
			if fault.CodeOf(err) != tc.code || p.Field != tc.field {
				t.Fatalf("got %v (field %q); want %s on %q", err, p.Field, tc.code, tc.field)
			}
			if !strings.Contains(p.Detail, tc.detail) {
				t.Fatalf("detail %q lacks %q", p.Detail, tc.detail)
			}
		})
	}
}

type required struct {
	Amount int64 `json:"amount"`
}

// TestEmptyBody: a request with fields needs a body; one with none, or
// with only optional ones, may come empty.
func TestEmptyBody(t *testing.T) {
	cases := []struct {
		dst  any
		ok   bool
		what string
	}{
		{&required{}, false, "a request with a field"},
		{&cards.PaymentRequest{}, false, "a payment"},
		{&cards.IssueRequest{}, false, "an issue"},
		{&noBody{}, true, "a bodiless write"},
		{&struct{}{}, true, "an empty struct"},
		{&cards.CaptureRequest{}, true, "a capture of the whole hold"},
		{&cards.ReverseRequest{}, true, "a reversal"},
		{&cards.ReplaceRequest{}, true, "a replacement"},
	}
	for _, tc := range cases {
		for _, body := range []string{"", " \n"} {
			err := decodeStrict([]byte(body), tc.dst)
			if tc.ok && err != nil {
				t.Errorf("%s, body %q: %v", tc.what, body, err)
			}
			if !tc.ok {
				p := fault.Problem(err, "")
				if fault.CodeOf(err) != fault.InvalidRequest || p.Field != "" || p.Detail != "the request body is empty" {
					t.Errorf("%s, body %q: %v", tc.what, body, err)
				}
			}
		}
	}
}

func TestCheckContentType(t *testing.T) {
	cases := []struct {
		ct string
		ok bool
	}{
		{"", true},
		{"application/json", true},
		{"application/json; charset=utf-8", true},
		{"Application/JSON;charset=UTF-8", true},
		{"application/merge-patch+json", true},
		{"application/problem+json", true},
		{"application/x-www-form-urlencoded", false},
		{"text/plain", false},
		{"text/json", false},
		{"multipart/form-data; boundary=x", false},
		{"application/jsonx", false},
		{"application/json; charset", false}, // not a media type
		{"json", false},
	}
	for _, tc := range cases {
		r := httptest.NewRequest("POST", "/v1/payments", nil)
		if tc.ct != "" {
			r.Header.Set("Content-Type", tc.ct)
		}
		err := checkContentType(r)
		if tc.ok != (err == nil) {
			t.Errorf("Content-Type %q: %v", tc.ct, err)
			continue
		}
		if err != nil && (fault.CodeOf(err) != fault.UnsupportedMediaType || fault.Problem(err, "").Field != "Content-Type" || fault.Problem(err, "").Status != 415) {
			t.Errorf("Content-Type %q: %+v", tc.ct, fault.Problem(err, ""))
		}
	}
}
