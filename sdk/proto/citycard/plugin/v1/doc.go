// Package pluginv1 is the generated Go code for CityCard plugin protocol
// version 1 (plugin.proto beside this file). Plugin authors use package sdk
// instead; this package is for the sdk itself and for tools that speak the
// wire protocol directly. Regenerate with `go generate ./sdk/proto`.
package pluginv1
