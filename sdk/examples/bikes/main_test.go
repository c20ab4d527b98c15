package main

import (
	"testing"

	"github.com/citycard/citycard/sdk/plugintest"
)

func TestDockChargesTheRide(t *testing.T) {
	h := plugintest.Start(t, &Dock{})
	if err := h.Configure(map[string]any{"fare_per_half_hour": 150, "merchant": "M-BIKES"}); err != nil {
		t.Fatal(err)
	}
	replies, err := h.Handle(plugintest.NewMessage("bikes.return.v1",
		map[string]any{"ride": "D7-000381", "card": "8860001234567890", "minutes": 42}))
	if err != nil {
		t.Fatal(err)
	}
	if len(replies) != 1 || replies[0].Type != "bikes.receipt.v1" {
		t.Errorf("replies = %+v", replies)
	}
	fares := h.Submitted()
	if len(fares) != 1 || string(fares[0].Payload) != `{"amount":300,"card":"8860001234567890","currency":"CNY","merchant":"M-BIKES"}` {
		t.Errorf("the hub got %+v", fares)
	}
}

func TestDockRefusesAFreeRide(t *testing.T) {
	h := plugintest.Start(t, &Dock{})
	if err := h.Configure(map[string]any{"fare_per_half_hour": 0, "merchant": "M-BIKES"}); err == nil {
		t.Error("a zero fare was accepted")
	}
}
