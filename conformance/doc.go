// Package conformance is the kit that proves a CityCard channel plugin
// against the requirements of SPEC.md, as `citycard conformance` does from
// the command line.
//
// Run launches the plugin binary exactly as the hub's plugin host does,
// plays the hub itself (a stand-in that records every submission, applies
// each idempotency key once, and can be made slow or failing), runs one
// check per requirement and returns a Report:
//
//	f, err := conformance.LoadFile("testdata/parking.json")
//	…
//	r, err := conformance.Run(ctx, conformance.Options{Binary: "bin/parking", File: f})
//	…
//	r.WriteTable(os.Stdout)
//	if !r.OK() { … }
//
// Each check names its requirement id (CC-PLUGIN-001, …); Requirements
// lists them, and a test keeps them and SPEC.md in step.
package conformance
