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
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
}
