// Command errorsgen writes the error registry (schemas/errors.json) out as Go:
// the hub's fault package gets every code as a constant with its HTTP status,
// ISO 8583 response code, title and retryability, and the sdk gets every code
// as an exported constant with a table of which codes are retryable. Both
// files are generated from the one registry so that no copy can drift and
// retryability is decided in one place.
//
// Usage, from a //go:generate line:
//
//	go run ../schemas/internal/errorsgen -registry ../schemas/errors.json -target sdk -o codes.go
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
)

// entry is one code of errors.json. Pointers tell a missing member from a
// zero one, since every member is required.
type entry struct {
	Code       *string `json:"code"`
	Kind       *string `json:"kind"`
	HTTPStatus *int    `json:"http_status"`
	ISO8583    *string `json:"iso8583"`
	Retryable  *bool   `json:"retryable"`
	Title      *string `json:"title"`
}

// def is an entry once checked.
type def struct {
	Code       string
	Name       string // constant name without the target's prefix
	Decline    bool
	HTTPStatus int
	ISO8583    string
	Retryable  bool
	Title      string
}

var (
	snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	isoCode   = regexp.MustCompile(`^[0-9A-Z]{2}$`)
)

// targets maps a -target to its package name and the prefix of its
// constants: the sdk's codes sit beside other exported names, so they say
// what they are.
var targets = map[string]struct{ pkg, prefix string }{
	"fault": {"fault", ""},
	"sdk":   {"sdk", "Code"},
}

func main() {
	registry := flag.String("registry", "", "path of errors.json")
	target := flag.String("target", "", "what to write: fault or sdk")
	out := flag.String("o", "", "path of the Go file to write")
	flag.Parse()
	if err := run(*registry, *target, *out); err != nil {
		fmt.Fprintln(os.Stderr, "errorsgen:", err)
		os.Exit(1)
	}
}

func run(registry, target, out string) error {
	if registry == "" || target == "" || out == "" {
		return errors.New("-registry, -target and -o are all required")
	}
	f, err := os.Open(registry)
	if err != nil {
		return err
	}
	defer f.Close()
	defs, err := parse(f)
	if err != nil {
		return fmt.Errorf("%s: %w", registry, err)
	}
	src, err := render(defs, target)
	if err != nil {
		return err
	}
	return os.WriteFile(out, src, 0o644)
}

// parse reads and checks a registry. It rejects members it does not know
// (a typo such as "retriable" would otherwise silently read as false),
// missing members, duplicate codes and codes whose constant names collide.
func parse(r io.Reader) ([]def, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var entries []entry
	if err := dec.Decode(&entries); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("data after the registry's array")
	}
	if len(entries) == 0 {
		return nil, errors.New("the registry is empty")
	}
	var defs []def
	codes := map[string]int{}
	names := map[string]string{}
	for i, e := range entries {
		d, err := check(e)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		if j, dup := codes[d.Code]; dup {
			return nil, fmt.Errorf("entry %d: duplicate code %q (also entry %d)", i, d.Code, j)
		}
		codes[d.Code] = i
		if other, dup := names[d.Name]; dup {
			return nil, fmt.Errorf("entry %d: codes %q and %q both make the constant %s", i, other, d.Code, d.Name)
		}
		names[d.Name] = d.Code
		defs = append(defs, d)
	}
	return defs, nil
}

