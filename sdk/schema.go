package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v5"

	"github.com/citycard/citycard/schemas"
)

// payloadSchema is the schema of one message type: either one the plugin
// carries, compiled here, or one of the hub's, validated by package schemas.
type payloadSchema struct {
	id       string
	carried  *jsonschema.Schema
	embedded string // file stem in package schemas, when not carried
}

// validate returns the payload's violations, with paths relative to the
// payload; a payload that is not one JSON value is one violation at "".
func (p *payloadSchema) validate(payload []byte) []schemas.Violation {
	if p.carried == nil {
		err := schemas.Validate(p.embedded, payload)
		var ve *schemas.ValidationError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ve):
			return ve.Violations
		default:
			return []schemas.Violation{{Keyword: "type", Message: err.Error()}}
		}
	}
	v, err := decodeJSON(payload)
	if err != nil {
		return []schemas.Violation{{Keyword: "type", Message: err.Error()}}
	}
	return violations(p.carried.Validate(v))
}

// embeddedName maps a schema id to a file stem of package schemas: the stem
// itself or its URI under schemas.BaseURL.
func embeddedName(id string) string {
	name := strings.TrimPrefix(id, schemas.BaseURL)
	return strings.TrimSuffix(name, ".json")
}

// schemaCompiler compiles the schemas a plugin carries. They may $ref the
// hub's schemas by URI and nothing else: validation must never reach for
// the network or the file system.
func schemaCompiler() *jsonschema.Compiler {
	c := jsonschema.NewCompiler()
	c.Draft = jsonschema.Draft2020
	// Keeps each "default", which WithDefaults fills a configuration from.
	c.ExtractAnnotations = true
	c.LoadURL = func(u string) (io.ReadCloser, error) {
		name, ok := strings.CutPrefix(u, schemas.BaseURL)
		if !ok {
			return nil, fmt.Errorf("%s: a plugin's schema may only reference the hub's schemas (%s…)", u, schemas.BaseURL)
		}
		b, err := schemas.Source(strings.TrimSuffix(name, ".json"))
		if err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	return c
}

// compileCarried compiles schema under id, which must be an absolute URI
// outside the hub's namespace and agree with the schema's own $id.
func compileCarried(c *jsonschema.Compiler, id string, schema json.RawMessage) (*jsonschema.Schema, error) {
	u, err := url.Parse(id)
	if err != nil || !u.IsAbs() {
		return nil, fmt.Errorf("schema_id %q: a carried schema needs an absolute URI as its id", id)
	}
	if strings.HasPrefix(id, schemas.BaseURL) {
		return nil, fmt.Errorf("schema_id %q: %s names the hub's own schemas; carry yours under your own URI", id, schemas.BaseURL)
	}
	var head struct {
		ID *string `json:"$id"`
	}
	if err := json.Unmarshal(schema, &head); err != nil {
		return nil, fmt.Errorf("schema %s: %w", id, err)
	}
	if head.ID != nil && *head.ID != id {
		return nil, fmt.Errorf("schema %s: its $id is %q; the two must match", id, *head.ID)
	}
	if err := c.AddResource(id, bytes.NewReader(schema)); err != nil {
		return nil, fmt.Errorf("schema %s: %w", id, err)
	}
	s, err := c.Compile(id)
	if err != nil {
		return nil, fmt.Errorf("schema %s: %w", id, err)
	}
	return s, nil
}

// decodeJSON reads exactly one JSON value, keeping numbers exact so that
// integer checks on money are honest.
func decodeJSON(doc []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("not valid JSON: data after the top-level value")
	}
	return v, nil
}

// violations flattens a jsonschema error by the rules of package schemas,
// so a carried schema's errors read exactly like the hub's.
func violations(err error) []schemas.Violation { return schemas.Violations(err) }

// maxListed bounds an error message so a badly broken document does not
// flood the logs.
const maxListed = 5

// violationError turns violations into one *Error: Field is the first
// violation's path (under prefix), Message lists them up to maxListed. vs
// must not be empty.
func violationError(code, what, prefix string, vs []schemas.Violation) *Error {
	var b strings.Builder
	b.WriteString(what)
	for i, v := range vs {
		if i == maxListed {
			fmt.Fprintf(&b, "; and %d more", len(vs)-maxListed)
			break
		}
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		v.InstancePath = prefix + v.InstancePath
		b.WriteString(v.String())
	}
	// Field stays "" for the document's root: "/" would be a pointer to a
	// property named "".
	return &Error{Code: code, Message: b.String(), Field: prefix + vs[0].InstancePath}
}
