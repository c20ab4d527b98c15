package conformance

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// quick shortens the kit's waits for plugins that are expected to fail
// them, keeping the test run short.
func quick(o Options) Options {
	o.SlowDeadline = time.Second
	o.StopTimeout = time.Second
	o.ExitTimeout = 2 * time.Second
	return o
}

func load(t *testing.T, name string) *File {
	t.Helper()
	f, err := LoadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func run(t *testing.T, o Options) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func table(r *Report) string {
	var b strings.Builder
	_ = r.WriteTable(&b)
	return b.String()
}

// TestExamplesConform runs the whole kit against the sdk's examples, with
// the conformance files kept beside the tests: every check must pass.
func TestExamplesConform(t *testing.T) {
	for _, name := range []string{"bikes", "parking"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := run(t, Options{Binary: binary(t, name), File: load(t, name+".json")})
			if !r.OK() || r.Count(Pass) != len(checks) {
				t.Fatalf("want every check to pass:\n%s", table(r))
			}
			if r.Plugin != name {
				t.Errorf("report names plugin %q, want %q", r.Plugin, name)
			}
		})
	}
}

// TestProbeConforms runs the kit against the broken program without a
// flaw, so each flaw below is known to be the only thing wrong.
func TestProbeConforms(t *testing.T) {
	t.Parallel()
	r := run(t, quick(Options{Binary: binary(t, "broken"), File: load(t, "probe.json")}))
	if !r.OK() || r.Count(Pass) != len(checks) {
		t.Fatalf("want every check to pass:\n%s", table(r))
	}
}

// TestEachCheckCanFail runs each check against a plugin with the flaw
// that breaks it (testdata/broken): that check must fail, and the checks
// it depends on must still pass. A requirement without a flaw fails here.
func TestEachCheckCanFail(t *testing.T) {
	flaws := map[string][]string{}
	for _, c := range checks {
		flaws[c.ID] = []string{c.ID}
	}
	flaws["CC-PLUGIN-018"] = append(flaws["CC-PLUGIN-018"], "CC-PLUGIN-018/child")
	for _, c := range checks {
		for _, flaw := range flaws[c.ID] {
			t.Run(flaw, func(t *testing.T) {
				t.Parallel()
				r := run(t, quick(Options{Binary: binary(t, "broken"), Args: []string{flaw},
					File: load(t, "probe.json"), Only: []string{c.ID}}))
				got, ok := r.Result(c.ID)
				if !ok || got.Status != Fail {
					t.Fatalf("want %s to fail:\n%s", c.ID, table(r))
				}
				if got.Message == "" {
					t.Errorf("%s failed without saying why", c.ID)
				}
				for _, res := range r.Results {
					if res.ID != c.ID && res.Status != Pass {
						t.Errorf("%s: %s, want pass: only %s should be broken\n%s", res.ID, res.Status, c.ID, table(r))
					}
				}
				if c.Level == Should && !r.OK() {
					t.Errorf("a failed SHOULD made the run fail")
				}
				if c.Level == Must && r.OK() {
					t.Errorf("a failed MUST left the run OK")
				}
			})
		}
	}
}

// TestErrorWithoutSamples: a handled type whose payload the kit cannot
// make, and no sample of it, is the kit's error, naming what to add.
func TestErrorWithoutSamples(t *testing.T) {
	t.Parallel()
	f := load(t, "bikes.json")
	f.Samples = nil
	r := run(t, Options{Binary: binary(t, "bikes"), File: f, Only: []string{"CC-PLUGIN-009"}})
	got, _ := r.Result("CC-PLUGIN-009")
	if got.Status != Error || !strings.Contains(got.Message, "add one to samples") {
		t.Fatalf("want an error asking for a sample:\n%s", table(r))
	}
	if r.OK() {
		t.Error("a MUST that could not be checked left the run OK")
	}
}

