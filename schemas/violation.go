package schemas

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// Violation is one way in which a document breaks its schema.
type Violation struct {
	// InstancePath is a JSON pointer (RFC 6901) to the offending value; ""
	// is the whole document. For an unknown property it points at the
	// property itself; for a missing required property, at the object.
	InstancePath string `json:"instance_path"`
	// Keyword is the schema keyword that failed, e.g. "required",
	// "minimum", "pattern" or "unevaluatedProperties".
	Keyword string `json:"keyword"`
	// Message describes the failure in English.
	Message string `json:"message"`
}

// String formats the violation as "path: keyword: message", "/" for the root.
func (v Violation) String() string {
	p := v.InstancePath
	if p == "" {
		p = "/"
	}
	return fmt.Sprintf("%s: %s: %s", p, v.Keyword, v.Message)
}

// ValidationError reports every violation found in a document, sorted by
// InstancePath then Keyword.
type ValidationError struct {
	Schema     string
	Violations []Violation
}

// maxListed bounds Error() so a badly broken document does not flood the logs.
const maxListed = 5

// Error counts the violations and lists the first few.
func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "schemas: %s: %d violation", e.Schema, len(e.Violations))
	if len(e.Violations) != 1 {
		b.WriteString("s")
	}
	for i, v := range e.Violations {
		if i == maxListed {
			fmt.Fprintf(&b, "; and %d more", len(e.Violations)-maxListed)
			break
		}
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(v.String())
	}
	return b.String()
}

// Violations flattens an error from a schema compiled with
// santhosh-tekuri/jsonschema into leaf violations, by the rules every
// CityCard schema error follows (the sdk uses it for the schemas plugins
// carry). An error of another kind becomes one violation with its message.
func Violations(err error) []Violation {
	if err == nil {
		return nil
	}
	var root *jsonschema.ValidationError
	if !errors.As(err, &root) {
		return []Violation{{Message: err.Error()}}
	}
	return flatten(root)
}

// flatten keeps only the leaf causes: the wrappers (allOf, $ref, if-then)
// only say that something below them failed.
func flatten(root *jsonschema.ValidationError) []Violation {
	var out []Violation
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			v := leaf(e)
			if names, ok := unknownProperties(v); ok {
				for _, n := range names {
					out = append(out, Violation{InstancePath: v.InstancePath + "/" + EscapePointer(n),
						Keyword: v.Keyword, Message: "unknown property"})
				}
				return
			}
			out = append(out, v)
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(root)
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].InstancePath != out[j].InstancePath {
			return out[i].InstancePath < out[j].InstancePath
		}
		if out[i].Keyword != out[j].Keyword {
			return out[i].Keyword < out[j].Keyword
		}
		return out[i].Message < out[j].Message
	})
	return out
}

func leaf(e *jsonschema.ValidationError) Violation {
	v := Violation{InstancePath: e.InstanceLocation, Keyword: keyword(e.KeywordLocation), Message: e.Message}
	if v.Message == "not allowed" && (v.Keyword == "unevaluatedProperties" || v.Keyword == "additionalProperties") {
		v.Message = "unknown property"
	}
	return v
}

// Keywords whose next segment in a keyword location is a property name or
// an index rather than another keyword.
var (
	namedKeywords = map[string]bool{
		"properties": true, "patternProperties": true, "$defs": true, "definitions": true,
		"dependentSchemas": true, "dependentRequired": true, "dependencies": true,
	}
	indexedKeywords = map[string]bool{
		"allOf": true, "anyOf": true, "oneOf": true, "prefixItems": true,
	}
)

// keyword returns the last keyword in a keyword location such as
// "/properties/purses/items/$ref/properties/name/pattern" ("pattern"),
// skipping property names and indexes so a property called "minimum" is
// never mistaken for the keyword.
func keyword(loc string) string {
	segs := strings.Split(strings.TrimPrefix(loc, "/"), "/")
	kw := ""
	for i := 0; i < len(segs); i++ {
		s := segs[i]
		if s == "" {
			continue
		}
		kw = s
		switch {
		case namedKeywords[s]:
			i++
			if s == "dependentRequired" || s == "dependencies" {
				i++ // and the index into the list of required names
			}
		case indexedKeywords[s]:
			i++
		}
	}
	return kw
}

// quotedName matches one name in jsonschema's list of unknown properties.
var quotedName = regexp.MustCompile(`'((?:[^'\\]|\\.)*)'`)

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// EscapePointer escapes a property name for a JSON pointer (RFC 6901).
func EscapePointer(name string) string { return pointerEscaper.Replace(name) }

// unknownProperties splits jsonschema's "additionalProperties 'a', 'b' not
// allowed", reported at the object, into the names, so that each unknown
// property is reported at its own path as unevaluatedProperties is: the
// path is what a partner needs to find the typo.
func unknownProperties(v Violation) ([]string, bool) {
	if v.Keyword != "additionalProperties" || !strings.HasPrefix(v.Message, "additionalProperties '") {
		return nil, false
	}
	var names []string
	for _, m := range quotedName.FindAllStringSubmatch(v.Message, -1) {
		// Undo jsonschema's quoting: %q, then \" → " and ' → \'.
		q := strings.ReplaceAll(strings.ReplaceAll(m[1], `\'`, `'`), `"`, `\"`)
		name, err := strconv.Unquote(`"` + q + `"`)
		if err != nil {
			return nil, false
		}
		names = append(names, name)
	}
	return names, len(names) > 0
}
