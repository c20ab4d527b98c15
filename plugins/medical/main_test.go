package medical_test

import (
	"testing"

	"github.com/citycard/citycard/conformance/conformancetest"
)

// TestMain removes the plugin binary the process tests built, and fails
// the run if a test leaves a goroutine behind.
func TestMain(m *testing.M) { conformancetest.Main(m) }