// TestErrorBadFileConfig: a configuration the plugin's own schema refuses
// is the file's mistake, reported as an error, not the plugin's failure.
func TestErrorBadFileConfig(t *testing.T) {
	t.Parallel()
	r := run(t, Options{Binary: binary(t, "bikes"), Only: []string{"CC-PLUGIN-007"}})
	got, _ := r.Result("CC-PLUGIN-007")
	if got.Status != Error || !strings.Contains(got.Message, "fare_per_half_hour") {
		t.Fatalf("want an error naming the missing setting:\n%s", table(r))
	}
}

func TestRunRefuses(t *testing.T) {
	if _, err := Run(context.Background(), Options{Binary: "testdata/no-such-plugin"}); err == nil {
		t.Error("Run with a missing binary: no error")
	}
	if _, err := Run(context.Background(), Options{Binary: "testdata/probe.json", Only: []string{"CC-PLUGIN-999"}}); err == nil ||
		!strings.Contains(err.Error(), "CC-PLUGIN-999") {
		t.Errorf("Run with an unknown requirement: %v", err)
	}
}

var specHeading = regexp.MustCompile(`(?m)^### (CC-PLUGIN-[0-9]{3}) (MUST|SHOULD): (.+)$`)

// TestSpecInSync keeps SPEC.md and the checks in step: every requirement
// the code checks is in SPEC.md with the same level and title, in the
// same order, and SPEC.md states no requirement the code does not check.
func TestSpecInSync(t *testing.T) {
	spec, err := os.ReadFile("SPEC.md")
	if err != nil {
		t.Fatal(err)
	}
	var inSpec []Requirement
	for _, m := range specHeading.FindAllStringSubmatch(string(spec), -1) {
		inSpec = append(inSpec, Requirement{ID: m[1], Level: Level(m[2]), Title: m[3]})
	}
	if !slices.Equal(inSpec, Requirements()) {
		t.Errorf("SPEC.md and the checks differ:\nSPEC.md: %v\nchecks:  %v", inSpec, Requirements())
	}
	// Every id mentioned anywhere in SPEC.md is a requirement.
	for _, id := range regexp.MustCompile(`CC-PLUGIN-[0-9]{3}`).FindAllString(string(spec), -1) {
		if !slices.ContainsFunc(Requirements(), func(r Requirement) bool { return r.ID == id }) {
			t.Errorf("SPEC.md mentions %s, which no check has", id)
		}
	}
	seen := map[string]bool{}
	for i, r := range Requirements() {
		if want := fmt.Sprintf("CC-PLUGIN-%03d", i+1); r.ID != want {
			t.Errorf("requirement %d is %s, want %s: ids are numbered in order", i, r.ID, want)
		}
		if seen[r.ID] {
			t.Errorf("%s twice", r.ID)
		}
		seen[r.ID] = true
	}
}

func sampleReport() *Report {
	return &Report{Binary: "/bin/x", Plugin: "x", Version: "1.0.0", Started: time.Unix(0, 0), Duration: time.Second, Results: []Result{
		{ID: "CC-PLUGIN-001", Level: Must, Title: "a", Status: Pass},
		{ID: "CC-PLUGIN-002", Level: Must, Title: "b", Status: Fail, Message: "broke <badly> & \"twice\"\nsecond line"},
		{ID: "CC-PLUGIN-003", Level: Should, Title: "c", Status: Skip, Message: "nothing to check"},
		{ID: "CC-PLUGIN-004", Level: Must, Title: "d", Status: Error, Message: "add a sample"},
	}}
}

func TestOK(t *testing.T) {
	for _, tc := range []struct {
		level  Level
		status Status
		ok     bool
	}{
		{Must, Pass, true}, {Must, Skip, true}, {Must, Fail, false}, {Must, Error, false},
		{Should, Fail, true}, {Should, Error, true},
	} {
		r := &Report{Results: []Result{{ID: "CC-PLUGIN-001", Level: tc.level, Status: tc.status}}}
		if r.OK() != tc.ok {
			t.Errorf("%s %s: OK() = %v, want %v", tc.level, tc.status, r.OK(), tc.ok)
		}
	}
}

