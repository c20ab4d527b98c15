package schemas

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// genTap draws a valid tap, and half the time spoils one of its fields
// (or adds, or drops one), so that the quick check meets every way a single
// field can be wrong.
func genTap(t *rapid.T) map[string]any {
	tap := map[string]any{
		"device": rapid.SampledFrom([]string{"BUS-0001", "GATE-7", "D"}).Draw(t, "device"),
		"seq":    rapid.SampledFrom([]any{1, 7, 123456789}).Draw(t, "seq"),
		"card":   rapid.SampledFrom([]string{"3100990000000013", "310099000000", "3100990000000000013"}).Draw(t, "card"),
		"at":     "2026-11-26T08:00:00Z",
		"kind":   rapid.SampledFrom([]string{"on", "off"}).Draw(t, "kind"),
		"route":  rapid.SampledFrom([]string{"15", "k8 express", "metro"}).Draw(t, "route"),
		"mac":    rapid.SampledFrom([]string{"0123456789abcdef", "0123456789ABCDEF"}).Draw(t, "mac"),
	}
	if rapid.Bool().Draw(t, "with stop") {
		tap["stop"] = rapid.SampledFrom([]string{"S01", ""}).Draw(t, "stop")
	}
	if rapid.Bool().Draw(t, "with offline") {
		tap["offline"] = rapid.Bool().Draw(t, "offline")
	}
	if !rapid.Bool().Draw(t, "spoil") {
		return tap
	}
	keys := make([]string, 0, len(spoilers))
	for k := range spoilers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	k := rapid.SampledFrom(keys).Draw(t, "field")
	v := rapid.SampledFrom(spoilers[k]).Draw(t, "value")
	if k == "" {
		delete(tap, v.(string))
	} else {
		tap[k] = v
	}
	return tap
}

// spoilers are values that break one field of a tap; the key "" drops the
// field named by the value.
var spoilers = map[string][]any{
	"device":  {"M|X", "BUS 1", "", "Ünï", strings.Repeat("D", 65), "A\fB", "A\x00B", 7, nil},
	"seq":     {0, -1, 1.5, "3", json.Number("-0"), json.Number("0.5"), nil},
	"card":    {"31009900000000AB", "123", "62220200000000000012", 3100990000000013, nil},
	"at":      {5, nil, true},
	"kind":    {"in", "ON", true, nil},
	"route":   {"", "a|b", strings.Repeat("r", 33), 15, nil, "tab\there"},
	"stop":    {"x|y", strings.Repeat("s", 33), nil, 3},
	"offline": {"true", 1, nil},
	"mac":     {"0123", "zzzzzzzzzzzzzzzz", "0123456789abcdef0", nil},
	"":        {"device", "seq", "card", "at", "kind", "route", "mac"},
	"Extra":   {1},
	"DEVICE":  {"BUS-1"},
}

func validTap() map[string]any {
	return map[string]any{"device": "BUS-0001", "seq": 1, "card": "3100990000000013", "at": "2026-11-26T08:00:00Z",
		"kind": "on", "route": "15", "mac": "0123456789abcdef"}
}

// TestFastChecksAgree: a quick check never accepts what its schema
// refuses, on documents drawn around the valid ones and on byte-level
// mutations of them; and it accepts the plain valid ones, or it would be
// of no use.
func TestFastChecksAgree(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 4).Draw(t, "taps")
		taps := make([]map[string]any, n)
		for i := range taps {
			taps[i] = genTap(t)
		}
		doc, err := json.Marshal(map[string]any{"taps": taps})
		if err != nil {
			t.Fatal(err)
		}
		if rapid.Bool().Draw(t, "mutate") {
			b := []byte(string(doc))
			for range rapid.IntRange(1, 3).Draw(t, "mutations") {
				if len(b) == 0 {
					break
				}
				i := rapid.IntRange(0, len(b)-1).Draw(t, "at")
				switch rapid.IntRange(0, 2).Draw(t, "how") {
				case 0:
					b[i] = rapid.SampledFrom([]byte(`{}[]",:\ 0aZ|`)).Draw(t, "byte")
				case 1:
					b = append(b[:i], b[i+1:]...)
				default:
					b = append(b[:i], append([]byte(rapid.SampledFrom([]string{`"`, `\u0041`, `,"x":1`, ` `, `null`, `]`}).Draw(t, "insert")), b[i:]...)...)
				}
			}
			doc = b
		}
		for name, quick := range fast {
			if quick(doc) {
				if err := validateSchema(name, doc); err != nil {
					t.Fatalf("%s: the quick check accepts what the schema refuses (%v):\n%s", name, err, doc)
				}
			}
		}
	})
	// Every single-field spoiling of a valid tap, each on its own.
	for field, values := range spoilers {
		for _, v := range values {
			tap := validTap()
			if field == "" {
				delete(tap, v.(string))
			} else {
				tap[field] = v
			}
			doc, err := json.Marshal(map[string]any{"taps": []any{validTap(), tap}})
			if err != nil {
				t.Fatal(err)
			}
			if fastTransitTaps(doc) {
				t.Errorf("%s = %#v: the quick check accepts it", field, v)
			}
			if validateSchema("msg-transit-taps-v1", doc) == nil && field != "" {
				t.Errorf("%s = %#v: the schema accepts it; the spoiler is not one", field, v)
			}
		}
	}
	for i, doc := range []string{
		`{"taps":[{"device":"BUS-0001","seq":1,"card":"3100990000000013","at":"2026-11-26T08:00:00Z","kind":"on","route":"15","mac":"0123456789abcdef"}]}`,
		` { "taps" : [ {"device":"G-1","seq":42,"card":"310099000000001","at":"x","kind":"off","route":"metro","stop":"M05","offline":true,"mac":"0123456789ABCDEF"} ] } `,
	} {
		if !fastTransitTaps([]byte(doc)) {
			t.Errorf("doc %d: the quick check refuses a plain valid document", i)
		}
		if err := validateSchema("msg-transit-taps-v1", []byte(doc)); err != nil {
			t.Errorf("doc %d: the schema refuses it too: %v", i, err)
		}
	}
}

func BenchmarkTransitTapsCheck(b *testing.B) {
	taps := make([]map[string]any, 1000)
	for i := range taps {
		taps[i] = map[string]any{"device": "BUS-0001", "seq": i + 1, "card": "3100990000000013", "at": "2026-11-26T08:00:00.123Z",
			"kind": "on", "route": "15", "stop": "S01", "offline": true, "mac": fmt.Sprintf("%016x", i)}
	}
	doc, _ := json.Marshal(map[string]any{"taps": taps})
	b.Run("quick", func(b *testing.B) {
		for b.Loop() {
			if err := Validate("msg-transit-taps-v1", doc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("schema", func(b *testing.B) {
		for b.Loop() {
			if err := validateSchema("msg-transit-taps-v1", doc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
