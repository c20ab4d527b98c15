package conformance

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// bins holds the plugin binaries the tests build, once per test binary.
var bins struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		if left := strays(bins.dir); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "processes of the test plugins still running: %s\n", strings.Join(left, ", "))
			code = 1
		}
		os.RemoveAll(bins.dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// plugins under test, by name: the two sdk examples and the program with
// one flaw per requirement.
var pluginPkgs = map[string]string{
	"bikes":   "../sdk/examples/bikes",
	"parking": "../sdk/examples/parking",
	"broken":  "./testdata/broken",
}

// binary returns the path of a test plugin, building them all on first
// use with one go build.
func binary(t testing.TB, name string) string {
	t.Helper()
	bins.once.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			bins.err = fmt.Errorf("the go command is not on PATH: %w", err)
			return
		}
		if bins.dir, err = os.MkdirTemp("", "conformance-plugins-"); err != nil {
			bins.err = err
			return
		}
		args := []string{"build", "-o", bins.dir}
		for _, pkg := range pluginPkgs {
			args = append(args, pkg)
		}
		out, err := exec.Command(gobin, args...).CombinedOutput()
		if err != nil {
			bins.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if bins.err != nil {
		if strings.Contains(bins.err.Error(), "not on PATH") {
			t.Skip(bins.err)
		}
		t.Fatal(bins.err)
	}
	exe := filepath.Join(bins.dir, filepath.Base(pluginPkgs[name]))
	if runtime.GOOS == "windows" {
		exe += ".exe"
	}
	return exe
}

// strays lists running processes whose executable is in dir.
func strays(dir string) []string {
	if runtime.GOOS != "linux" {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || !strings.HasPrefix(exe, dir) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && strings.Contains(string(stat), ") Z ") {
			continue
		}
		out = append(out, e.Name()+" "+exe)
	}
	return out
}
