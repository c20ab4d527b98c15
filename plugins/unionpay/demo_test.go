package unionpay_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/citycard/citycard/plugins/unionpay"
	"github.com/citycard/citycard/sdk/plugintest"
)

func TestBundle(t *testing.T) {
	b := unionpay.Bundle()
	if b.Name != unionpay.Name || b.Channel != "retail" || len(b.Flows) != 0 || b.New == nil {
		t.Fatalf("bundle = %+v", b)
	}
	cfg, stop, err := b.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	h := plugintest.Start(t, unionpay.NewWithLogger(slog.New(slog.DiscardHandler)))
	if err := h.Configure(json.RawMessage(cfg)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the demo link signs on", func() bool { return h.Health() == nil })
	if a := authorise(t, h, authMsg("demo-1", card(t, "622217"), "3012", 1_000)); a.Status != unionpay.Approved {
		t.Errorf("authorisation = %+v", a)
	}
	// The demo's vault and PIN zone key work.
	var tok unionpay.Token
	send(t, h, msg(unionpay.TypeTokenize, "demo-tok", map[string]any{"pan": card(t, "622217"), "expiry": "3012"}), unionpay.TypeToken, &tok)
	block, err := unionpay.DemoPINBlock("1234", card(t, "622217"))
	if err != nil {
		t.Fatal(err)
	}
	m := msg(unionpay.TypeAuthorize, "demo-2", map[string]any{"token": tok.Token, "amount": 500, "currency": "CNY",
		"merchant": merchant, "terminal": terminal, "pin_block": block})
	if a := authorise(t, h, m); a.Status != unionpay.Approved {
		t.Errorf("authorisation by token with a PIN = %+v", a)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
}
