//go:build !race

package cards_test

// propertyChecks is how many random sequences the property test runs
// unless -rapid.checks says otherwise.
const propertyChecks = "20"
