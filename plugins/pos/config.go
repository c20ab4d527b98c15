package pos

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/pos/iso"
)

type config struct {
	Listen    string                    `json:"listen"`
	CityBINs  []string                  `json:"city_bins"`
	BankCards bool                      `json:"bank_cards"`
	Terminals map[string]terminalConfig `json:"terminals"`
	KeyStore  *struct {
		Env  string `json:"env"`
		File string `json:"file"`
	} `json:"key_store"`
	PINZoneKey       string `json:"pin_zone_key"`
	PINZoneKeySealed string `json:"pin_zone_key_sealed"`
	PINZoneKeyCheck  string `json:"pin_zone_key_check"`
	CityCVK          string `json:"city_cvk"`
	CityCVKSealed    string `json:"city_cvk_sealed"`
	HubTimeoutMS     int64  `json:"hub_timeout_ms"`
	IdleTimeoutMS    int64  `json:"idle_timeout_ms"`
}

type terminalConfig struct {
	Merchant        string `json:"merchant"`
	AcceptorID      string `json:"acceptor_id"`
	MasterKey       string `json:"master_key"`
	MasterKeySealed string `json:"master_key_sealed"`
	MAC             string `json:"mac"`
}

// terminal is one configured terminal.
type terminal struct {
	id         string
	merchant   string // hub merchant id
	acceptorID string // field 42
	master     cardcrypto.Key
	mac        iso.MACAlgorithm
}

// settings is one configuration in force.
type settings struct {
	listen    string
	cityBINs  []string
	bankCards bool
	// zoneKey is the PIN zone key shared with the bank acquirer: a bank
	// card's PIN block is translated to it. Nil: a bank card with a PIN is
	// declined 40.
	zoneKey cardcrypto.Key
	// cvk is the city's card verification key pair: the CVV in a city
	// card's track 2 is checked with it. Nil: not checked.
	cvk         cardcrypto.Key
	terminals   map[string]*terminal
	hubTimeout  time.Duration
	idleTimeout time.Duration
}

// SealedKeyName is the name a terminal's master key is sealed under in a
// cardcrypto.KeyStore, for master_key_sealed.
func SealedKeyName(terminalID string) string { return "terminal/" + terminalID + "/tmk" }

// SealedCVKName is the name the city's card verification keys are sealed
// under in a cardcrypto.KeyStore, for city_cvk_sealed.
const SealedCVKName = "city/cvk"

// SealedZoneKeyName is the name the PIN zone key is sealed under in a
// cardcrypto.KeyStore, for pin_zone_key_sealed.
const SealedZoneKeyName = "pin/zpk"

