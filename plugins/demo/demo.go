// Package demo is how a bundled reference plugin takes part in
// `citycard demo` and `citycard plugin serve`: it names the plugin, starts
// the partner simulator the plugin talks to, lists the merchants the hub
// must know for it, and registers the plugin's scripted demo flows.
//
// Partners' plugins never need this package: it exists for the plugins
// that ship inside the citycard binary.
package demo

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/citycard/citycard/sdk"
)

// Bundle is one reference plugin shipped inside the citycard binary.
type Bundle struct {
	// Name is the plugin's name, as in its Descriptor and the hub's
	// plugin configuration.
	Name string
	// Channel is the channel policy (channels/*.json) the hub applies to
	// the card payments the plugin submits.
	Channel string
	// New returns the plugin, served by `citycard plugin serve NAME` in a
	// process of its own.
	New func() sdk.Plugin
	// Merchants are seeded in the hub before the plugin starts.
	Merchants []Merchant
	// Start starts the plugin's partner simulator, if it has one, and
	// returns the plugin's configuration pointing at it. stop ends the
	// simulator; it is called after the plugin has stopped.
	Start func(ctx context.Context) (config json.RawMessage, stop func(), err error)
	// Flows are the plugin's scripted demo flows, run in order.
	Flows []Flow
}

// Merchant is a merchant the hub must know before a plugin can charge
// cards on its behalf.
type Merchant struct {
	ID   string
	Name string
	// MCC is the ISO 18245 merchant category code, e.g. "4900" for
	// utilities.
	MCC string
	// FeeRateBps is the merchant's fee in basis points of each payment.
	FeeRateBps int64
}

// Flow is one scripted demo flow. Run returns nil when the flow did what
// it shows; otherwise an error that says what went wrong.
type Flow struct {
	Name string
	Run  func(ctx context.Context, env Env) error
}

// Env is what a flow can use: the running hub, its plugins and the cards
// the demo seeded.
type Env interface {
	// Send delivers m to the named plugin through the hub's router, as
	// the hub's services do, and returns the plugin's replies.
	Send(ctx context.Context, plugin string, m sdk.Message) ([]sdk.Message, error)
	// API calls the hub's HTTP API as the demo's administrator: body is
	// marshalled to JSON (nil sends none), the answer is decoded into out
	// (nil discards it). A problem answer is returned as an error holding
	// its code and detail.
	API(ctx context.Context, method, path string, body, out any) error
	// Card returns the number of a seeded card by its holder's name:
	// "alice" (a named card with 500.00 yuan in cash), "bob" (named, 3.00
	// yuan) and "carol" (named, reported lost).
	Card(holder string) string
	// Logf writes one line of the flow's own progress.
	Logf(format string, args ...any)
}

// Yuan formats fen for people: 12345 is "123.45 CNY", -50 "-0.50 CNY".
func Yuan(fen int64) string {
	sign := ""
	if fen < 0 {
		sign, fen = "-", -fen
	}
	return fmt.Sprintf("%s%d.%02d CNY", sign, fen/100, fen%100)
}
