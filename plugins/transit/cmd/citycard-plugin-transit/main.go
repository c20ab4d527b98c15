// Command citycard-plugin-transit is the transit plugin as a binary of its
// own, for the hub's plugin host to launch. Validators talk to the front
// end it opens on the configured listen address (PROTOCOL.md).
package main

import (
	"github.com/citycard/citycard/plugins/transit"
	"github.com/citycard/citycard/sdk"
)

func main() { sdk.Serve(transit.New()) }
