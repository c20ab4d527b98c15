package api

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/schemas"
)

// boundedPattern is an anchored pattern without unbounded repetition: it
// bounds the length of what it matches by itself.
var boundedPattern = regexp.MustCompile(`^\^[^*+]*\$$`)

// TestRequestSchemasBoundText: every string a /v1 request schema declares is
// bounded (maxLength, an enum, or an anchored pattern of bounded length),
// and the edge's limit for its name is the schema's maxLength, so that the
// published contract and what the hub enforces are the same.
func TestRequestSchemasBoundText(t *testing.T) {
	names, err := schemas.Names()
	if err != nil {
		t.Fatal(err)
	}
	load := func(name string) map[string]any {
		t.Helper()
		src, err := schemas.Source(name)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := json.Unmarshal(src, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	// resolve follows a $ref into another file's $defs.
	resolve := func(s map[string]any) map[string]any {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		file, ptr, _ := strings.Cut(ref, "#/$defs/")
		return load(strings.TrimSuffix(file, ".json"))["$defs"].(map[string]any)[ptr].(map[string]any)
	}
	checked := 0
	var walk func(schema, path, name string, s map[string]any)
	walk = func(schema, path, name string, s map[string]any) {
		s = resolve(s)
		if props, ok := s["properties"].(map[string]any); ok {
			for k, p := range props {
				walk(schema, path+"/"+k, k, p.(map[string]any))
			}
		}
		if items, ok := s["items"].(map[string]any); ok {
			walk(schema, path+"[]", name, items)
		}
		if s["type"] != "string" {
			return
		}
		checked++
		limit, ok := textLimits[name]
		if !ok {
			limit = cards.MaxDefaultLen
		}
		max, hasMax := s["maxLength"].(float64)
		pattern, _ := s["pattern"].(string)
		switch {
		case hasMax && int(max) != limit && !boundedPattern.MatchString(pattern):
			t.Errorf("%s %s: maxLength %v, but the hub allows %d", schema, path, max, limit)
		case hasMax && int(max) > limit:
			t.Errorf("%s %s: maxLength %v is more than the hub's %d", schema, path, max, limit)
		case !hasMax && s["enum"] == nil && !boundedPattern.MatchString(pattern):
			t.Errorf("%s %s: a string with no maxLength", schema, path)
		}
	}
	for _, n := range names {
		if strings.HasPrefix(n, "api-") && strings.HasSuffix(n, "-request") {
			walk(n, "", "", load(n))
		}
	}
	if checked < 20 {
		t.Fatalf("only %d string fields checked", checked)
	}
}
