//go:build race

package cards_test

// The race detector slows the pure-Go SQLite some fifty times: fewer
// property sequences keep the race run short; the plain run does the rest.
const propertyChecks = "3"
