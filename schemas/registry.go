package schemas

import (
	"encoding/json"
	"fmt"
	"sync"
)

// Kinds of registry entry.
const (
	// KindError is a request the hub could not carry out: answered with a
	// 4xx/5xx problem document.
	KindError = "error"
	// KindDecline is a well-formed transaction the hub refused: an answer,
	// not a failure, so it travels with HTTP 200 and its ISO 8583 code.
	KindDecline = "decline"
)

// ErrorDef is one entry of the error registry (errors.json).
type ErrorDef struct {
	Code       string `json:"code"`
	Kind       string `json:"kind"`
	HTTPStatus int    `json:"http_status"`
	ISO8583    string `json:"iso8583"`
	// Retryable says whether the same request, sent again as it was, may
	// succeed later.
	Retryable bool   `json:"retryable"`
	Title     string `json:"title"`
}

var registry struct {
	once   sync.Once
	defs   []ErrorDef
	byCode map[string]ErrorDef
}

func loadRegistry() {
	registry.once.Do(func() {
		b, err := files.ReadFile(registryFile)
		if err != nil {
			panic(fmt.Sprintf("schemas: %s: %v", registryFile, err))
		}
		var defs []ErrorDef
		if err := json.Unmarshal(b, &defs); err != nil {
			// The file is embedded and covered by tests; a bad one is a build defect.
			panic(fmt.Sprintf("schemas: %s: %v", registryFile, err))
		}
		registry.defs = defs
		registry.byCode = make(map[string]ErrorDef, len(defs))
		for _, d := range defs {
			registry.byCode[d.Code] = d
		}
	})
}

// Errors returns a copy of the error registry in file order.
func Errors() []ErrorDef {
	loadRegistry()
	return append([]ErrorDef(nil), registry.defs...)
}

// LookupError returns the registry entry for code.
func LookupError(code string) (ErrorDef, bool) {
	loadRegistry()
	d, ok := registry.byCode[code]
	return d, ok
}

// RegistrySource returns errors.json as embedded, for serving to partners.
func RegistrySource() []byte {
	b, err := files.ReadFile(registryFile)
	if err != nil {
		panic(fmt.Sprintf("schemas: %s: %v", registryFile, err))
	}
	return b
}