func check(e entry) (def, error) {
	var missing []string
	for _, m := range []struct {
		name    string
		present bool
	}{
		{"code", e.Code != nil}, {"kind", e.Kind != nil}, {"http_status", e.HTTPStatus != nil},
		{"iso8583", e.ISO8583 != nil}, {"retryable", e.Retryable != nil}, {"title", e.Title != nil},
	} {
		if !m.present {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		return def{}, fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	d := def{Code: *e.Code, HTTPStatus: *e.HTTPStatus, ISO8583: *e.ISO8583, Retryable: *e.Retryable, Title: *e.Title}
	switch {
	case !snakeCase.MatchString(d.Code):
		return def{}, fmt.Errorf("code %q is not snake_case", d.Code)
	case http.StatusText(d.HTTPStatus) == "":
		return def{}, fmt.Errorf("%s: %d is not an HTTP status", d.Code, d.HTTPStatus)
	case !isoCode.MatchString(d.ISO8583) || d.ISO8583 == "00":
		return def{}, fmt.Errorf("%s: %q is not an ISO 8583 refusal code", d.Code, d.ISO8583)
	case strings.TrimSpace(d.Title) == "":
		return def{}, fmt.Errorf("%s: empty title", d.Code)
	}
	switch *e.Kind {
	case "decline":
		d.Decline = true
		if d.HTTPStatus != http.StatusOK {
			return def{}, fmt.Errorf("%s: a decline answers 200, not %d", d.Code, d.HTTPStatus)
		}
		// A decline is the final answer to its request, kept under its
		// idempotency key: sending it again gets the same decline.
		if d.Retryable {
			return def{}, fmt.Errorf("%s: a decline cannot be retryable", d.Code)
		}
	case "error":
		if d.HTTPStatus < 400 {
			return def{}, fmt.Errorf("%s: an error needs a 4xx or 5xx status, not %d", d.Code, d.HTTPStatus)
		}
	default:
		return def{}, fmt.Errorf("%s: kind %q is neither error nor decline", d.Code, *e.Kind)
	}
	d.Name = goName(d.Code)
	return d, nil
}

// goName is the constant name of a code: snake_case to CamelCase, with the
// initialisms Go spells in capitals.
func goName(code string) string {
	var b strings.Builder
	for _, p := range strings.Split(code, "_") {
		switch p {
		case "pin", "json", "id", "iso":
			b.WriteString(strings.ToUpper(p))
		default:
			b.WriteString(strings.ToUpper(p[:1]) + p[1:])
		}
	}
	return b.String()
}

// render writes the Go file for target.
func render(defs []def, target string) ([]byte, error) {
	t, ok := targets[target]
	if !ok {
		return nil, fmt.Errorf("unknown -target %q: want fault or sdk", target)
	}
	var b bytes.Buffer
	b.WriteString("// Code generated by errorsgen from schemas/errors.json; DO NOT EDIT.\n\n")
	fmt.Fprintf(&b, "package %s\n\n", t.pkg)
	groups := []struct {
		decline bool
		doc     string
	}{
		{false, "Errors: the request could not be carried out; answered with a problem document."},
		{true, "Declines: the transaction was understood and refused; answered with HTTP 200."},
	}
	for _, g := range groups {
		fmt.Fprintf(&b, "// %s\nconst (\n", g.doc)
		for _, d := range defs {
			if d.Decline != g.decline {
				continue
			}
			retry := "not retryable"
			if d.Retryable {
				retry = "retryable"
			}
			fmt.Fprintf(&b, "\t// %s%s: %s. HTTP %d, ISO 8583 %s, %s.\n", t.prefix, d.Name, strings.TrimSuffix(d.Title, "."), d.HTTPStatus, d.ISO8583, retry)
			fmt.Fprintf(&b, "\t%s%s = %q\n", t.prefix, d.Name, d.Code)
		}
		b.WriteString(")\n\n")
	}
	switch target {
	case "fault":
		b.WriteString("// def is a code's registry entry.\ntype def struct {\n")
		b.WriteString("\tstatus    int    // HTTP status\n\tiso8583   string // ISO 8583 response code\n\ttitle     string\n\tdecline   bool\n\tretryable bool\n}\n\n")
		b.WriteString("// defs holds every registry code's entry.\nvar defs = map[string]def{\n")
		for _, d := range defs {
			fmt.Fprintf(&b, "\t%s: {status: %d, iso8583: %q, title: %q, decline: %t, retryable: %t},\n", d.Name, d.HTTPStatus, d.ISO8583, d.Title, d.Decline, d.Retryable)
		}
		b.WriteString("}\n")
	case "sdk":
		b.WriteString("// codeRetryable says, for every registry code, whether the same request\n// may succeed if sent again.\nvar codeRetryable = map[string]bool{\n")
		for _, d := range defs {
			fmt.Fprintf(&b, "\t%s%s: %t,\n", t.prefix, d.Name, d.Retryable)
		}
		b.WriteString("}\n")
	}
	return format.Source(b.Bytes())
}
