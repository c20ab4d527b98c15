package unionpay_test

import (
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/citycard/citycard/plugins/unionpay"
	"github.com/citycard/citycard/plugins/unionpay/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/plugintest"
	"github.com/citycard/citycard/sdk/pos/iso"
)

func TestConfig(t *testing.T) {
	k, _ := cardcrypto.ParseKey(masterKey)
	kcv, err := cardcrypto.KCV(k)
	if err != nil {
		t.Fatal(err)
	}
	z, _ := cardcrypto.ParseKey(pinZoneKey)
	zkcv, err := cardcrypto.KCV(z)
	if err != nil {
		t.Fatal(err)
	}
	h := plugintest.Start(t, unionpay.NewWithLogger(slog.New(slog.DiscardHandler)))
	for _, tc := range []struct {
		name  string
		edit  func(map[string]any)
		field string // "" when accepted
	}{
		{"valid", func(map[string]any) {}, ""},
		{"with its check value", func(c map[string]any) { c["master_key_check"] = hex.EncodeToString(kcv) }, ""},
		{"ECB MACs", func(c map[string]any) { c["mac_algorithm"] = "ecb" }, ""},
		{"wrong check value", func(c map[string]any) { c["master_key_check"] = "000000" }, "/master_key_check"},
		{"short master key", func(c map[string]any) { c["master_key"] = "0123" }, "/master_key"},
		{"unknown setting", func(c map[string]any) { c["switch_adr"] = "x" }, "/switch_adr"},
		{"no state directory", func(c map[string]any) { delete(c, "state_dir") }, "state_dir"},
		{"terminal too long", func(c map[string]any) { c["link_terminal"] = "CITYHUB01" }, "/link_terminal"},
		{"PIN zone key with its check value", func(c map[string]any) { c["pin_zone_key_check"] = hex.EncodeToString(zkcv) }, ""},
		{"wrong PIN zone key check value", func(c map[string]any) { c["pin_zone_key_check"] = "000000" }, "/pin_zone_key_check"},
		{"short PIN zone key", func(c map[string]any) { c["pin_zone_key"] = "0123456789ABCDEF" }, "/pin_zone_key"},
		{"no PIN zone key", func(c map[string]any) { delete(c, "pin_zone_key") }, ""},
		{"no key store", func(c map[string]any) { delete(c, "key_store") }, ""},
		{"top key file missing", func(c map[string]any) { c["key_store"] = map[string]any{"file": "/nonexistent/top.key"} }, "/key_store"},
		{"top key in an unset variable", func(c map[string]any) { c["key_store"] = map[string]any{"env": "UNIONPAY_TEST_UNSET_TOP_KEY"} }, "/key_store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config("127.0.0.1:1", t.TempDir())
			cfg["response_timeout_ms"] = 50
			tc.edit(cfg)
			err := h.Configure(cfg)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var e *sdk.Error
			if !errors.As(err, &e) || e.Code != sdk.CodeConfigInvalid || !strings.Contains(e.Field+e.Message, tc.field) {
				t.Errorf("got %v, want config_invalid naming %s", err, tc.field)
			}
			if err != nil && (strings.Contains(err.Error(), masterKey) || strings.Contains(err.Error(), pinZoneKey)) {
				t.Error("the error holds a key")
			}
		})
	}
}

// TestECBMACs runs the link with the UnionPay ECB MAC on both sides.
func TestECBMACs(t *testing.T) {
	k, _ := cardcrypto.ParseKey(masterKey)
	sw := sim.New(sim.Options{MasterKey: k, MAC: iso.MACECB})
	addr, stop, err := sw.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	cfg := config(addr, t.TempDir())
	cfg["mac_algorithm"] = "ecb"
	h := start(t, cfg)
	a := authorise(t, h, authMsg("ecb-1", card(t, "622220"), "3012", 100))
	if a.Status != unionpay.Approved {
		t.Fatalf("authorisation = %+v", a)
	}
	if got := reverse(t, h, "ecb-1"); got != unionpay.Reversed {
		t.Errorf("reverse = %s", got)
	}
}
