package utilities_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a goroutine behind: a plugin
// that leaks a connection per payment would.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
