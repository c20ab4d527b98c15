package faulttest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Figures are what a run did and found.
type Figures struct {
	Faults     int
	Payments   int
	Approved   int
	Declined   int
	Unknown    int
	Retries    int64
	Lost       int // approved payments not in the ledger, or fen missing from a card's debits
	Doubled    int // payments charged more than once, or a replay answered with another transfer
	Duration   time.Duration
	Unanswered int64
}

func (f Figures) String() string {
	return fmt.Sprintf("%d faults, %d payments (%d approved, %d declined, %d unknown), %d re-sends, %d lost, %d doubled, in %v",
		f.Faults, f.Payments, f.Approved, f.Declined, f.Unknown, f.Retries, f.Lost, f.Doubled, f.Duration.Round(time.Second))
}

// CheckEnd checks a hub that serves again after the faults against the
// history: every payment answered approved is in the ledger, once, as the
// transfer it was answered with, and a replay of its key answers that same
// transfer without charging again; every card holds its top-up minus its
// approved payments. Lost and Doubled are filled in f; each problem fails
// t.
func CheckEnd(t testing.TB, c *Client, h *History, f *Figures) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ops := h.Ops()
	f.Payments, f.Approved, f.Declined, f.Unknown = h.Counts()

	type problem struct {
		lost, doubled bool
		msg           string
	}
	var (
		mu       sync.Mutex
		problems []problem
		wg       sync.WaitGroup
	)
	report := func(p problem) {
		mu.Lock()
		problems = append(problems, p)
		mu.Unlock()
	}
	work := make(chan Op)
	for range 8 {
		wg.Go(func() {
			for op := range work {
				var tr struct {
					Kind   string `json:"kind"`
					Card   string `json:"card"`
					Amount int64  `json:"amount"`
				}
				status, _, text, err := c.Do(ctx, "GET", "/v1/transfers/"+op.ID, "", nil, &tr)
				switch {
				case err != nil && status == 0:
					report(problem{msg: fmt.Sprintf("GET transfer %s: %v", op.ID, err)})
					continue
				case status == 404:
					report(problem{lost: true, msg: fmt.Sprintf("payment %s (key %s, replayed %v) was answered approved as transfer %s, which is not in the ledger", op.Card, op.Key, op.Replayed, op.ID)})
					continue
				case status != 200:
					report(problem{msg: fmt.Sprintf("GET transfer %s: %d %s", op.ID, status, text)})
					continue
				case tr.Kind != "payment" || tr.Card != op.Card || tr.Amount != op.Amount:
					report(problem{lost: true, msg: fmt.Sprintf("transfer %s is a %s of %d from %s, but was answered as a payment of %d from %s", op.ID, tr.Kind, tr.Amount, tr.Card, op.Amount, op.Card)})
					continue
				}
				var ans payAnswer
				status, hdr, text, err := c.Write(ctx, "/v1/payments", op.Key, payBody(op.Card, op.Amount), &ans)
				switch {
				case err != nil:
					report(problem{msg: fmt.Sprintf("replay of key %s: %v", op.Key, err)})
				case status != 201 || ans.Status != Approved || ans.ID != op.ID:
					report(problem{doubled: ans.ID != "" && ans.ID != op.ID, msg: fmt.Sprintf("replay of key %s answered %d %s %q (transfer %s), want approved transfer %s", op.Key, status, ans.Status, text, ans.ID, op.ID)})
				case hdr.Get("Idempotent-Replayed") != "true":
					report(problem{doubled: true, msg: fmt.Sprintf("replay of key %s was not answered as a replay: it may have charged again", op.Key)})
				}
			}
		})
	}
	ids := map[string]string{}
	expect := map[string]int64{}
	for _, op := range ops {
		switch {
		case op.Kind == TopUp:
			expect[op.Card] += op.Amount
		case op.Kind == Pay && op.Outcome == Approved:
			expect[op.Card] -= op.Amount
			if k, ok := ids[op.ID]; ok {
				report(problem{doubled: true, msg: fmt.Sprintf("keys %s and %s were both answered with transfer %s", k, op.Key, op.ID)})
			}
			ids[op.ID] = op.Key
			work <- op
		}
	}
	close(work)
	wg.Wait()

	// Unknown payments were re-sent until answered, so each card's money
	// is exact; an unknown one left over (a failure already) may be in.
	slack := map[string]int64{}
	for _, op := range ops {
		if op.Kind == Pay && op.Outcome == Unknown {
			slack[op.Card] += op.Amount
		}
	}
	for card, want := range expect {
		got, err := CashBalance(ctx, c, card)
		if err != nil {
			report(problem{msg: err.Error()})
			continue
		}
		switch {
		case got > want:
			report(problem{lost: true, msg: fmt.Sprintf("card %s holds %d, want %d (top-up less approved payments): %d fen answered approved were never charged", card, got, want, got-want)})
		case got < want-slack[card]:
			report(problem{doubled: true, msg: fmt.Sprintf("card %s holds %d, want %d (top-up less approved payments): %d fen charged beyond the approvals", card, got, want, want-got)})
		}
	}
	for _, p := range problems {
		if p.lost {
			f.Lost++
		}
		if p.doubled {
			f.Doubled++
		}
	}
	for i, p := range problems {
		if i == 20 {
			t.Errorf("… and %d more problems", len(problems)-20)
			break
		}
		t.Error(p.msg)
	}
}
