package transit_test

import (
	"testing"

	"github.com/citycard/citycard/conformance/conformancetest"
)

// TestMain removes the plugin binary the process tests built, and fails
// the run if a test leaves a goroutine behind: a front end that leaked a
// connection or a long poll per validator would.
func TestMain(m *testing.M) { conformancetest.Main(m) }