func invalid(field, format string, args ...any) *sdk.Error {
	return &sdk.Error{Code: sdk.CodeConfigInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// macs maps the values of a terminal's mac setting to their algorithm.
var macs = map[string]iso.MACAlgorithm{"ecb": iso.MACECB, "x919": iso.MACX919}

// parseConfig reads a configuration the sdk has checked against
// configSchema and filled with its defaults, and checks what the schema
// cannot say. Errors never hold a key.
func parseConfig(raw json.RawMessage) (*settings, error) {
	var c config
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, invalid("", "%v", err)
	}
	s := &settings{listen: c.Listen, cityBINs: slices.Clone(c.CityBINs), bankCards: c.BankCards, terminals: map[string]*terminal{},
		hubTimeout: time.Duration(c.HubTimeoutMS) * time.Millisecond, idleTimeout: time.Duration(c.IdleTimeoutMS) * time.Millisecond}
	var store *cardcrypto.KeyStore
	// openSealed opens a key sealed under name, from the key store.
	openSealed := func(at, what, name, sealed string) (cardcrypto.Key, error) {
		if store == nil {
			if c.KeyStore == nil {
				return nil, invalid("/key_store", "%s is sealed but no key_store says where the top key is", what)
			}
			var err error
			if store, err = cardcrypto.OpenKeyStore(cardcrypto.TopKeySource{Env: c.KeyStore.Env, File: c.KeyStore.File}); err != nil {
				return nil, invalid("/key_store", "%v", err)
			}
		}
		blob, err := base64.StdEncoding.DecodeString(sealed)
		if err != nil {
			return nil, invalid(at, "not base64")
		}
		k, err := store.Open(name, blob)
		if err != nil {
			return nil, invalid(at, "%v", err)
		}
		return k, nil
	}
	// keyOf reads a key given in clear (at clearAt) or sealed under name
	// (at sealedAt), not both (at bothAt); nil when neither is given.
	keyOf := func(bothAt, clearAt, sealedAt, clear, sealed, what, name string) (cardcrypto.Key, error) {
		switch {
		case clear != "" && sealed != "":
			return nil, invalid(bothAt, "give %s or %s, not both", path.Base(clearAt), path.Base(sealedAt))
		case clear != "":
			k, err := cardcrypto.ParseKey(clear)
			if err != nil {
				return nil, invalid(clearAt, "%v", err)
			}
			return k, nil
		case sealed != "":
			return openSealed(sealedAt, what, name, sealed)
		}
		return nil, nil
	}
	var err error
	if s.zoneKey, err = keyOf("/pin_zone_key", "/pin_zone_key", "/pin_zone_key_sealed", c.PINZoneKey, c.PINZoneKeySealed,
		"the PIN zone key", SealedZoneKeyName); err != nil {
		return nil, err
	}
	if s.zoneKey != nil {
		at := "/pin_zone_key"
		if c.PINZoneKeySealed != "" {
			at = "/pin_zone_key_sealed"
		}
		if len(s.zoneKey) != 16 {
			return nil, invalid(at, "the PIN zone key is %d bytes, want 16 (double-length)", len(s.zoneKey))
		}
		if c.PINZoneKeyCheck != "" {
			want, err := hex.DecodeString(c.PINZoneKeyCheck)
			if err != nil || len(want) != 3 {
				return nil, invalid("/pin_zone_key_check", "a check value is 6 hex digits")
			}
			if err := cardcrypto.VerifyCheckValue(s.zoneKey, want); err != nil {
				return nil, invalid("/pin_zone_key_check", "the PIN zone key does not have this check value")
			}
		}
	} else if c.PINZoneKeyCheck != "" {
		return nil, invalid("/pin_zone_key_check", "a check value without pin_zone_key or pin_zone_key_sealed")
	}
	if s.cvk, err = keyOf("/city_cvk", "/city_cvk", "/city_cvk_sealed", c.CityCVK, c.CityCVKSealed,
		"the city's card verification keys", SealedCVKName); err != nil {
		return nil, err
	}
	if s.cvk != nil && len(s.cvk) != 16 {
		return nil, invalid("/city_cvk", "the card verification keys are %d bytes, want 16 (CVK A and CVK B)", len(s.cvk))
	}
	for id, tc := range c.Terminals {
		at := "/terminals/" + id
		t := &terminal{id: id, merchant: tc.Merchant, acceptorID: tc.AcceptorID, mac: macs[tc.MAC]}
		if t.acceptorID == "" {
			if len(tc.Merchant) > 15 {
				return nil, invalid(at+"/acceptor_id", "merchant %q is longer than field 42's 15 characters: set acceptor_id", tc.Merchant)
			}
			t.acceptorID = tc.Merchant + strings.Repeat(" ", 15-len(tc.Merchant))
		}
		k, err := keyOf(at, at+"/master_key", at+"/master_key_sealed", tc.MasterKey, tc.MasterKeySealed,
			"terminal "+id+"'s master key", SealedKeyName(id))
		switch {
		case err != nil:
			return nil, err
		case k == nil:
			return nil, invalid(at, "a master key is needed: master_key or master_key_sealed")
		case tc.MasterKeySealed != "" && len(k) != 8 && len(k) != 16 && len(k) != 24:
			return nil, invalid(at+"/master_key_sealed", "the sealed key is %d bytes, want 8, 16 or 24", len(k))
		}
		t.master = k
		s.terminals[id] = t
	}
	return s, nil
}

// cityCard reports whether a card number is in the city card's ranges.
func (s *settings) cityCard(p cardcrypto.PAN) bool {
	for _, b := range s.cityBINs {
		if p.HasPrefix(b) {
			return true
		}
	}
	return false
}
