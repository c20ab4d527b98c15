package main

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestConformanceScripts runs the scripts in testdata/conformance against
// real plugin binaries: $BIKES (sdk/examples/bikes, which conforms) and
// $BROKEN (conformance/testdata/broken, with a flaw per requirement). The
// kit's conformance files are in $CONFORMANCE.
func TestConformanceScripts(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is not on PATH, so no plugin can be built: %v", err)
	}
	dir := t.TempDir()
	cmd := exec.Command(gobin, "build", "-o", dir, "../../../sdk/examples/bikes", "../../../conformance/testdata/broken")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	files, err := filepath.Abs("../../../conformance/testdata")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/conformance",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("BIKES", filepath.Join(dir, "bikes"))
			env.Setenv("BROKEN", filepath.Join(dir, "broken"))
			env.Setenv("CONFORMANCE", files)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode": cmdExitCode,
			"junit":    cmdJUnit,
		},
	})
}

// cmdJUnit checks that a file is JUnit XML with one testsuite of the given
// number of testcases, failures, errors and skipped, every testcase named
// by a requirement id:
//
//	junit report.xml 18 0 0 0
func cmdJUnit(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 5 {
		ts.Fatalf("usage: junit FILE TESTS FAILURES ERRORS SKIPPED")
	}
	data, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	var doc struct {
		XMLName xml.Name `xml:"testsuites"`
		Suites  []struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
			Errors   int `xml:"errors,attr"`
			Skipped  int `xml:"skipped,attr"`
			Cases    []struct {
				Name string `xml:"name,attr"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &doc); err != nil {
		ts.Fatalf("%s is not JUnit XML: %v", args[0], err)
	}
	if len(doc.Suites) != 1 {
		ts.Fatalf("%s has %d testsuites, want 1", args[0], len(doc.Suites))
	}
	s := doc.Suites[0]
	var want [4]int
	for i, a := range args[1:] {
		if want[i], err = strconv.Atoi(a); err != nil {
			ts.Fatalf("junit: %q is not a number", a)
		}
	}
	if got := [4]int{s.Tests, s.Failures, s.Errors, s.Skipped}; got != want {
		ts.Fatalf("%s: tests, failures, errors, skipped = %v, want %v", args[0], got, want)
	}
	if len(s.Cases) != s.Tests {
		ts.Fatalf("%s: %d testcases, but tests=%d", args[0], len(s.Cases), s.Tests)
	}
	for _, c := range s.Cases {
		if !strings.HasPrefix(c.Name, "CC-PLUGIN-") {
			ts.Fatalf("%s: testcase %q is not named by a requirement id", args[0], c.Name)
		}
	}
}
