// Command citycard runs the CityCard hub and its offline tools: serve the
// API, add operators, verify the ledger.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
