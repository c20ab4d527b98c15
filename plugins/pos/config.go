package pos

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/citycard/citycard/plugins/cardcrypto"
	"github.com/citycard/citycard/plugins/pos/iso"
	"github.com/citycard/citycard/sdk"
)

// Defaults of the configuration.
const (
	defaultListen      = "127.0.0.1:0"
	defaultHubTimeout  = 10 * time.Second
	defaultIdleTimeout = 2 * time.Minute
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
	HubTimeoutMS  int64 `json:"hub_timeout_ms"`
	IdleTimeoutMS int64 `json:"idle_timeout_ms"`
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
	listen      string
	cityBINs    []string
	bankCards   bool
	terminals   map[string]*terminal
	hubTimeout  time.Duration
	idleTimeout time.Duration
}

// SealedKeyName is the name a terminal's master key is sealed under in a
// cardcrypto.KeyStore, for master_key_sealed.
func SealedKeyName(terminalID string) string { return "terminal/" + terminalID + "/tmk" }

func invalid(field, format string, args ...any) *sdk.Error {
	return &sdk.Error{Code: sdk.CodeConfigInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// parseConfig reads a configuration the sdk has checked against
// configSchema, and checks what the schema cannot say. Errors never hold a
// key.
func parseConfig(raw json.RawMessage) (*settings, error) {
	var c config
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, invalid("", "%v", err)
	}
	s := &settings{listen: c.Listen, cityBINs: slices.Clone(c.CityBINs), bankCards: c.BankCards, terminals: map[string]*terminal{},
		hubTimeout: defaultHubTimeout, idleTimeout: defaultIdleTimeout}
	if s.listen == "" {
		s.listen = defaultListen
	}
	if c.HubTimeoutMS > 0 {
		s.hubTimeout = time.Duration(c.HubTimeoutMS) * time.Millisecond
	}
	if c.IdleTimeoutMS > 0 {
		s.idleTimeout = time.Duration(c.IdleTimeoutMS) * time.Millisecond
	}
	if len(s.cityBINs) == 0 {
		return nil, invalid("/city_bins", "at least one city card prefix is needed")
	}
	var store *cardcrypto.KeyStore
	for id, tc := range c.Terminals {
		at := "/terminals/" + id
		if len(id) != 8 {
			return nil, invalid(at, "a terminal id is 8 characters")
		}
		t := &terminal{id: id, merchant: tc.Merchant, acceptorID: tc.AcceptorID, mac: iso.MACECB}
		if t.acceptorID == "" {
			if len(tc.Merchant) > 15 {
				return nil, invalid(at+"/acceptor_id", "merchant %q is longer than field 42's 15 characters: set acceptor_id", tc.Merchant)
			}
			t.acceptorID = tc.Merchant + strings.Repeat(" ", 15-len(tc.Merchant))
		}
		if tc.MAC == "x919" {
			t.mac = iso.MACX919
		}
		switch {
		case tc.MasterKey != "" && tc.MasterKeySealed != "":
			return nil, invalid(at, "give master_key or master_key_sealed, not both")
		case tc.MasterKey != "":
			k, err := cardcrypto.ParseKey(tc.MasterKey)
			if err != nil {
				return nil, invalid(at+"/master_key", "%v", err)
			}
			t.master = k
		case tc.MasterKeySealed != "":
			if store == nil {
				if c.KeyStore == nil {
					return nil, invalid("/key_store", "terminal %s has a sealed master key but no key_store says where the top key is", id)
				}
				var err error
				if store, err = cardcrypto.OpenKeyStore(cardcrypto.TopKeySource{Env: c.KeyStore.Env, File: c.KeyStore.File}); err != nil {
					return nil, invalid("/key_store", "%v", err)
				}
			}
			blob, err := base64.StdEncoding.DecodeString(tc.MasterKeySealed)
			if err != nil {
				return nil, invalid(at+"/master_key_sealed", "not base64")
			}
			k, err := store.Open(SealedKeyName(id), blob)
			if err != nil {
				return nil, invalid(at+"/master_key_sealed", "%v", err)
			}
			if len(k) != 8 && len(k) != 16 && len(k) != 24 {
				return nil, invalid(at+"/master_key_sealed", "the sealed key is %d bytes, want 8, 16 or 24", len(k))
			}
			t.master = k
		default:
			return nil, invalid(at, "a master key is needed: master_key or master_key_sealed")
		}
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
