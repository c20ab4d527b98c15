package wiring_test

import (
	"testing"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

// TestReversalBeforeItsPayment: a terminal whose plugin died reverses a
// payment the hub has not yet written (it is still on its way). The
// reversal finds nothing to undo and takes the payment's key, so the
// payment, when it arrives, is refused and charges nothing; the terminal
// and the ledger agree that nothing was bought. A reversal sent again
// changes nothing, and a payment that got there first is reversed as
// usual.
func TestReversalBeforeItsPayment(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		h := startPluginHub(t, st)
		before := h.balance()
		status, m := h.send("payer.reverse.v1", "rv-late", map[string]any{"key": "late"})
		if status != 404 || m["code"] != "transfer_not_found" {
			t.Fatalf("reversal of a payment not yet written: %d %v", status, m)
		}
		status, m = h.send("payer.charge.v1", "c-late", map[string]any{"key": "late", "card": h.card, "amount": 700})
		if status != 422 || m["code"] != "idempotency_conflict" {
			t.Fatalf("the payment arriving after its reversal: %d %v, want 422 idempotency_conflict", status, m)
		}
		status, m = h.send("payer.reverse.v1", "rv-late", map[string]any{"key": "late"})
		if status != 404 || m["code"] != "transfer_not_found" {
			t.Fatalf("the reversal sent again: %d %v", status, m)
		}
		if b := h.balance(); b != before {
			t.Fatalf("balance %v after a payment reversed before it arrived, want %v", b, before)
		}

		// The usual order: the payment first, then its reversal.
		status, m = h.send("payer.charge.v1", "c-early", map[string]any{"key": "early", "card": h.card, "amount": 300})
		if status != 200 {
			t.Fatalf("charge: %d %v", status, m)
		}
		body, _ := receipt(t, m)
		_, m = h.send("payer.reverse.v1", "rv-early", map[string]any{"key": "early"})
		if rev, _ := receipt(t, m); rev["reverses"] != body["id"] {
			t.Fatalf("reversal %v does not reverse %v", rev, body["id"])
		}
		if b := h.balance(); b != before {
			t.Fatalf("balance %v after a payment and its reversal, want %v", b, before)
		}
		h.verify(t)
	})
}
