package ledger

import (
	"bytes"
	"fmt"

	"github.com/citycard/citycard/hub/internal/store"
)

// brokenInvariant is the panic of an invariant that does not hold: a bug
// in an op or in the writer, never bad input (that is refused with an
// error before it gets this far).
type brokenInvariant string

func (b brokenInvariant) Error() string { return "ledger invariant broken: " + string(b) }

// invariant panics when ok is false. Inside an op the writer recovers,
// rolls the op back and answers it as an internal error; anywhere else it
// stops the writer rather than let it write books it cannot vouch for.
func invariant(ok bool, format string, args ...any) {
	if !ok {
		panic(brokenInvariant(fmt.Sprintf(format, args...)))
	}
}

// checkBatch checks again, just before the write, what the writer made
// sure of op by op: the batch follows head in the chain, its record counts
// its transfers, every transfer belongs to it and balances, and no
// constrained account ends below its limit. A batch that fails is a bug in
// the writer: it is refused like a failed commit, and the writer reloads.
func checkBatch(b *store.Batch, head store.Head) error {
	r := b.Record
	if r.Seq != head.LastBatch+1 || !bytes.Equal(r.PrevHash, head.LastHash) {
		return fmt.Errorf("batch %d does not follow batch %d in the chain", r.Seq, head.LastBatch)
	}
	if r.Transfers != len(b.Transfers) {
		return fmt.Errorf("batch %d records %d transfers and carries %d", r.Seq, r.Transfers, len(b.Transfers))
	}
	for i := range b.Transfers {
		t := &b.Transfers[i]
		if t.Batch != r.Seq {
			return fmt.Errorf("transfer %d names batch %d, is in batch %d", t.ID, t.Batch, r.Seq)
		}
		if len(t.Entries) < 2 {
			return fmt.Errorf("transfer %d has %d entries", t.ID, len(t.Entries))
		}
		var sum int64
		for _, en := range t.Entries {
			// Post bounds every entry and sum: a wrapped sum does not come
			// back to zero by chance.
			sum += en.Amount
		}
		if sum != 0 {
			return fmt.Errorf("transfer %d does not balance: its entries sum to %d", t.ID, sum)
		}
	}
	for _, as := range [][]store.Account{b.NewAccounts, b.Accounts} {
		for i := range as {
			if a := &as[i]; a.Constrained && Available(*a) < -a.NegativeLimit {
				return fmt.Errorf("account %s: available %d is below its limit -%d", a.Code, Available(*a), a.NegativeLimit)
			}
		}
	}
	return nil
}
