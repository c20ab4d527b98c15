package pos_test

import (
	"testing"

	"github.com/citycard/citycard/conformance/conformancetest"
)

// TestMain removes the plugin binary the process tests built, and fails
// the run if a test leaves a goroutine behind: a front end that leaks a
// goroutine per terminal connection would.
func TestMain(m *testing.M) { conformancetest.Main(m) }
