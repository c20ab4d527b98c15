package cards_test

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"testing"

	"pgregory.net/rapid"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

// model is what the test expects of each card.
type model struct {
	balance map[string]int64 // posted balance of every card the test made
	status  map[string]string
	// reversible transfers and the effect of reversing each on its card
	transfers []revTransfer
	holds     []int64
}

type revTransfer struct {
	id     int64
	card   string
	effect int64
}

// TestPropertyLedger runs random sequences of the card life cycle and checks
// after every step that debits equal credits, every balance equals the sum
// of its entries, no purse is below its allowed minimum, a failed request
// changed nothing, and each card's balance is what the model says.
func TestPropertyLedger(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		e := newEnv(t, st, ledger.Config{MaxBatch: 64})
		ctx := context.Background()
		rapid.Check(t, func(rt *rapid.T) {
			m := &model{balance: map[string]int64{}, status: map[string]string{}}
			pickCard := func() string {
				if len(m.balance) == 0 {
					return ""
				}
				keys := slices.Sorted(maps.Keys(m.balance))
				return rapid.SampledFrom(keys).Draw(rt, "card")
			}
			check := func(before map[string]int64, err error) {
				if err == nil {
					return
				}
				after, cerr := st.CountRows(ctx)
				if cerr != nil {
					rt.Fatal(cerr)
				}
				if !maps.Equal(before, after) {
					rt.Fatalf("a failed request (%v) changed rows: %v → %v", err, before, after)
				}
			}
			counts := func() map[string]int64 {
				c, err := st.CountRows(ctx)
				if err != nil {
					rt.Fatal(err)
				}
				return c
			}
			rt.Repeat(map[string]func(*rapid.T){
				"issue": func(rt *rapid.T) {
					p := rapid.SampledFrom([]string{"standard", "anonymous", "student"}).Draw(rt, "product")
					out, err := e.svc.Issue(ctx, cards.Call{}, cards.IssueRequest{
						Holder: cards.Holder{Name: "Han Meimei", IDType: "passport", IDNumber: "E12345678"}, Product: p})
					if err != nil {
						rt.Fatal(err)
					}
					n := out.Result.(*cards.IssueResult).Number
					m.balance[n] = 0
					m.status[n] = store.CardActive
				},
				"topup": func(rt *rapid.T) {
					card := pickCard()
					if card == "" {
						rt.Skip("no card")
					}
					amt := rapid.Int64Range(-10, 200_000).Draw(rt, "amount")
					before := counts()
					out, err := e.svc.TopUp(ctx, cards.Call{}, cards.TopUpRequest{Card: card, Amount: amt, Currency: "CNY"})
					check(before, err)
					if err == nil {
						r := out.Result.(*cards.TopUpResult)
						id, _ := strconv.ParseInt(r.Receipt.Transfer, 10, 64)
						m.balance[card] += amt
						m.transfers = append(m.transfers, revTransfer{id, card, -amt})
					} else if m.status[card] == store.CardActive && amt > 0 && !fault.Is(err, fault.ExceedsMaxBalance) {
						rt.Fatalf("top-up of %d refused: %v", amt, err)
					}
				},
				"pay": func(rt *rapid.T) {
					card := pickCard()
					if card == "" {
						rt.Skip("no card")
					}
					ch := rapid.SampledFrom([]string{"retail", "transit", "medical", "welfare"}).Draw(rt, "channel")
					amt := rapid.Int64Range(1, 15_000).Draw(rt, "amount")
					hold := rapid.Bool().Draw(rt, "hold")
					before := counts()
					req := cards.PaymentRequest{Card: card, Channel: ch, Merchant: "M1", Amount: amt, Currency: "CNY"}
					var out ledger.Outcome
					var err error
					if hold {
						out, err = e.svc.Hold(ctx, cards.Call{}, cards.HoldRequest{PaymentRequest: req})
					} else {
						out, err = e.svc.Pay(ctx, cards.Call{}, req)
					}
					check(before, err)
					if err != nil {
						if !fault.Is(err, fault.ExceedsLimit) {
							rt.Fatalf("payment error: %v", err)
						}
						return
					}
					r := out.Result.(*cards.PaymentResult)
					if r.Status != cards.Approved {
						if after := counts(); after["transfers"] != before["transfers"] {
							rt.Fatalf("a decline (%s) wrote a transfer", r.Reason)
						}
						return
					}
					var sum int64
					for _, l := range r.Legs {
						sum += l.Amount
					}
					if sum != amt {
						rt.Fatalf("legs %v sum to %d, not %d", r.Legs, sum, amt)
					}
					id, _ := strconv.ParseInt(r.ID, 10, 64)
					if hold {
						m.holds = append(m.holds, id)
					} else {
						m.balance[card] -= amt
						m.transfers = append(m.transfers, revTransfer{id, card, amt})
					}
				},
				"capture": func(rt *rapid.T) {
					if len(m.holds) == 0 {
						rt.Skip("no hold")
					}
					i := rapid.IntRange(0, len(m.holds)-1).Draw(rt, "hold")
					id := m.holds[i]
					h, err := st.LoadHolds(ctx, []int64{id})
					if err != nil || len(h) != 1 {
						rt.Fatalf("hold %d: %v", id, err)
					}
					amt := rapid.Int64Range(0, h[0].Amount+5).Draw(rt, "amount")
					before := counts()
					out, err := e.svc.Capture(ctx, cards.Call{}, cards.CaptureRequest{Hold: id, Amount: amt})
					check(before, err)
					if err != nil {
						if h[0].Status == store.HoldPending && amt <= h[0].Amount {
							rt.Fatalf("capture of %d from a pending hold of %d refused: %v", amt, h[0].Amount, err)
						}
						return
					}
					r := out.Result.(*cards.HoldResult)
					tid, _ := strconv.ParseInt(r.Transfer, 10, 64)
					m.balance[r.Card] -= r.Captured
					m.transfers = append(m.transfers, revTransfer{tid, r.Card, r.Captured})
				},
				"void": func(rt *rapid.T) {
					if len(m.holds) == 0 {
						rt.Skip("no hold")
					}
					id := rapid.SampledFrom(m.holds).Draw(rt, "hold")
					before := counts()
					_, err := e.svc.Void(ctx, cards.Call{}, id)
					check(before, err)
				},
				"reverse": func(rt *rapid.T) {
					if len(m.transfers) == 0 {
						rt.Skip("no transfer")
					}
					i := rapid.IntRange(0, len(m.transfers)-1).Draw(rt, "transfer")
					tr := m.transfers[i]
					before := counts()
					_, err := e.svc.Reverse(ctx, cards.Call{}, cards.ReverseRequest{Transfer: tr.id})
					check(before, err)
					if err == nil {
						m.balance[tr.card] += tr.effect
						m.transfers = append(m.transfers[:i], m.transfers[i+1:]...)
					}
				},
				"loss": func(rt *rapid.T) {
					card := pickCard()
					if card == "" {
						rt.Skip("no card")
					}
					before := counts()
					_, err := e.svc.ReportLoss(ctx, cards.Call{}, card)
					check(before, err)
					if err == nil {
						m.status[card] = store.CardLost
					}
				},
				"replace": func(rt *rapid.T) {
					card := pickCard()
					if card == "" {
						rt.Skip("no card")
					}
					before := counts()
					out, err := e.svc.Replace(ctx, cards.Call{}, cards.ReplaceRequest{Card: card})
					check(before, err)
					if err == nil {
						r := out.Result.(*cards.ReplaceResult)
						m.balance[r.Number] = m.balance[card]
						m.status[r.Number] = store.CardActive
						m.balance[card] = 0
						m.status[card] = store.CardReplaced
					}
				},
				"cancel": func(rt *rapid.T) {
					card := pickCard()
					if card == "" {
						rt.Skip("no card")
					}
					before := counts()
					out, err := e.svc.Cancel(ctx, cards.Call{}, card)
					check(before, err)
					if err == nil {
						r := out.Result.(*cards.CancelResult)
						if r.Refund != r.Deposit+r.Balances-r.Debt {
							rt.Fatalf("refund %d != deposit %d + balances %d - debt %d", r.Refund, r.Deposit, r.Balances, r.Debt)
						}
						m.balance[card] = 0
						m.status[card] = store.CardClosed
					}
				},
				"": func(rt *rapid.T) {
					r, err := ledger.Verify(ctx, st)
					if err != nil {
						rt.Fatal(err)
					}
					if !r.OK() {
						rt.Fatalf("ledger verify: %v", r.Problems)
					}
					for card, want := range m.balance {
						v, err := e.svc.Get(ctx, card)
						if err != nil {
							rt.Fatal(err)
						}
						if v.Balance != want {
							rt.Fatalf("card %s holds %d, the model says %d", card, v.Balance, want)
						}
						if v.Status != m.status[card] {
							rt.Fatalf("card %s is %s, the model says %s", card, v.Status, m.status[card])
						}
					}
				},
			})
		})
	})
}
