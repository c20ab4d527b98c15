//go:build race

package main

// raceEnabled is true when the tests run with -race; the binary the
// process tests build then runs with the race detector too.
const raceEnabled = true
