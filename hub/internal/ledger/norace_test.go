//go:build !race

package ledger_test

// propertyChecks is how many random sequences TestWriterUnderFaults runs
// unless -rapid.checks says otherwise.
const propertyChecks = "40"
