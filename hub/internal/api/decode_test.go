package api

import (
	"testing"

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
