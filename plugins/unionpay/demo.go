package unionpay

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/citycard/citycard/plugins/cardcrypto"
	"github.com/citycard/citycard/plugins/demo"
	"github.com/citycard/citycard/plugins/unionpay/sim"
	"github.com/citycard/citycard/sdk"
)

// demoMasterKey is the demo link's master key: published here, so it
// protects nothing and must never be a real link's.
const demoMasterKey = "0123456789ABCDEFFEDCBA9876543210"

// Bundle is the UnionPay plugin as the citycard binary ships it: the
// plugin and a switch simulator on a free local port, with a journal in a
// temporary directory removed when the demo ends.
//
// It has no flows yet: bank cards reach this plugin only once the hub
// routes them here by BIN (and pays a city card's shortfall from a linked
// bank card), which the hub does not do yet. Until then the plugin takes
// unionpay.authorize.v1 and unionpay.reverse.v1 sent to it by hand
// (POST /v1/plugins/unionpay/messages).
func Bundle() demo.Bundle {
	return demo.Bundle{
		Name:    Name,
		Channel: "retail",
		New:     func() sdk.Plugin { return New() },
		Start:   startDemo,
	}
}

func startDemo(ctx context.Context) (json.RawMessage, func(), error) {
	tmk, err := cardcrypto.ParseKey(demoMasterKey)
	if err != nil {
		return nil, nil, err
	}
	addr, stopSwitch, err := sim.New(sim.Options{MasterKey: tmk}).Start("127.0.0.1:0")
	if err != nil {
		return nil, nil, fmt.Errorf("unionpay: starting the switch simulator: %w", err)
	}
	dir, err := os.MkdirTemp("", "citycard-unionpay-")
	if err != nil {
		stopSwitch()
		return nil, nil, err
	}
	stop := func() {
		stopSwitch()
		_ = os.RemoveAll(dir)
	}
	cfg, err := json.Marshal(Config{SwitchAddr: addr, MasterKey: demoMasterKey, AcquirerID: "48020000",
		LinkTerminal: "CITYHUB1", LinkMerchant: "CITYCARDHUB0001", StateDir: dir})
	if err != nil {
		stop()
		return nil, nil, err
	}
	return cfg, stop, nil
}
