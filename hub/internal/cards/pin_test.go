package cards_test

import "github.com/citycard/citycard/hub/internal/pin"

// useCheapPINs keeps argon2 real but small, so that suites that hash many
// PINs stay quick; the hashes still carry their own parameters.
func useCheapPINs() { pin.SetCostForTesting(1, 64) }
