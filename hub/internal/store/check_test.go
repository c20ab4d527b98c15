package store

import "testing"

// TestCheckTextAllocs: the text check runs on every commit, so a clean
// batch costs it no allocation; a row is labelled only to refuse it.
func TestCheckTextAllocs(t *testing.T) {
	b := &Batch{Record: BatchRecord{Seq: 1}}
	for i := range 100 {
		b.Transfers = append(b.Transfers, Transfer{ID: int64(i + 1), Kind: "payment", Currency: "CNY", Card: "3100990000000013", Channel: "retail", Merchant: "M001"})
	}
	if n := testing.AllocsPerRun(100, func() { _ = b.checkText() }); n != 0 {
		t.Fatalf("%v allocations per check", n)
	}
}
