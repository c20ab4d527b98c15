package unionpay

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/pos/iso"
)

// Config is the plugin's configuration (see README.md).
type Config struct {
	SwitchAddr        string `json:"switch_addr"`
	MasterKey         string `json:"master_key"`
	MasterKeyCheck    string `json:"master_key_check,omitempty"`
	AcquirerID        string `json:"acquirer_id"`
	LinkTerminal      string `json:"link_terminal"`
	LinkMerchant      string `json:"link_merchant"`
	StateDir          string `json:"state_dir"`
	MACAlgorithm      string `json:"mac_algorithm,omitempty"`
	ResponseTimeoutMS int    `json:"response_timeout_ms,omitempty"`
	EchoIntervalMS    int    `json:"echo_interval_ms,omitempty"`
	ReconnectMaxMS    int    `json:"reconnect_max_ms,omitempty"`
	// PINZoneKey is the double-length key, in hex, under which the city's
	// POS front end enciphers PIN blocks for this plugin.
	PINZoneKey      string `json:"pin_zone_key,omitempty"`
	PINZoneKeyCheck string `json:"pin_zone_key_check,omitempty"`
	// KeyStore says where the top key of the token vault is.
	KeyStore *KeyStoreConfig `json:"key_store,omitempty"`
}

// KeyStoreConfig names the source of the vault's top key: an environment
// variable or a file holding 32 bytes as 64 hex digits or base64.
type KeyStoreConfig struct {
	Env  string `json:"env,omitempty"`
	File string `json:"file,omitempty"`
}

// settings is a checked Config.
type settings struct {
	addr            string
	tmk             cardcrypto.Key
	acquirer        string
	terminal        string
	merchant        string
	stateDir        string
	mac             iso.MACAlgorithm
	responseTimeout time.Duration
	echoInterval    time.Duration
	reconnectMax    time.Duration
	zpk             cardcrypto.Key       // nil when no PIN zone key is configured
	store           *cardcrypto.KeyStore // nil when no key_store is configured
}

// macs maps the values of mac_algorithm to their algorithm.
var macs = map[string]iso.MACAlgorithm{"x9.19": iso.MACX919, "ecb": iso.MACECB}

// parseConfig reads a configuration the sdk has checked against
// configSchema and filled with its defaults, and checks what the schema
// cannot say.
func parseConfig(raw json.RawMessage) (settings, error) {
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return settings{}, &sdk.Error{Code: sdk.CodeConfigInvalid, Message: "unionpay: " + err.Error()}
	}
	tmk, err := cardcrypto.ParseKey(c.MasterKey)
	if err != nil || len(tmk) != 16 {
		return settings{}, &sdk.Error{Code: sdk.CodeConfigInvalid, Message: "unionpay: master_key must be a double-length key in hex", Field: "/master_key"}
	}
	if c.MasterKeyCheck != "" {
		want, _ := hex.DecodeString(c.MasterKeyCheck)
		if err := cardcrypto.VerifyCheckValue(tmk, want); err != nil {
			return settings{}, &sdk.Error{Code: sdk.CodeConfigInvalid, Message: "unionpay: master_key does not match master_key_check", Field: "/master_key_check"}
		}
	}
	var zpk cardcrypto.Key
	if c.PINZoneKey != "" {
		zpk, err = cardcrypto.ParseKey(c.PINZoneKey)
		if err != nil || len(zpk) != 16 {
			return settings{}, &sdk.Error{Code: sdk.CodeConfigInvalid, Message: "unionpay: pin_zone_key must be a double-length key in hex", Field: "/pin_zone_key"}
		}
	}
	if c.PINZoneKeyCheck != "" {
		want, _ := hex.DecodeString(c.PINZoneKeyCheck)
		if zpk == nil || len(want) == 0 || cardcrypto.VerifyCheckValue(zpk, want) != nil {
			return settings{}, &sdk.Error{Code: sdk.CodeConfigInvalid, Message: "unionpay: pin_zone_key does not match pin_zone_key_check", Field: "/pin_zone_key_check"}
		}
	}
	var store *cardcrypto.KeyStore
	if c.KeyStore != nil {
		store, err = cardcrypto.OpenKeyStore(cardcrypto.TopKeySource{Env: c.KeyStore.Env, File: c.KeyStore.File})
		if err != nil {
			return settings{}, &sdk.Error{Code: sdk.CodeConfigInvalid, Message: "unionpay: key_store: " + err.Error(), Field: "/key_store"}
		}
	}
	return settings{addr: c.SwitchAddr, tmk: tmk, acquirer: c.AcquirerID, terminal: c.LinkTerminal, merchant: c.LinkMerchant,
		stateDir: c.StateDir, mac: macs[c.MACAlgorithm], responseTimeout: ms(c.ResponseTimeoutMS), echoInterval: ms(c.EchoIntervalMS),
		reconnectMax: ms(c.ReconnectMaxMS), zpk: zpk, store: store}, nil
}

// ms reads a setting given in milliseconds.
func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// String keeps the master key out of any log that prints the settings.
func (s settings) String() string {
	return fmt.Sprintf("switch %s acquirer %s terminal %s master key %s PIN zone key %s", s.addr, s.acquirer, s.terminal, s.tmk, s.zpk)
}