func TestWriteJUnit(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleReport().WriteJUnit(&buf); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Suites []struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
			Errors   int `xml:"errors,attr"`
			Skipped  int `xml:"skipped,attr"`
			Cases    []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Text    string `xml:",chardata"`
				} `xml:"failure"`
				Error   *struct{} `xml:"error"`
				Skipped *struct{} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("not XML: %v\n%s", err, buf.String())
	}
	if len(got.Suites) != 1 {
		t.Fatalf("%d suites", len(got.Suites))
	}
	s := got.Suites[0]
	if s.Tests != 4 || s.Failures != 1 || s.Errors != 1 || s.Skipped != 1 {
		t.Errorf("counts: %+v", s)
	}
	var names []string
	for _, c := range s.Cases {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"CC-PLUGIN-001", "CC-PLUGIN-002", "CC-PLUGIN-003", "CC-PLUGIN-004"}) {
		t.Errorf("testcases %v", names)
	}
	c := s.Cases
	if c[0].Failure != nil || c[0].Error != nil || c[0].Skipped != nil {
		t.Error("a pass has a problem element")
	}
	if c[1].Failure == nil || c[1].Failure.Message != `broke <badly> & "twice"` || !strings.Contains(c[1].Failure.Text, "second line") {
		t.Errorf("failure: %+v", c[1].Failure)
	}
	if c[2].Skipped == nil || c[3].Error == nil {
		t.Error("skip or error missing")
	}
}

