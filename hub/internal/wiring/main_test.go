package wiring_test

import (
	"os"
	"testing"

	"github.com/citycard/citycard/conformance/conformancetest"
)

// TestMain removes the plugin binaries the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	conformancetest.Cleanup()
	os.Exit(code)
}
