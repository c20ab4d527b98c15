package medical_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/citycard/citycard/conformance/conformancetest"
)

// TestMain removes the plugin binary the process tests built, and fails
// the run if a test leaves a goroutine behind.
func TestMain(m *testing.M) {
	code := m.Run()
	conformancetest.Cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
