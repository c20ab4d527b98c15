package ledger

import (
	"bytes"
	"context"
	"fmt"

	"github.com/citycard/citycard/hub/internal/store"
)

// AuditReport is what VerifyAudit found.
type AuditReport struct {
	Rows int64 // audit rows read, chained or not
	// Unchained counts the rows written before the chain began (no hash).
	// They are a note, not a problem: nothing can prove them.
	Unchained int64
	LastID    int64  // the last row read
	LastHash  []byte // its hash, nil when no row is chained
	// Problems lists each break in the chain with the first row at fault;
	// the log is sound when it is empty.
	Problems []AuditProblem
}

// AuditProblem is one break in the audit chain.
type AuditProblem struct {
	ID     int64 // the first row at fault (for missing rows, the first missing id)
	Detail string
}

// OK reports whether the audit log verified clean.
func (r AuditReport) OK() bool { return len(r.Problems) == 0 }

// auditPage is how many rows VerifyAudit reads at a time.
const auditPage = 1000

// maxAuditProblems bounds the report: a log rewritten from its first row
// would otherwise list every row after it.
const maxAuditProblems = 1000

// VerifyAudit walks the audit log in id order and checks its hash chain:
// every chained row's hash matches its fields (store.AuditHash), its
// previous hash matches the row before it, ids follow each other without
// gaps (the stores assign them from the audit head in the inserting
// transaction), no unchained row follows a chained one, and the last row is
// the one the store's head records, with the same hash. A writer may append
// while it runs: rows committed after the walk began are walked too.
func VerifyAudit(ctx context.Context, st store.Store) (AuditReport, error) {
	var (
		r       AuditReport
		chained bool // a row with a hash was seen
	)
	problem := func(id int64, format string, args ...any) {
		if len(r.Problems) < maxAuditProblems {
			r.Problems = append(r.Problems, AuditProblem{ID: id, Detail: fmt.Sprintf(format, args...)})
		}
	}
	// walk reads every row after r.LastID and reports whether there was one.
	walk := func() (bool, error) {
		read := false
		for {
			page, err := st.ListAudit(ctx, r.LastID, auditPage)
			if err != nil {
				return read, fmt.Errorf("audit verify: %w", err)
			}
			for i := range page {
				e := &page[i]
				read = true
				r.Rows++
				if e.Hash == nil {
					if chained {
						problem(e.ID, "audit row %d has no hash but follows chained row %d: its hash was removed",
							e.ID, r.LastID)
					} else {
						r.Unchained++
					}
					r.LastID = e.ID
					continue
				}
				switch {
				case e.ID != r.LastID+1:
					// The previous hash cannot match either; one problem says it.
					problem(r.LastID+1, "audit rows %d to %d are missing: row %d follows row %d",
						r.LastID+1, e.ID-1, e.ID, r.LastID)
				case !bytes.Equal(e.PrevHash, r.LastHash):
					if r.LastHash == nil {
						problem(e.ID, "audit row %d: previous hash set, but it is the first chained row", e.ID)
					} else {
						problem(e.ID, "audit row %d: previous hash does not match row %d's hash: a row was removed, inserted or rewritten before it",
							e.ID, r.LastID)
					}
				}
				if h := store.AuditHash(e.PrevHash, e); !bytes.Equal(h, e.Hash) {
					problem(e.ID, "audit row %d: hash does not match its fields: the row was edited after it was written", e.ID)
				}
				chained = true
				r.LastID, r.LastHash = e.ID, e.Hash
			}
			if len(page) < auditPage {
				return read, nil
			}
		}
	}
	if _, err := walk(); err != nil {
		return r, err
	}
	// The head is read after the walk: a head past the last row read is
	// either rows committed meanwhile, walked now, or a missing tail.
	for {
		h, err := st.Head(ctx)
		if err != nil {
			return r, fmt.Errorf("audit verify: %w", err)
		}
		if h.LastAudit > r.LastID {
			more, err := walk()
			if err != nil {
				return r, err
			}
			if more {
				continue
			}
			problem(r.LastID+1, "audit rows %d to %d are missing: the audit head records row %d as the last, the log ends at row %d",
				r.LastID+1, h.LastAudit, h.LastAudit, r.LastID)
			return r, nil
		}
		if h.LastAudit < r.LastID {
			problem(h.LastAudit+1, "audit rows %d to %d are past the audit head (row %d): they were added outside the store",
				h.LastAudit+1, r.LastID, h.LastAudit)
			return r, nil
		}
		if !bytes.Equal(h.AuditHash, r.LastHash) {
			problem(r.LastID, "audit row %d: its hash does not match the audit head's", r.LastID)
		}
		return r, nil
	}
}
