package gateway

import (
	"fmt"
	"testing"

	"github.com/citycard/citycard/hub/internal/bus"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/schemas"
	"github.com/citycard/citycard/sdk"
)

// TestRetryableAgreesEverywhere checks, for every registry code, that each
// place deciding whether a failure may be retried says what errors.json
// says: the router, the ledger, the plugin protocol's error as the gateway
// sends it, and the sdk's reading of it on the plugin's side.
func TestRetryableAgreesEverywhere(t *testing.T) {
	defs := schemas.Errors()
	retryable := 0
	for _, d := range defs {
		t.Run(d.Code, func(t *testing.T) {
			err := fmt.Errorf("applying: %w", fault.E(d.Code, "", "x"))
			sent := toSDK(err)
			se := sdk.AsError(sent)
			for _, got := range []struct {
				where string
				says  bool
			}{
				{"fault.Retryable", fault.Retryable(d.Code)},
				{"bus.IsRetryable", bus.IsRetryable(err)},
				{"ledger.IsRetryable", ledger.IsRetryable(err)},
				{"toSDK's Retryable", se.Retryable},
				{"sdk.IsRetryable of toSDK", sdk.IsRetryable(sent)},
			} {
				if got.says != d.Retryable {
					t.Errorf("%s says %v, errors.json says %v", got.where, got.says, d.Retryable)
				}
			}
			if se.Code != d.Code {
				t.Errorf("toSDK changed the code to %q", se.Code)
			}
		})
		if d.Retryable {
			retryable++
		}
	}
	// Guard against a registry where the comparison is vacuous.
	if retryable == 0 || retryable == len(defs) {
		t.Errorf("%d of %d codes retryable; the table cannot tell them apart", retryable, len(defs))
	}
}
