package sdk

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	pluginv1 "github.com/citycard/citycard/sdk/proto/citycard/plugin/v1"
)

// configProbe is a plugin that keeps the configuration it is given.
type configProbe struct {
	schema string
	got    json.RawMessage
}

func (p *configProbe) Describe() Descriptor {
	return Descriptor{Name: "probe", Version: "1.0.0", ConfigSchema: json.RawMessage(p.schema)}
}

func (p *configProbe) Configure(_ context.Context, config json.RawMessage, _ Hub) error {
	p.got = config
	return nil
}

func (*configProbe) Handle(context.Context, Message) ([]Message, error) { return nil, nil }
func (*configProbe) Stop(context.Context) error                         { return nil }

// defaultsSchema gives defaults at the top level, in a nested object, in
// the objects of a map, through a $ref, and to a whole object.
const defaultsSchema = `{
	"type": "object",
	"required": ["zone"],
	"properties": {
		"zone": {"type": "string"},
		"timeout_ms": {"type": "integer", "minimum": 1, "default": 5000},
		"listen": {"$ref": "#/$defs/listen"},
		"link": {
			"type": "object",
			"properties": {
				"host": {"type": "string"},
				"retries": {"type": "integer", "default": 3},
				"mac": {"enum": ["ecb", "x919"], "default": "ecb"}
			},
			"additionalProperties": false
		},
		"terminals": {
			"type": "object",
			"additionalProperties": {
				"type": "object",
				"required": ["merchant"],
				"properties": {"merchant": {"type": "string"}, "mac": {"enum": ["ecb", "x919"], "default": "ecb"}},
				"additionalProperties": false
			}
		},
		"batch": {
			"type": "object",
			"properties": {"size": {"type": "integer", "default": 200}, "window_ms": {"type": "integer", "default": 2}},
			"default": {"size": 100},
			"additionalProperties": false
		}
	},
	"$defs": {"listen": {"type": "string", "minLength": 1, "default": "127.0.0.1:0"}},
	"additionalProperties": false
}`

func TestConfigureFillsSchemaDefaults(t *testing.T) {
	for _, tc := range []struct {
		name, config, want string
	}{
		{"missing at every level",
			`{"zone": "a", "link": {"host": "h"}, "terminals": {"T1": {"merchant": "M1"}}}`,
			`{"zone": "a", "timeout_ms": 5000, "listen": "127.0.0.1:0", "link": {"host": "h", "retries": 3, "mac": "ecb"},
				"terminals": {"T1": {"merchant": "M1", "mac": "ecb"}}, "batch": {"size": 100, "window_ms": 2}}`},
		{"set at every level",
			`{"zone": "a", "timeout_ms": 7, "listen": ":9", "link": {"retries": 0, "mac": "x919"},
				"terminals": {"T1": {"merchant": "M1", "mac": "x919"}, "T2": {"merchant": "M2"}}, "batch": {"size": 1, "window_ms": 0}}`,
			`{"zone": "a", "timeout_ms": 7, "listen": ":9", "link": {"retries": 0, "mac": "x919"},
				"terminals": {"T1": {"merchant": "M1", "mac": "x919"}, "T2": {"merchant": "M2", "mac": "ecb"}}, "batch": {"size": 1, "window_ms": 0}}`},
		{"an absent object without a default stays absent",
			`{"zone": "a"}`,
			`{"zone": "a", "timeout_ms": 5000, "listen": "127.0.0.1:0", "batch": {"size": 100, "window_ms": 2}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &configProbe{schema: defaultsSchema}
			s, err := newPluginServer(p, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := s.Configure(context.Background(), &pluginv1.ConfigureRequest{Config: []byte(tc.config)})
			if err != nil || resp.GetError() != nil {
				t.Fatalf("Configure: %v %v", err, resp.GetError())
			}
			var got, want any
			if err := json.Unmarshal(p.got, &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("the plugin got %s\nwant %s", p.got, tc.want)
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	v := mustValidator(t, Descriptor{Name: "probe", Version: "1.0.0", ProtocolVersions: []uint32{ProtocolVersion},
		ConfigSchema: json.RawMessage(defaultsSchema)})
	// Nothing missing: the operator's bytes go through untouched.
	full := `{"zone":"a","timeout_ms":1,"listen":"x","batch":{"size":1,"window_ms":1}}`
	got, err := v.withDefaults(json.RawMessage(full))
	if err != nil || string(got) != full {
		t.Errorf("withDefaults(%s) = %s, %v", full, got, err)
	}
	// The default object is copied into the configuration, never filled in place.
	if _, err := v.withDefaults(json.RawMessage(`{"zone":"a"}`)); err != nil {
		t.Fatal(err)
	}
	if def := v.config.Properties["batch"].Default; !reflect.DeepEqual(def, map[string]any{"size": json.Number("100")}) {
		t.Errorf("the schema's default for batch became %v", def)
	}
	// A plugin without a config schema takes {} and gets {}.
	v = mustValidator(t, Descriptor{Name: "probe", Version: "1.0.0", ProtocolVersions: []uint32{ProtocolVersion}})
	if got, err := v.withDefaults(nil); err != nil || string(got) != "{}" {
		t.Errorf("withDefaults(nil) = %s, %v", got, err)
	}
}

func TestWithDefaultsRefusesABadDefault(t *testing.T) {
	v := mustValidator(t, Descriptor{Name: "probe", Version: "1.0.0", ProtocolVersions: []uint32{ProtocolVersion},
		ConfigSchema: json.RawMessage(`{"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "default": 0}}}`)})
	_, err := v.withDefaults(json.RawMessage(`{}`))
	if e := AsError(err); err == nil || e.Code != CodeConfigInvalid || e.Field != "/n" {
		t.Errorf("err = %v, want config_invalid at /n", err)
	}
}
