package pos_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/citycard/citycard/plugins/pos"
	"github.com/citycard/citycard/plugins/pos/sim"
	"github.com/citycard/citycard/sdk"
	"github.com/citycard/citycard/sdk/cardcrypto"
	"github.com/citycard/citycard/sdk/plugintest"
	"github.com/citycard/citycard/sdk/pos/iso"
)

// TestSealedMasterKey: a master key kept sealed under the key store's top
// key, from the environment, works like one given in clear.
func TestSealedMasterKey(t *testing.T) {
	top := make([]byte, 32)
	_, _ = rand.Read(top)
	t.Setenv("POS_TEST_TOP_KEY", hex.EncodeToString(top))
	store, err := cardcrypto.NewKeyStore(top)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := store.Seal(pos.SealedKeyName(term1), key(t, tmkHex))
	if err != nil {
		t.Fatal(err)
	}
	cfg := config()
	cfg["key_store"] = map[string]any{"env": "POS_TEST_TOP_KEY"}
	cfg["terminals"] = map[string]any{term1: map[string]any{"merchant": merchant, "master_key_sealed": base64.StdEncoding.EncodeToString(blob)}}
	w := setupWith(t, cfg, nil)
	term := w.signedOn(term1)
	expect(t, "purchase", "00")(term.Purchase(ctx(t), sim.Card{PAN: alice, PIN: "123456"}, 100))

	// Sealed for another terminal: refused, without the key in the error.
	cfg["terminals"] = map[string]any{term2: map[string]any{"merchant": merchant, "master_key_sealed": base64.StdEncoding.EncodeToString(blob)}}
	h := plugintest.Start(t, pos.New(pos.WithLogger(discardLog())))
	err = h.Configure(cfg)
	var e *sdk.Error
	if !errors.As(err, &e) || e.Code != sdk.CodeConfigInvalid || e.Field != "/terminals/"+term2+"/master_key_sealed" {
		t.Errorf("a key sealed for another terminal: %v", err)
	}
}

func TestBadConfig(t *testing.T) {
	h := plugintest.Start(t, pos.New(pos.WithLogger(discardLog())))
	for _, tc := range []struct {
		name  string
		edit  func(map[string]any)
		field string
	}{
		{"unknown setting", func(c map[string]any) { c["listen_addr"] = ":0" }, ""},
		{"no city card range", func(c map[string]any) { c["city_bins"] = []string{} }, ""},
		{"bad master key", func(c map[string]any) {
			c["terminals"] = map[string]any{term1: map[string]any{"merchant": merchant, "master_key": "0123"}}
		}, ""},
		{"sealed key without a key store", func(c map[string]any) {
			c["terminals"] = map[string]any{term1: map[string]any{"merchant": merchant, "master_key_sealed": "AAAA"}}
		}, "/key_store"},
		{"merchant too long for field 42", func(c map[string]any) {
			c["terminals"] = map[string]any{term1: map[string]any{"merchant": "M-A-VERY-LONG-MERCHANT", "master_key": tmkHex}}
		}, "/terminals/" + term1 + "/acceptor_id"},
		{"address in use", nil, "/listen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config()
			if tc.edit != nil {
				tc.edit(cfg)
			} else {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				cfg["listen"] = ln.Addr().String()
			}
			err := h.Configure(cfg)
			var e *sdk.Error
			if !errors.As(err, &e) || (e.Code != sdk.CodeConfigInvalid && e.Code != sdk.CodeSchemaInvalid) {
				t.Fatalf("got %v, want config_invalid", err)
			}
			if tc.field != "" && e.Field != tc.field {
				t.Errorf("field %q, want %q (%v)", e.Field, tc.field, err)
			}
			if strings.Contains(err.Error(), tmkHex) {
				t.Error("the error holds the master key")
			}
		})
	}
}

// TestMutatedFrames sends valid frames with random bytes changed: each is
// answered or its connection closed, the plugin never panics, and it goes
// on serving.
func TestMutatedFrames(t *testing.T) {
	w := setup(t)
	term := w.signedOn(term1)
	base := purchaseMsg(t, term, alice, 100, term.NextSTAN(), "000001")
	if err := iso.SetMAC(base, iso.MACECB, term.Keys().MAC); err != nil {
		t.Fatal(err)
	}
	frame := frameOf(t, base)
	for i := range 300 {
		f := append([]byte(nil), frame...)
		for range 1 + i%3 {
			n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(f)-2)))
			b, _ := rand.Int(rand.Reader, big.NewInt(256))
			f[2+n.Int64()] = byte(b.Int64())
		}
		c, err := net.Dial("tcp", w.addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(f)
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := (iso.Codec{}).ReadMessage(c); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("mutation %d: neither answered nor closed", i)
			}
		}
		_ = c.Close()
	}
	if strings.Contains(w.logs.String(), "panic") {
		t.Error("the plugin panicked on a mutated frame")
	}
	expect(t, "purchase after the mutations", "00")(term.Purchase(ctx(t), sim.Card{PAN: alice}, 100))
}
