// Command citycard-plugin-pos is the POS plugin as a binary of its own, for
// the hub's plugin host to launch.
package main

import (
	"github.com/citycard/citycard/plugins/pos"
	"github.com/citycard/citycard/sdk"
)

func main() { sdk.Serve(pos.New()) }
