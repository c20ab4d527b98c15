package pluginhost

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// Plugin binaries built once for the whole run: the sdk's parking example
// and this package's echo test plugin.
var (
	parkingBin, parkingSum string
	echoBin, echoSum       string
)

// TestMain builds the plugins, runs the tests, and fails the run if any
// test leaves a goroutine behind.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "citycard-pluginhost-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		for _, b := range []struct {
			pkg      string
			bin, sum *string
			name     string
		}{
			{"github.com/citycard/citycard/sdk/examples/parking", &parkingBin, &parkingSum, "parking"},
			{"./testdata/echo", &echoBin, &echoSum, "echo"},
		} {
			*b.bin = filepath.Join(dir, b.name)
			out, err := exec.Command("go", "build", "-o", *b.bin, b.pkg).CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "building %s: %v\n%s", b.pkg, err, out)
				return 1
			}
			if *b.sum, err = FileSHA256(*b.bin); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		code := m.Run()
		if code == 0 {
			if err := goleak.Find(); err != nil {
				fmt.Fprintln(os.Stderr, "goleak:", err)
				code = 1
			}
		}
		return code
	}()
	os.Exit(code)
}
