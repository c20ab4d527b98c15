package ledger

import (
	"bytes"
	"context"
	"fmt"

	"github.com/citycard/citycard/hub/internal/store"
)

// Report is what Verify found.
type Report struct {
	Batches      int64
	Transfers    int64
	Entries      int64
	Accounts     int64
	TotalDebits  int64
	TotalCredits int64
	// Problems lists every mismatch; the ledger is sound when it is empty.
	Problems []string
}

// OK reports whether the ledger verified clean.
func (r Report) OK() bool { return len(r.Problems) == 0 }

type totals struct{ dp, cp, dpend, cpend int64 }

// Verify re-derives every account's totals from the entries, checks that
// each transfer balances, that the hash chain is unbroken, that no
// constrained account is below its limit and that the trial balance
// balances. It reads only committed rows and may run beside a live writer
// only if the caller accepts a moving target; run it offline for audits.
func Verify(ctx context.Context, st store.Store) (Report, error) {
	return VerifyProgress(ctx, st, nil)
}

// VerifyProgress is Verify that calls progress after every batch it has
// checked (with the running report), so a long audit can show how far it is.
func VerifyProgress(ctx context.Context, st store.Store, progress func(Report)) (Report, error) {
	var r Report
	problem := func(format string, args ...any) {
		if len(r.Problems) < 1000 {
			r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
		}
	}
	holds, err := st.PendingHolds(ctx)
	if err != nil {
		return r, err
	}
	open := make(map[int64]bool, len(holds))
	for _, h := range holds {
		open[h.ID] = true
	}
	sums := map[int64]*totals{}
	get := func(id int64) *totals {
		t := sums[id]
		if t == nil {
			t = &totals{}
			sums[id] = t
		}
		return t
	}
	var prev []byte
	var lastSeq int64
	var lastTransfer int64
	err = st.Batches(ctx, func(b store.BatchRecord, ts []store.Transfer) error {
		r.Batches++
		if b.Seq != lastSeq+1 {
			problem("batch %d follows batch %d: the chain has a gap", b.Seq, lastSeq)
		}
		lastSeq = b.Seq
		if !bytes.Equal(b.PrevHash, prev) {
			problem("batch %d: previous hash does not match batch %d", b.Seq, b.Seq-1)
		}
		if h := ChainHash(b.PrevHash, b.Seq, ts); !bytes.Equal(h, b.Hash) {
			problem("batch %d: hash mismatch: its transfers were changed after commit", b.Seq)
		}
		if b.Transfers != len(ts) {
			problem("batch %d: records %d transfers, holds %d", b.Seq, b.Transfers, len(ts))
		}
		prev = b.Hash
		for _, t := range ts {
			r.Transfers++
			if t.ID <= lastTransfer {
				problem("transfer %d out of order", t.ID)
			}
			lastTransfer = t.ID
			var sum int64
			for _, en := range t.Entries {
				r.Entries++
				sum += en.Amount
				a := get(en.Account)
				switch {
				case t.Pending && !open[t.ID]:
					// a hold since captured, voided or expired: no longer counts
				case t.Pending && en.Amount > 0:
					a.dpend += en.Amount
				case t.Pending:
					a.cpend -= en.Amount
				case en.Amount > 0:
					a.dp += en.Amount
				default:
					a.cp -= en.Amount
				}
			}
			if sum != 0 {
				problem("transfer %d does not balance: entries sum to %d", t.ID, sum)
			}
		}
		if progress != nil {
			progress(r)
		}
		return nil
	})
	if err != nil {
		return r, err
	}
	for id := range open {
		if _, err := st.GetTransfer(ctx, id); err != nil {
			problem("hold %d has no pending transfer: %v", id, err)
		}
	}
	err = st.AllAccounts(ctx, func(a store.Account) error {
		r.Accounts++
		want := sums[a.ID]
		if want == nil {
			want = &totals{}
		}
		delete(sums, a.ID)
		if a.DebitsPosted != want.dp || a.CreditsPosted != want.cp {
			problem("account %s: stored posted debits/credits %d/%d, entries give %d/%d",
				a.Code, a.DebitsPosted, a.CreditsPosted, want.dp, want.cp)
		}
		if a.DebitsPending != want.dpend || a.CreditsPending != want.cpend {
			problem("account %s: stored pending debits/credits %d/%d, open holds give %d/%d",
				a.Code, a.DebitsPending, a.CreditsPending, want.dpend, want.cpend)
		}
		if a.Constrained && Available(a) < -a.NegativeLimit {
			problem("account %s: available %d is below its limit -%d", a.Code, Available(a), a.NegativeLimit)
		}
		r.TotalDebits += a.DebitsPosted
		r.TotalCredits += a.CreditsPosted
		return nil
	})
	if err != nil {
		return r, err
	}
	for id := range sums {
		problem("entries name account %d, which does not exist", id)
	}
	if r.TotalDebits != r.TotalCredits {
		problem("trial balance: total debits %d != total credits %d", r.TotalDebits, r.TotalCredits)
	}
	return r, nil
}
