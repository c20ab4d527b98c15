package conformance

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/citycard/citycard/schemas"
)

// fileSchema is the schema of a conformance file in package schemas.
const fileSchema = "conformance-file"

// File is a conformance file: what the kit needs to exercise one plugin.
// Its JSON form is described by schemas/conformance-file.json and
// conformance/SPEC.md.
type File struct {
	// Config is a valid configuration of the plugin; nil means {}.
	Config json.RawMessage `json:"config,omitempty"`
	// BadConfigs are configurations the plugin must refuse, besides those
	// the kit derives from its configuration schema.
	BadConfigs []BadConfig `json:"bad_configs,omitempty"`
	// Samples are messages the plugin must handle successfully.
	Samples []Sample `json:"samples,omitempty"`
	// Hub holds answers of the kit's stand-in hub.
	Hub HubAnswers `json:"hub,omitzero"`
}

// BadConfig is a configuration the plugin must refuse.
type BadConfig struct {
	Config json.RawMessage `json:"config"`
	// Why says what is wrong with it, for the report.
	Why string `json:"why,omitempty"`
}

// Sample is a message the plugin must handle successfully.
type Sample struct {
	Type           string            `json:"type"`
	Payload        json.RawMessage   `json:"payload"`
	IdempotencyKey string            `json:"idempotency_key,omitempty"`
	Metadata       map[string]string `json:"metadata,omitempty"`
}

// HubAnswers replaces the stand-in hub's default answers.
type HubAnswers struct {
	// Answers maps a message type to the body the hub answers a submission
	// of that type with.
	Answers map[string]json.RawMessage `json:"answers,omitempty"`
	// Queries are answers to Query(kind, key).
	Queries []QueryAnswer `json:"queries,omitempty"`
}

// QueryAnswer answers Query(Kind, Key); an empty Key answers every key.
type QueryAnswer struct {
	Kind   string          `json:"kind"`
	Key    string          `json:"key,omitempty"`
	Answer json.RawMessage `json:"answer"`
}

// ParseFile reads a conformance file from its JSON text. name is the
// file's name for error messages. A file that breaks the schema is refused
// with every violation, each with the JSON pointer of the bad value.
func ParseFile(name string, data []byte) (*File, error) {
	if err := schemas.Validate(fileSchema, data); err != nil {
		var ve *schemas.ValidationError
		if errors.As(err, &ve) {
			msg := fmt.Sprintf("conformance file %s is not valid:", name)
			for _, v := range ve.Violations {
				msg += "\n  " + v.String()
			}
			return nil, errors.New(msg)
		}
		return nil, fmt.Errorf("conformance file %s: %w", name, err)
	}
	var f File
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("conformance file %s: %w", name, err)
	}
	return &f, nil
}

// LoadFile reads and checks the conformance file at path.
func LoadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("conformance file: %w", err)
	}
	return ParseFile(path, data)
}
