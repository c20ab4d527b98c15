// Command citycard-plugin-utilities is the utilities plugin as a binary of
// its own, for the hub's plugin host to launch.
package main

import (
	"github.com/citycard/citycard/plugins/utilities"
	"github.com/citycard/citycard/sdk"
)

func main() { sdk.Serve(utilities.New()) }
