// Command citycard-plugin-medical is the medical plugin as a binary of its
// own, for the hub's plugin host to launch.
package main

import (
	"github.com/citycard/citycard/plugins/medical"
	"github.com/citycard/citycard/sdk"
)

func main() { sdk.Serve(medical.New()) }
