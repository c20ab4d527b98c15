// Command citycard-plugin-unionpay is the UnionPay acquirer link as a
// binary of its own, for the hub's plugin host to launch.
package main

import (
	"github.com/citycard/citycard/plugins/unionpay"
	"github.com/citycard/citycard/sdk"
)

func main() { sdk.Serve(unionpay.New()) }
