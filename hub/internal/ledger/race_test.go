//go:build race

package ledger_test

// The race detector slows the pure-Go SQLite many times over: fewer
// property sequences keep the race run short; the plain run does the rest.
const propertyChecks = "8"
