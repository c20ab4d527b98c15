package ledger_test

import (
	"flag"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// Every property sequence commits on a real SQLite store and reloads
	// after each injected failure: a bounded number keeps the suite quick
	// (propertyChecks); ask for more with -rapid.checks.
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if !set {
		_ = flag.Set("rapid.checks", propertyChecks)
	}
	os.Exit(m.Run())
}
