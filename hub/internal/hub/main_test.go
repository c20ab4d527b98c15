package hub_test

import (
	"fmt"
	"os"
	"testing"
)

// testDir holds what the tests build (the payer plugin); removed at exit.
var testDir string

func osMkdirTemp() (string, error) { return testDir, nil }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "citycard-hub-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
