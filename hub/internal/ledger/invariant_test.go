package ledger

import (
	"strings"
	"testing"

	"github.com/citycard/citycard/hub/internal/store"
)

// TestCheckBatch: the check a batch passes just before its write refuses
// each broken invariant, naming it, and passes a sound batch.
func TestCheckBatch(t *testing.T) {
	head := store.Head{LastBatch: 4, LastHash: []byte{4}}
	sound := func() *store.Batch {
		return &store.Batch{
			Record:    store.BatchRecord{Seq: 5, PrevHash: []byte{4}, Transfers: 1},
			Transfers: []store.Transfer{{ID: 9, Batch: 5, Entries: []store.Entry{{Account: 1, Amount: 100}, {Account: 2, Amount: -100}}}},
			Accounts:  []store.Account{{ID: 2, Code: "purse:a", Constrained: true, CreditsPosted: 100}},
		}
	}
	if err := checkBatch(sound(), head); err != nil {
		t.Fatalf("a sound batch: %v", err)
	}
	for _, tc := range []struct {
		name, want string
		breakIt    func(b *store.Batch)
	}{
		{"gap in the chain", "does not follow", func(b *store.Batch) { b.Record.Seq = 6 }},
		{"other previous hash", "does not follow", func(b *store.Batch) { b.Record.PrevHash = []byte{3} }},
		{"miscounted", "records 2 transfers", func(b *store.Batch) { b.Record.Transfers = 2 }},
		{"transfer of another batch", "names batch 4", func(b *store.Batch) { b.Transfers[0].Batch = 4 }},
		{"one entry", "has 1 entries", func(b *store.Batch) { b.Transfers[0].Entries = b.Transfers[0].Entries[:1] }},
		{"unbalanced", "does not balance", func(b *store.Batch) { b.Transfers[0].Entries[1].Amount = -99 }},
		{"below its limit", "below its limit", func(b *store.Batch) { b.Accounts[0].DebitsPending = 101 }},
	} {
		b := sound()
		tc.breakIt(b)
		if err := checkBatch(b, head); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}
