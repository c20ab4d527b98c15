package unionpay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/citycard/citycard/plugins/demo"
	"github.com/citycard/citycard/plugins/unionpay/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
)

// demoMasterKey is the demo link's master key: published here, so it
// protects nothing and must never be a real link's.
const demoMasterKey = "0123456789ABCDEFFEDCBA9876543210"

// DemoPINZoneKey is the demo's PIN zone key (double-length, hex): the
// city's POS front end enciphers PIN blocks under it for this plugin's
// pin_zone_key. Published here, so it protects nothing and must never be a
// real zone's.
const DemoPINZoneKey = "89ABCDEF0123456776543210FEDCBA98"

// DemoPINBlock returns pin for the card pan as an ISO 9564 format 0 PIN
// block enciphered under DemoPINZoneKey, in hex: the pin_block of
// unionpay.authorize.v1 and unionpay.balance.v1 in the demo and in tests.
func DemoPINBlock(pin, pan string) (string, error) {
	zpk, err := cardcrypto.ParseKey(DemoPINZoneKey)
	if err != nil {
		return "", err
	}
	return PINBlock(zpk, pin, pan)
}

// PINBlock returns pin for the card pan as an ISO 9564 format 0 PIN block
// enciphered under the PIN zone key zpk, in hex.
func PINBlock(zpk cardcrypto.Key, pin, pan string) (string, error) {
	p, err := cardcrypto.ParsePIN(pin)
	if err != nil {
		return "", err
	}
	c, err := cardcrypto.ParsePAN(pan)
	if err != nil {
		return "", err
	}
	b, err := cardcrypto.EncryptPINBlock(zpk, p, c)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// Bundle is the UnionPay plugin as the citycard binary ships it: the
// plugin and a switch simulator on a free local port, with a journal and a
// token vault (its top key a random one in a file beside it) in a
// temporary directory removed when the demo ends, and DemoPINZoneKey as the
// PIN zone key.
//
// It has no flows of its own: bank cards reach this plugin through the
// hub, in pos.BankFlows and medical.BankFlows, which `citycard demo` runs
// when those plugins are bundled beside it.
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
	top := make([]byte, 32)
	if _, err := rand.Read(top); err != nil {
		stop()
		return nil, nil, err
	}
	keyFile := filepath.Join(dir, "vault.topkey")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(top)), 0o600); err != nil {
		stop()
		return nil, nil, err
	}
	cfg, err := json.Marshal(Config{SwitchAddr: addr, MasterKey: demoMasterKey, AcquirerID: "48020000",
		LinkTerminal: "CITYHUB1", LinkMerchant: "CITYCARDHUB0001", StateDir: filepath.Join(dir, "state"),
		PINZoneKey: DemoPINZoneKey, KeyStore: &KeyStoreConfig{File: keyFile}})
	if err != nil {
		stop()
		return nil, nil, err
	}
	return cfg, stop, nil
}
