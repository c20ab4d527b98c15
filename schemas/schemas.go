// Package schemas holds the JSON Schema 2020-12 documents that are the
// contract between the hub, its plugins and its configuration, and the
// registry of error codes the hub answers with.
//
// Every *.json file in this directory except errors.json and openapi.json
// is a schema whose $id is BaseURL followed by the file name; schemas may
// $ref one another by relative file name. A schema is addressed by its file
// stem: the schema in card-product.json is "card-product".
package schemas

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v5"
)

// BaseURL is the prefix of every schema's $id.
const BaseURL = "https://citycard.example/schemas/"

// registryFile is data, not a schema.
const registryFile = "errors.json"

// openAPIFile describes the HTTP API; it references the api-*.json schemas
// but is not one itself.
const openAPIFile = "openapi.json"

//go:embed *.json
var files embed.FS

// ErrUnknownSchema is returned by Validate for a name with no schema file.
var ErrUnknownSchema = errors.New("schemas: unknown schema")

// ErrInvalidJSON is returned (wrapped together with the decoder's error) by
// Validate when the document is not a single well-formed JSON value.
var ErrInvalidJSON = errors.New("schemas: invalid JSON")

var compiled struct {
	once    sync.Once
	schemas map[string]*jsonschema.Schema
	err     error
}

// compileAll compiles every schema on first use; they are immutable after.
func compileAll() (map[string]*jsonschema.Schema, error) {
	compiled.once.Do(func() {
		compiled.schemas, compiled.err = compile()
	})
	return compiled.schemas, compiled.err
}

func compile() (map[string]*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.Draft = jsonschema.Draft2020
	// Schemas reference only each other; never reach for the file system or network.
	c.LoadURL = func(u string) (io.ReadCloser, error) {
		return nil, fmt.Errorf("schemas: %s is not an embedded schema", u)
	}
	names, err := Names()
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		b, err := files.ReadFile(name + ".json")
		if err != nil {
			return nil, err
		}
		if err := c.AddResource(BaseURL+name+".json", bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("schemas: %s: %w", name, err)
		}
	}
	out := make(map[string]*jsonschema.Schema, len(names))
	for _, name := range names {
		s, err := c.Compile(BaseURL + name + ".json")
		if err != nil {
			return nil, fmt.Errorf("schemas: %s: %w", name, err)
		}
		out[name] = s
	}
	return out, nil
}

// Names lists the schemas by file stem, sorted.
func Names() ([]string, error) {
	entries, err := fs.Glob(files, "*.json")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e == registryFile || e == openAPIFile {
			continue
		}
		names = append(names, strings.TrimSuffix(e, ".json"))
	}
	sort.Strings(names)
	return names, nil
}

// Source returns the text of the named schema, for serving or documentation.
func Source(name string) ([]byte, error) {
	if name == strings.TrimSuffix(registryFile, ".json") || path.Base(name) != name {
		return nil, fmt.Errorf("%w: %q", ErrUnknownSchema, name)
	}
	b, err := files.ReadFile(name + ".json")
	if err != nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownSchema, name)
	}
	return b, nil
}

// Compile forces compilation of every schema and reports the first failure;
// Validate does the same lazily, so calling this at start-up is optional.
func Compile() error {
	_, err := compileAll()
	return err
}

// Validate checks doc against the schema called name (a file stem such as
// "card-product"). It returns nil if doc is valid, a *ValidationError if it
// is well-formed JSON that breaks the schema, an error wrapping
// ErrInvalidJSON if it is not JSON, and one wrapping ErrUnknownSchema if
// there is no such schema.
func Validate(name string, doc []byte) error {
	if f := fast[name]; f != nil && f(doc) {
		return nil
	}
	return validateSchema(name, doc)
}

// validateSchema checks doc against the compiled schema, without a quick
// check.
func validateSchema(name string, doc []byte) error {
	all, err := compileAll()
	if err != nil {
		return err
	}
	s, ok := all[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownSchema, name)
	}
	v, err := decode(doc)
	if err != nil {
		return err
	}
	if err := s.Validate(v); err != nil {
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			return fmt.Errorf("schemas: %s: %w", name, err)
		}
		return &ValidationError{Schema: name, Violations: flatten(ve)}
	}
	return nil
}

// decode reads exactly one JSON value, keeping numbers exact for integer checks.
func decode(doc []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidJSON, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the top-level value", ErrInvalidJSON)
	}
	return v, nil
}
