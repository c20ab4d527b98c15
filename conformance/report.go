package conformance

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Level is how binding a requirement is, in the sense of RFC 2119.
type Level string

// Levels of requirement. A plugin conforms when every MUST passes; a SHOULD
// that fails is reported but does not fail the run.
const (
	Must   Level = "MUST"
	Should Level = "SHOULD"
)

// Status is the outcome of one check.
type Status string

// Outcomes of a check.
const (
	// Pass: the plugin meets the requirement.
	Pass Status = "pass"
	// Fail: the plugin breaks the requirement; Result.Message says how.
	Fail Status = "fail"
	// Skip: nothing to check (the plugin does not claim the feature or
	// handles nothing the check needs), or a check it depends on did not
	// pass.
	Skip Status = "skip"
	// Error: the kit itself could not carry out the check, e.g. because
	// the conformance file lacks a sample it needs.
	Error Status = "error"
)

// Result is the outcome of one check.
type Result struct {
	// ID is the requirement's stable id in SPEC.md, e.g. "CC-PLUGIN-001".
	ID string `json:"id"`
	// Level is the requirement's level.
	Level Level `json:"level"`
	// Title is the requirement in a few words.
	Title string `json:"title"`
	// Status is the outcome.
	Status Status `json:"status"`
	// Message says why the check did not pass, or notes what it saw.
	Message string `json:"message,omitempty"`
	// Duration is how long the check took.
	Duration time.Duration `json:"duration"`
}

// Report is the outcome of one run of the kit against one plugin.
type Report struct {
	// Binary is the plugin binary run.
	Binary string `json:"binary"`
	// Plugin and Version are what the plugin said it is, when it said.
	Plugin  string `json:"plugin,omitempty"`
	Version string `json:"version,omitempty"`
	// Started is when the run began; Duration how long it took.
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration"`
	// Results holds one result per check run, in the order of SPEC.md.
	Results []Result `json:"results"`
}

// OK reports whether every MUST requirement checked passed or was skipped
// for having nothing to check. A MUST check that failed or could not be
// carried out (Error) makes the run fail; SHOULD checks never do.
func (r *Report) OK() bool {
	for _, res := range r.Results {
		if res.Level == Must && (res.Status == Fail || res.Status == Error) {
			return false
		}
	}
	return true
}

// Count returns how many results have status s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, res := range r.Results {
		if res.Status == s {
			n++
		}
	}
	return n
}

// Result returns the result of the check with the given id, if it ran.
func (r *Report) Result(id string) (Result, bool) {
	for _, res := range r.Results {
		if res.ID == id {
			return res, true
		}
	}
	return Result{}, false
}

// String is the one-line form of a result, as the CLI prints it while
// the run goes on.
func (res Result) String() string {
	s := fmt.Sprintf("%-5s %s %-6s %s (%s)", strings.ToUpper(string(res.Status)), res.ID, res.Level, res.Title, res.Duration.Round(time.Millisecond))
	if res.Message != "" && res.Status != Pass {
		s += "\n      " + strings.ReplaceAll(res.Message, "\n", "\n      ")
	}
	return s
}

// WriteTable writes the results as a table, then why each check that did
// not pass did not, then a verdict line.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	name := r.Binary
	if r.Plugin != "" {
		name = fmt.Sprintf("%s %s (%s)", r.Plugin, r.Version, r.Binary)
	}
	fmt.Fprintf(&b, "conformance of %s\n\n", name)
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tLEVEL\tRESULT\tTIME\tREQUIREMENT")
	for _, res := range r.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", res.ID, res.Level, strings.ToUpper(string(res.Status)),
			res.Duration.Round(time.Millisecond), res.Title)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	notes := false
	for _, res := range r.Results {
		if res.Status == Pass || res.Message == "" {
			continue
		}
		if !notes {
			b.WriteString("\n")
			notes = true
		}
		fmt.Fprintf(&b, "%s %s: %s\n", res.ID, strings.ToUpper(string(res.Status)),
			strings.ReplaceAll(res.Message, "\n", "\n    "))
	}
	verdict := "CONFORMS"
	if !r.OK() {
		verdict = "DOES NOT CONFORM"
	}
	fmt.Fprintf(&b, "\n%s: %d passed, %d failed, %d skipped, %d errors in %s\n", verdict,
		r.Count(Pass), r.Count(Fail), r.Count(Skip), r.Count(Error), r.Duration.Round(time.Millisecond))
	_, err := io.WriteString(w, b.String())
	return err
}

// JUnit XML, as CI servers read it: one testsuite, one testcase per check
// named by its requirement id.
type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure"`
	Error     *junitProblem `xml:"error"`
	Skipped   *junitProblem `xml:"skipped"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes the report as JUnit XML: one testcase per check, named
// by its requirement id, with a failure, error or skipped element when it
// did not pass. A failed SHOULD is a failure of type "SHOULD", so CI shows
// it, although it does not fail the run.
func (r *Report) WriteJUnit(w io.Writer) error {
	name := "citycard conformance"
	if r.Plugin != "" {
		name += " " + r.Plugin
	}
	s := junitSuite{
		Name:      name,
		Tests:     len(r.Results),
		Failures:  r.Count(Fail),
		Errors:    r.Count(Error),
		Skipped:   r.Count(Skip),
		Time:      seconds(r.Duration),
		Timestamp: r.Started.UTC().Format("2006-01-02T15:04:05"),
		Properties: []junitProperty{
			{Name: "binary", Value: r.Binary},
			{Name: "plugin", Value: r.Plugin},
			{Name: "version", Value: r.Version},
		},
	}
	class := "conformance"
	if r.Plugin != "" {
		class += "." + r.Plugin
	}
	for _, res := range r.Results {
		c := junitCase{Name: res.ID, Classname: class, Time: seconds(res.Duration),
			SystemOut: fmt.Sprintf("%s %s", res.Level, res.Title)}
		p := &junitProblem{Message: firstLine(res.Message), Type: string(res.Level), Text: res.Message}
		switch res.Status {
		case Fail:
			c.Failure = p
		case Error:
			c.Error = p
		case Skip:
			c.Skipped = &junitProblem{Message: res.Message}
		}
		s.Cases = append(s.Cases, c)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(junitSuites{Suites: []junitSuite{s}}); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