func TestWriteTable(t *testing.T) {
	out := table(sampleReport())
	for _, want := range []string{"CC-PLUGIN-002  MUST", "FAIL", "CC-PLUGIN-002 FAIL: broke", "DOES NOT CONFORM: 1 passed, 1 failed, 1 skipped, 1 errors"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestParseFile(t *testing.T) {
	for _, name := range []string{"bikes.json", "parking.json", "probe.json"} {
		load(t, name)
	}
	for _, tc := range []struct{ doc, want string }{
		{`{"config": []}`, "/config"},
		{`{"samples": [{"type": "Bikes", "payload": {}}]}`, "/samples/0/type"},
		{`{"samples": [{"type": "bikes.return.v1"}]}`, "payload"},
		{`{"sample": []}`, "sample"},
		{`{"hub": {"answers": {"x.v1": 3}}}`, "/hub/answers/x.v1"},
		{`{`, "invalid JSON"},
	} {
		_, err := ParseFile("f.json", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "f.json") {
			t.Errorf("ParseFile(%s) = %v, want an error naming f.json and %q", tc.doc, err, tc.want)
		}
	}
}

func TestMinimal(t *testing.T) {
	for _, tc := range []struct{ schema, want string }{
		{`{"type":"object","required":["n","s","b","a","e"],"properties":{
			"n":{"type":"integer","minimum":3},"s":{"type":"string","minLength":2},"b":{"type":"boolean"},
			"a":{"type":"array","minItems":1,"items":{"type":"number","exclusiveMinimum":0}},"e":{"enum":["x","y"]},
			"opt":{"type":"string","pattern":"^z$"}}}`, `{"a":[1],"b":false,"e":"x","n":3,"s":"aa"}`},
		{`{"type":["null","integer"],"maximum":-2}`, `-2`},
		{`{"const":{"k":1}}`, `{"k":1}`},
	} {
		var s map[string]any
		if err := json.Unmarshal([]byte(tc.schema), &s); err != nil {
			t.Fatal(err)
		}
		v, err := minimal(s, 0)
		if err != nil {
			t.Errorf("%s: %v", tc.schema, err)
			continue
		}
		got, _ := json.Marshal(v)
		if string(got) != tc.want {
			t.Errorf("%s: got %s, want %s", tc.schema, got, tc.want)
		}
	}
	for _, schema := range []string{
		`{"type":"string","pattern":"^[0-9]+$"}`,
		`{"$ref":"x.json"}`,
		`{"type":"object","required":["x"]}`,
		`{"anyOf":[{"type":"string"}]}`,
	} {
		var s map[string]any
		_ = json.Unmarshal([]byte(schema), &s)
		if _, err := minimal(s, 0); err == nil {
			t.Errorf("%s: made a payload, want an error", schema)
		}
	}
}

func TestMutations(t *testing.T) {
	schema := json.RawMessage(`{"type":"object","required":["zone"],"properties":{"zone":{"type":"string"},"rate":{"type":"integer"}},"additionalProperties":false}`)
	ms := mutations(schema, json.RawMessage(`{"zone":"a1","rate":3}`))
	var got []string
	for _, m := range ms {
		got = append(got, m.property+" "+string(m.doc))
	}
	want := []string{
		`zone {"rate":3}`,
		`rate {"rate":"not a number","zone":"a1"}`,
		unknownProperty + ` {"` + unknownProperty + `":true,"rate":3,"zone":"a1"}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("mutations:\n got %q\nwant %q", got, want)
	}
}

// TestPluginThatDoesNotStart: every check is accounted for, and those
// that need a running plugin are skipped, not run on nothing.
func TestPluginThatDoesNotStart(t *testing.T) {
	t.Parallel()
	r := run(t, Options{Binary: binary(t, "broken"), Args: []string{"no-such-flaw"}})
	if len(r.Results) != len(checks) {
		t.Fatalf("%d results for %d checks", len(r.Results), len(checks))
	}
	for _, res := range r.Results {
		want := Skip
		switch res.ID {
		case "CC-PLUGIN-001":
			want = Fail
		case "CC-PLUGIN-002":
			want = Pass // it exits without a handshake: a clean refusal
		}
		if res.Status != want {
			t.Errorf("%s: %s, want %s", res.ID, res.Status, want)
		}
	}
	if got, _ := r.Result("CC-PLUGIN-001"); !strings.Contains(got.Message, `no flaw "no-such-flaw"`) {
		t.Errorf("the failure does not quote the plugin's stderr: %s", got.Message)
	}
	if r.OK() {
		t.Error("OK with a failed handshake")
	}
}

// TestSpecExampleFile keeps the conformance file shown in SPEC.md valid.
func TestSpecExampleFile(t *testing.T) {
	spec, err := os.ReadFile("SPEC.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```json\n(.*?)```").FindSubmatch(spec)
	if m == nil {
		t.Fatal("SPEC.md shows no conformance file")
	}
	if _, err := ParseFile("SPEC.md example", m[1]); err != nil {
		t.Error(err)
	}
}

// TestNothingToCheck: a plugin that handles no message types conforms;
// the checks that need a message are skipped for having nothing to check.
func TestNothingToCheck(t *testing.T) {
	t.Parallel()
	f := load(t, "probe.json")
	f.Samples = nil
	r := run(t, quick(Options{Binary: binary(t, "broken"), Args: []string{"handles-nothing"}, File: f}))
	skipped := []string{"CC-PLUGIN-004", "CC-PLUGIN-009", "CC-PLUGIN-010", "CC-PLUGIN-011", "CC-PLUGIN-013",
		"CC-PLUGIN-014", "CC-PLUGIN-015", "CC-PLUGIN-016"}
	for _, res := range r.Results {
		want := Pass
		if slices.Contains(skipped, res.ID) {
			want = Skip
		}
		if res.Status != want {
			t.Errorf("%s: %s, want %s (%s)", res.ID, res.Status, want, res.Message)
		}
		if res.Status == Skip && !strings.HasPrefix(res.Message, "nothing to check") {
			t.Errorf("%s skipped with %q, want nothing to check", res.ID, res.Message)
		}
	}
	if !r.OK() {
		t.Errorf("not OK:\n%s", table(r))
	}
}
