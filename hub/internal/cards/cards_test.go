package cards_test

import (
	"context"
	"flag"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/citycard/citycard/hub/internal/cards"
	"github.com/citycard/citycard/hub/internal/catalog"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

// env is a service on a real store.
type env struct {
	t   testing.TB
	st  store.Store
	eng *ledger.Engine
	svc *cards.Service
}

func newEnv(t testing.TB, st store.Store, cfg ledger.Config) *env {
	t.Helper()
	ctx := context.Background()
	cat, err := catalog.Default()
	if err != nil {
		t.Fatal(err)
	}
	eng, err := ledger.Open(ctx, st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	svc := cards.New(eng, cat, cards.Options{})
	if _, err := svc.AddMerchant(ctx, cards.MerchantRequest{ID: "M1", Name: "Corner shop", MCC: "5411", FeeRateBps: 60, SettlementAccount: "6222000011112222"}); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, st: st, eng: eng, svc: svc}
}

func (e *env) issue(product string) string {
	e.t.Helper()
	out, err := e.svc.Issue(context.Background(), cards.Call{}, cards.IssueRequest{
		Holder:  cards.Holder{Name: "Li Lei", IDType: "resident_id", IDNumber: "310101199001011234"},
		Product: product,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out.Result.(*cards.IssueResult).Number
}

func (e *env) topUp(card string, amount int64) {
	e.t.Helper()
	if _, err := e.svc.TopUp(context.Background(), cards.Call{}, cards.TopUpRequest{Card: card, Amount: amount, Currency: "CNY"}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) verify() {
	e.t.Helper()
	r, err := ledger.Verify(context.Background(), e.st)
	if err != nil {
		e.t.Fatal(err)
	}
	if !r.OK() {
		e.t.Fatalf("ledger verify: %v", r.Problems)
	}
}

// TestConcurrentSpend has 64 goroutines spend from one card at once: the
// card is never overspent and every approved payment is in the ledger
// exactly once.
func TestConcurrentSpend(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		e := newEnv(t, st, ledger.Config{})
		ctx := context.Background()
		card := e.issue("standard")
		const funds, price = 100_000, 700
		e.topUp(card, funds)

		var mu sync.Mutex
		approved := map[string]bool{}
		declined := 0
		var wg sync.WaitGroup
		for g := 0; g < 64; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 4; i++ {
					out, err := e.svc.Pay(ctx, cards.Call{}, cards.PaymentRequest{Card: card, Channel: "retail", Merchant: "M1", Amount: price, Currency: "CNY"})
					if err != nil {
						t.Error(err)
						return
					}
					r := out.Result.(*cards.PaymentResult)
					mu.Lock()
					switch r.Status {
					case cards.Approved:
						if approved[r.ID] {
							t.Errorf("payment id %s answered twice", r.ID)
						}
						approved[r.ID] = true
					default:
						if r.Reason != "insufficient_funds" {
							t.Errorf("declined with %s", r.Reason)
						}
						declined++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if want := funds / price; len(approved) != want {
			t.Fatalf("approved %d payments of %d from %d: want exactly %d", len(approved), price, funds, want)
		}
		if len(approved)+declined != 256 {
			t.Fatalf("answered %d of 256", len(approved)+declined)
		}
		v, err := e.svc.Get(ctx, card)
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(funds % price); v.Balance != want || v.Balance < 0 {
			t.Fatalf("balance %d, want %d", v.Balance, want)
		}
		for id := range approved {
			n, _ := strconv.ParseInt(id, 10, 64)
			tr, err := st.GetTransfer(ctx, n)
			if err != nil {
				t.Fatalf("approved payment %s not in the ledger: %v", id, err)
			}
			if tr.Kind != store.TransferPayment || tr.Card != card || tr.Amount != price {
				t.Fatalf("payment %s is %+v", id, tr)
			}
		}
		rows, err := st.CountRows(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// issue + top-up + the approved payments, each once
		if want := int64(2 + len(approved)); rows["transfers"] != want {
			t.Fatalf("%d transfers in the ledger, want %d", rows["transfers"], want)
		}
		e.verify()
	})
}

func TestMain(m *testing.M) {
	useCheapPINs()
	flag.Parse()
	// Each property step commits (and syncs) on a real database and the
	// ledger is re-verified after every step: a bounded number of sequences
	// keeps the suite quick (propertyChecks); ask for more with -rapid.checks.
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if !set {
		_ = flag.Set("rapid.checks", propertyChecks)
	}
	os.Exit(m.Run())
}
