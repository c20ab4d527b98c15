// Package sdk is the public Go API for writing CityCard channel plugins.
//
// A plugin is a separate program that adapts one channel (bus validators,
// a hospital's system, a bank host) to the hub. Its author implements the
// Plugin interface and calls Serve from main:
//
//	func main() { sdk.Serve(&Meter{}) }
//
// # Life cycle
//
// The hub launches the binary, checks its SHA-256 sum, and talks to it over
// gRPC through hashicorp/go-plugin with mutual TLS. Then, always in this
// order:
//
//  1. Describe: the plugin says who it is, which message types it sends and
//     handles (each with a JSON Schema) and the schema of its configuration.
//  2. Configure: the hub checks the configuration against that schema and
//     hands it over with a Hub, the plugin's way back into the hub.
//  3. Handle, many times and concurrently: the hub delivers a message; the
//     plugin may reply, and may Submit messages to the Hub or Query it.
//     Health is polled meanwhile.
//  4. Stop, then the hub ends the process.
//
// # Who calls what
//
// A plugin author uses Serve, implements Plugin (and HealthChecker, if it
// can tell), and calls the Hub handed to Configure. The hub's end of the
// protocol (launching a plugin and calling it) is not part of this package:
// it lives in the repository's internal/pluginwire, which runs this
// package's own validation and wire code, so both ends check alike.
//
// # Validation
//
// Every message is checked against its schema on both sides: the sdk
// refuses an invalid message a plugin sends (CodeSchemaInvalid, with the
// JSON pointer of the bad value in Error.Field) before it leaves the
// process, and the hub checks it again on arrival, as a plugin need not be
// built with this package. Configuration is checked by both sides too.
//
// # Errors
//
// Failures cross the boundary as *Error with a stable Code, so errors.As
// and errors.Is work on both sides. A plugin that crashes or times out
// yields a retryable *Error, which the hub retries after a restart.
//
// # Versions
//
// This package speaks plugin protocol v1 (sdk/proto/citycard/plugin/v1),
// frozen once released: changes go to v2, served beside it.
//
// Package sdk/plugintest runs a plugin in-process against a fake hub, for
// plugin authors' own tests.
package sdk
