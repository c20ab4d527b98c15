// Package conformancetest is what a plugin's own tests use to build the
// plugin binary, run it as the hub does and prove it with the conformance
// kit, the way CI proves every reference plugin.
package conformancetest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"go.uber.org/goleak"

	"github.com/citycard/citycard/conformance"
	"github.com/citycard/citycard/internal/pluginwire"
	"github.com/citycard/citycard/sdk"
)

// OutEnv names the directory where Check writes each plugin's JUnit
// report; CI sets it and fails a reference plugin without a report.
const OutEnv = "CITYCARD_CONFORMANCE_OUT"

type build struct {
	once sync.Once
	path string
	sum  []byte
	err  error
}

var builds struct {
	mu  sync.Mutex
	dir string
	by  map[string]*build
}

// Build builds the Go package pkg (a path relative to the test's package
// directory, such as "./cmd/citycard-plugin-pos", or an import path) once
// per test binary and returns the binary and its SHA-256 sum. It skips the
// test under -short. Call Cleanup from TestMain to remove the builds.
func Build(tb testing.TB, pkg string) (path string, sum []byte) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("-short: builds a plugin binary")
	}
	builds.mu.Lock()
	if builds.by == nil {
		builds.by = map[string]*build{}
	}
	b := builds.by[pkg]
	if b == nil {
		b = &build{}
		builds.by[pkg] = b
	}
	builds.mu.Unlock()
	b.once.Do(func() {
		dir, err := buildDir()
		if err != nil {
			b.err = err
			return
		}
		id := sha256.Sum256([]byte(pkg))
		b.path = filepath.Join(dir, fmt.Sprintf("%x-%s", id[:4], filepath.Base(pkg)))
		if out, err := exec.Command("go", "build", "-o", b.path, pkg).CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
			return
		}
		raw, err := os.ReadFile(b.path)
		if err != nil {
			b.err = err
			return
		}
		s := sha256.Sum256(raw)
		b.sum = s[:]
	})
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.path, b.sum
}

func buildDir() (string, error) {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "citycard-plugin-builds-")
		if err != nil {
			return "", err
		}
		builds.dir = dir
	}
	return builds.dir, nil
}

// Cleanup removes every binary Build built.
func Cleanup() {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		_ = os.RemoveAll(builds.dir)
		builds.dir = ""
	}
}

// Main is a TestMain for a package whose tests Build its plugin: it runs
// the tests, removes the builds and, if every test passed, fails the run
// when a test left a goroutine behind. It does not return.
func Main(m *testing.M) {
	code := m.Run()
	Cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// Launch runs the plugin binary bin, whose SHA-256 sum is sum, as the
// hub's plugin host does (checksum, AutoMTLS, gRPC) and
// returns the hub's handle on it, its Descriptor, and a context for the
// test's calls that ends after 20 seconds. The process is killed when the
// test ends.
func Launch(tb testing.TB, bin string, sum []byte) (*pluginwire.Client, sdk.Descriptor, context.Context) {
	tb.Helper()
	pc := plugin.NewClient(pluginwire.ClientConfig(exec.Command(bin), sum))
	tb.Cleanup(pc.Kill)
	c, err := pluginwire.Dispense(pc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	tb.Cleanup(cancel)
	d, err := c.Describe(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return c, d, ctx
}

// MustJSON returns a function that marshals a value to JSON, failing tb if
// it cannot, for writing a conformance.File's configurations and samples.
func MustJSON(tb testing.TB) func(v any) json.RawMessage {
	return func(v any) json.RawMessage {
		tb.Helper()
		raw, err := json.Marshal(v)
		if err != nil {
			tb.Fatal(err)
		}
		return raw
	}
}

// Check proves the plugin binary bin with the conformance file f. It logs
// the results table, writes the JUnit report to $CITYCARD_CONFORMANCE_OUT/
// <name>.xml when that is set, and fails t unless every MUST requirement
// passes and no check failed or errored.
func Check(t *testing.T, name, bin string, f *conformance.File) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := conformance.Run(ctx, conformance.Options{Binary: bin, File: f})
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	_ = r.WriteTable(&table)
	t.Logf("conformance of the %s plugin:\n%s", name, table.String())
	if dir := os.Getenv(OutEnv); dir != "" {
		out, err := os.Create(filepath.Join(dir, name+".xml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.WriteJUnit(out); err != nil {
			t.Fatal(err)
		}
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if !r.OK() || r.Count(conformance.Fail)+r.Count(conformance.Error) > 0 {
		t.Errorf("the %s plugin does not conform:\n%s", name, table.String())
	}
}
