package fares

import (
	"encoding/json"
	"errors"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/citycard/citycard/channels"
	"github.com/citycard/citycard/schemas"
)

func TestDefaultTable(t *testing.T) {
	tb := mustDefault(t)
	if tb.Network() != "city" || tb.Currency() != "CNY" || tb.Location().String() != "Asia/Shanghai" {
		t.Errorf("network %s, currency %s, zone %s", tb.Network(), tb.Currency(), tb.Location())
	}
	var ops []string
	for id := range tb.operators {
		ops = append(ops, id)
	}
	slices.Sort(ops)
	if want := []string{"city-bus", "ferry", "metro"}; !slices.Equal(ops, want) {
		t.Errorf("operators = %v, want %v", ops, want)
	}
	for _, c := range []struct {
		op, route string
		max       int64
	}{{"city-bus", "1", 200}, {"city-bus", "k8", 300}, {"city-bus", "301", 400}, {"metro", "metro", 500}, {"metro", "airport", 800}, {"ferry", "f1", 500}} {
		if got, ok := tb.MaxFare(c.op, c.route); !ok || got != c.max {
			t.Errorf("MaxFare(%s, %s) = %d, %v; want %d", c.op, c.route, got, ok, c.max)
		}
	}
	if _, ok := tb.MaxFare("city-bus", "99"); ok {
		t.Error("MaxFare of an unknown route")
	}
	if _, ok := tb.MaxFare("tram", "1"); ok {
		t.Error("MaxFare of an unknown operator")
	}
	// Every default file is valid on its own against the schema.
	err := fs.WalkDir(channels.TransitFiles, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := channels.TransitFiles.ReadFile(p)
		if err != nil {
			return err
		}
		if err := schemas.Validate(Schema, b); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// defaultDocs reads the embedded tables as generic JSON, for editing.
func defaultDocs(t *testing.T) map[string]map[string]any {
	t.Helper()
	docs := map[string]map[string]any{}
	names, err := fs.Glob(channels.TransitFiles, "transit/*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		b, err := channels.TransitFiles.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		docs[strings.TrimPrefix(n, "transit/")] = m
	}
	return docs
}

// at walks a JSON pointer to the container holding its last token.
func at(t *testing.T, doc any, pointer string) (parent any, last string) {
	t.Helper()
	toks := strings.Split(strings.TrimPrefix(pointer, "/"), "/")
	for _, tok := range toks[:len(toks)-1] {
		switch v := doc.(type) {
		case map[string]any:
			doc = v[tok]
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i >= len(v) {
				t.Fatalf("bad pointer %s", pointer)
			}
			doc = v[i]
		default:
			t.Fatalf("bad pointer %s", pointer)
		}
	}
	return doc, toks[len(toks)-1]
}

func set(pointer string, value any) func(*testing.T, any) {
	return func(t *testing.T, doc any) {
		parent, last := at(t, doc, pointer)
		switch p := parent.(type) {
		case map[string]any:
			p[last] = value
		case []any:
			i, _ := strconv.Atoi(last)
			p[i] = value
		}
	}
}

func del(pointer string) func(*testing.T, any) {
	return func(t *testing.T, doc any) {
		parent, last := at(t, doc, pointer)
		delete(parent.(map[string]any), last)
	}
}

// faults lists every fault in a Load error as "file pointer keyword".
func faults(err error) []string {
	var out []string
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var le *LoadError
		if errors.As(err, &le) {
			for _, v := range le.Violations {
				out = append(out, le.File+" "+v.InstancePath+" "+v.Keyword)
			}
			return
		}
		out = append(out, "other: "+err.Error())
	}
	walk(err)
	return out
}

func TestLoadErrors(t *testing.T) {
	cases := []struct {
		name   string
		file   string
		change func(*testing.T, any)
		want   []string
	}{
		{"negative fare", "city-bus.json", set("/routes/0/fare/amount", -1), []string{"city-bus.json /routes/0/fare/amount minimum"}},
		{"fractional fare", "city-bus.json", set("/routes/0/fare/amount", 2.5), []string{"city-bus.json /routes/0/fare/amount type"}},
		{"unknown field", "city-bus.json", set("/routes/0/fare/colour", "red"), []string{"city-bus.json /routes/0/fare/colour unevaluatedProperties"}},
		{"flat fare without amount", "city-bus.json", del("/routes/0/fare/amount"), []string{"city-bus.json /routes/0/fare required"}},
		{"unknown fare type", "city-bus.json", set("/routes/0/fare/type", "hourly"), []string{"city-bus.json /routes/0/fare/type enum"}},
		{"unknown mode", "metro.json", set("/mode", "hovercraft"), []string{"metro.json /mode enum"}},
		{"unknown kind", "metro.json", set("/kind", "depot"), []string{"metro.json /kind enum"}},
		{"unknown concession", "city.json", set("/concessions/veteran", map[string]any{"pay_percent": 0}), []string{"city.json /concessions/veteran enum"}},
		{"no concession is no concession", "city.json", set("/concessions/none", map[string]any{"pay_percent": 0}), []string{"city.json /concessions/none not"}},
		{"pay percent over 100", "city.json", set("/concessions/student/pay_percent", 150), []string{"city.json /concessions/student/pay_percent maximum"}},
		{"time zone", "city.json", set("/time_zone", "Mars/Olympus_Mons"), []string{"city.json /time_zone timeZone"}},
		{"transfer to an unknown operator", "city.json", set("/transfer/operators", []any{"city-bus", "tram"}), []string{"city.json /transfer/operators/1 unknownOperator"}},
		{"other network", "ferry.json", set("/network", "harbour"), []string{"ferry.json /network network"}},
		{"other currency", "ferry.json", set("/currency", "HKD"), []string{"ferry.json /currency currency"}},
		{"duplicate route", "city-bus.json", set("/routes/1/route", "1"), []string{"city-bus.json /routes/1/route duplicate"}},
		{"duplicate operator", "ferry.json", set("/operator", "metro"), []string{"metro.json /operator duplicate"}},
		{"second network", "ferry.json", func(t *testing.T, doc any) {
			m := doc.(map[string]any)
			clear(m)
			for k, v := range map[string]any{"kind": "network", "network": "city", "name": "Again", "currency": "CNY", "time_zone": "Asia/Shanghai"} {
				m[k] = v
			}
		}, []string{"ferry.json /network duplicate"}},
		{"bands out of order", "city-bus.json", set("/routes/5/fare/bands/1/up_to", 5), []string{"city-bus.json /routes/5/fare/bands/1/up_to order"}},
		{"longer band cheaper", "city-bus.json", set("/routes/5/fare/bands/2/amount", 250), []string{"city-bus.json /routes/5/fare/bands/2/amount order"}},
		{"bands short of the route", "city-bus.json", set("/routes/5/fare/bands/2/up_to", 12), []string{"city-bus.json /routes/5/fare/bands/2/up_to coverage"}},
		{"max fare below the longest ride", "city-bus.json", set("/routes/5/fare/max_fare", 300), []string{"city-bus.json /routes/5/fare/max_fare maxFare"}},
		{"stops not in order of distance", "metro.json", set("/routes/1/fare/stops/2/metres", 5000), []string{"metro.json /routes/1/fare/stops/2/metres order"}},
		{"duplicate km stop", "metro.json", set("/routes/1/fare/stops/2/stop", "A2"), []string{"metro.json /routes/1/fare/stops/2/stop duplicate"}},
		{"more zones cheaper", "metro.json", set("/routes/0/fare/prices/2", 350), []string{"metro.json /routes/0/fare/prices/2 order"}},
		{"zone max fare", "metro.json", set("/routes/0/fare/max_fare", 400), []string{"metro.json /routes/0/fare/max_fare maxFare"}},
		{"table stop unknown", "ferry.json", set("/routes/0/fare/fares/0/between/1", "north-pier"), []string{"ferry.json /routes/0/fare/fares/0/between/1 unknownStop"}},
		{"table pair twice", "ferry.json", set("/routes/0/fare/fares/1/between", []any{"west-pier", "east-pier"}), []string{"ferry.json /routes/0/fare/fares/1/between duplicate"}},
		{"table fare above max", "ferry.json", set("/routes/0/fare/fares/0/amount", 600), []string{"ferry.json /routes/0/fare/fares/0/amount maxFare"}},
		{"bands on a flat fare", "city-bus.json", set("/routes/0/fare/bands", []any{map[string]any{"up_to": 1, "amount": 1}}), []string{"city-bus.json /routes/0/fare/bands properties"}},
		{"zones without prices", "metro.json", del("/routes/0/fare/prices"), []string{"metro.json /routes/0/fare required"}},
		{"stop code with a space", "city-bus.json", set("/routes/5/fare/stops/0", "S 01"), []string{"city-bus.json /routes/5/fare/stops/0 pattern"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			docs := defaultDocs(t)
			tc.change(t, docs[tc.file])
			var files []File
			for _, n := range sortedKeys(docs) {
				b, err := json.Marshal(docs[n])
				if err != nil {
					t.Fatal(err)
				}
				files = append(files, File{Name: n, Data: b})
			}
			tb, err := Load(files...)
			if err == nil {
				t.Fatalf("loaded %v", tb.network)
			}
			if got := faults(err); !slices.Equal(got, tc.want) {
				t.Errorf("faults = %q, want %q\nerror: %v", got, tc.want, err)
			}
			if !strings.Contains(err.Error(), tc.file) {
				t.Errorf("error does not name the file: %v", err)
			}
		})
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func TestLoadWholeFileErrors(t *testing.T) {
	docs := defaultDocs(t)
	var ops []File
	for _, n := range sortedKeys(docs) {
		if n == "city.json" {
			continue
		}
		b, _ := json.Marshal(docs[n])
		ops = append(ops, File{Name: n, Data: b})
	}
	_, err := Load(ops...)
	if got := faults(err); !slices.Equal(got, []string{" " + " " + KeywordMissing}) {
		t.Errorf("no network: faults = %q", got)
	}
	_, err = Load(append(ops, File{Name: "broken.json", Data: []byte(`{"kind": "network",`)})...)
	if err == nil || !strings.Contains(err.Error(), "broken.json") || !errors.Is(err, schemas.ErrInvalidJSON) {
		t.Errorf("malformed JSON: %v", err)
	}
	_, err = Load(File{Name: "exp.json", Data: []byte(`{"kind": "network", "network": "city", "name": "N", "currency": "CNY",
		"time_zone": "Asia/Shanghai", "caps": {"daily": 12e2}}`)})
	if got := faults(err); !slices.Equal(got, []string{"exp.json /caps/daily type"}) {
		t.Errorf("an exponent: faults = %q (%v)", got, err)
	}
}
