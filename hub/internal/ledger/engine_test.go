package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

// move posts amount from one account to another, creating both on first use.
type move struct {
	from, to string
	amount   int64
	fail     bool // fail after posting, to prove the op leaves no trace
}

func (m move) Prefetch(k *ledger.Keys) { k.Account(m.from, m.to) }

func (m move) Apply(tx *ledger.Tx) (any, error) {
	from := tx.EnsureAccount(store.Account{Code: m.from, Kind: store.KindCash, Currency: "CNY"})
	to := tx.EnsureAccount(store.Account{Code: m.to, Kind: store.KindPurse, Currency: "CNY", Constrained: true})
	id, err := tx.Post(store.Transfer{Kind: store.TransferAdjust, Currency: "CNY",
		Entries: []store.Entry{{Account: from.ID, Amount: m.amount}, {Account: to.ID, Amount: -m.amount}}}, zeroTime)
	if err != nil {
		return nil, err
	}
	if m.fail {
		return nil, fault.E(fault.InvalidRequest, "", "changed my mind")
	}
	return id, nil
}

// spend takes amount out of a constrained account.
type spend struct {
	from, to string
	amount   int64
}

func (s spend) Prefetch(k *ledger.Keys) { k.Account(s.from, s.to) }

func (s spend) Apply(tx *ledger.Tx) (any, error) {
	from := tx.Account(s.from)
	to := tx.EnsureAccount(store.Account{Code: s.to, Kind: store.KindMerchant, Currency: "CNY"})
	return tx.Post(store.Transfer{Kind: store.TransferAdjust, Currency: "CNY",
		Entries: []store.Entry{{Account: from.ID, Amount: s.amount}, {Account: to.ID, Amount: -s.amount}}}, zeroTime)
}

func balanceOf(t *testing.T, st store.Store, code string) int64 {
	t.Helper()
	as, err := st.LoadAccounts(context.Background(), []string{code})
	if err != nil || len(as) != 1 {
		t.Fatalf("account %s: %v %v", code, as, err)
	}
	return ledger.Balance(as[0])
}

func mustVerify(t *testing.T, st store.Store) ledger.Report {
	t.Helper()
	r, err := ledger.Verify(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() {
		t.Fatalf("verify: %v", r.Problems)
	}
	return r
}

func TestFailedOpLeavesNoTrace(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		eng, err := ledger.Open(ctx, st, ledger.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		if _, err := eng.Submit(ctx, move{"cash", "purse:a", 500, false}, ledger.SubmitOptions{}); err != nil {
			t.Fatal(err)
		}
		// Posted, then failed: neither the transfer nor the new account stays.
		if _, err := eng.Submit(ctx, move{"cash", "purse:b", 700, true}, ledger.SubmitOptions{}); !fault.Is(err, fault.InvalidRequest) {
			t.Fatalf("want the op's own error, got %v", err)
		}
		// Overspending a constrained account is refused by the engine itself.
		if _, err := eng.Submit(ctx, spend{"purse:a", "merchant:m", 501}, ledger.SubmitOptions{}); !fault.Is(err, fault.InsufficientFunds) {
			t.Fatalf("overspend: want insufficient_funds, got %v", err)
		}
		if _, err := eng.Submit(ctx, spend{"purse:a", "merchant:m", 500}, ledger.SubmitOptions{}); err != nil {
			t.Fatal(err)
		}
		eng.Close()
		if got := balanceOf(t, st, "purse:a"); got != 0 {
			t.Fatalf("purse:a holds %d", got)
		}
		if as, _ := st.LoadAccounts(ctx, []string{"purse:b"}); len(as) != 0 {
			t.Fatalf("the failed op's account was written: %v", as)
		}
		if r := mustVerify(t, st); r.Transfers != 2 {
			t.Fatalf("%d transfers, want 2", r.Transfers)
		}
	})
}

// TestCommitFailure fails one commit under concurrent load: every request of
// that batch (and of any batch applied on top of it) gets a retryable error,
// nothing of them is written, and the engine carries on from what the
// database holds.
func TestCommitFailure(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, raw store.Store) {
		ctx := context.Background()
		st := &outage{Store: raw}
		eng, err := ledger.Open(ctx, st, ledger.Config{MaxBatch: 8})
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		var ok, retry atomic.Int64
		var wg sync.WaitGroup
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 25; i++ {
					if g == 3 && i == 10 {
						st.failCommits.Store(1)
					}
					_, err := eng.Submit(ctx, move{"cash", fmt.Sprintf("purse:%d", g), 10, false}, ledger.SubmitOptions{})
					switch {
					case err == nil:
						ok.Add(1)
					case ledger.IsRetryable(err):
						retry.Add(1)
					default:
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		if retry.Load() == 0 {
			t.Fatal("the injected failure refused nothing")
		}
		// After the failure the engine must still work.
		if _, err := eng.Submit(ctx, move{"cash", "purse:after", 1, false}, ledger.SubmitOptions{}); err != nil {
			t.Fatalf("after a failed commit: %v", err)
		}
		eng.Close()
		r := mustVerify(t, st)
		if r.Transfers != ok.Load()+1 {
			t.Fatalf("%d transfers written, %d acknowledged", r.Transfers, ok.Load()+1)
		}
		var sum int64
		for g := 0; g < 16; g++ {
			if as, _ := st.LoadAccounts(ctx, []string{fmt.Sprintf("purse:%d", g)}); len(as) == 1 {
				sum += ledger.Balance(as[0])
			}
		}
		if sum != 10*ok.Load() {
			t.Fatalf("purses hold %d, acknowledged %d", sum, 10*ok.Load())
		}
	})
}

// TestIdempotency: the same key with the same request is answered with the
// first answer and writes nothing; with another request it is refused; two
// requests with one key in the same batch take effect once.
func TestIdempotency(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		eng, err := ledger.Open(ctx, st, ledger.Config{MaxBatch: 64})
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		enc := func(res any) (int, []byte, error) { return 201, fmt.Appendf(nil, `{"id":%d}`, res.(int64)), nil }
		opts := func(key, hash string) ledger.SubmitOptions {
			return ledger.SubmitOptions{Idempotency: &store.IdemKey{Operator: "t", Key: key}, RequestHash: hash, Encode: enc}
		}
		first, err := eng.Submit(ctx, move{"cash", "purse:x", 5, false}, opts("k1", "h1"))
		if err != nil || first.Replayed {
			t.Fatal(first, err)
		}
		again, err := eng.Submit(ctx, move{"cash", "purse:x", 5, false}, opts("k1", "h1"))
		if err != nil || !again.Replayed || string(again.Body) != string(first.Body) || again.Status != 201 {
			t.Fatalf("replay: %+v %v (first %s)", again, err, first.Body)
		}
		if _, err := eng.Submit(ctx, move{"cash", "purse:x", 6, false}, opts("k1", "h2")); !fault.Is(err, fault.IdempotencyConflict) {
			t.Fatalf("other body: %v", err)
		}
		// 32 concurrent requests with one key: one effect.
		var wg sync.WaitGroup
		bodies := make([]string, 32)
		for i := range bodies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := eng.Submit(ctx, move{"cash", "purse:x", 5, false}, opts("k2", "h1"))
				if err != nil {
					t.Error(err)
				}
				bodies[i] = string(out.Body)
			}()
		}
		wg.Wait()
		for _, b := range bodies {
			if b != bodies[0] {
				t.Fatalf("answers differ: %q vs %q", b, bodies[0])
			}
		}
		eng.Close()
		if got := balanceOf(t, st, "purse:x"); got != 10 {
			t.Fatalf("purse:x holds %d, want 10 (two effects)", got)
		}
		// A new engine on the same store still knows the keys.
		eng2, err := ledger.Open(ctx, st, ledger.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer eng2.Close()
		out, err := eng2.Submit(ctx, move{"cash", "purse:x", 5, false}, opts("k1", "h1"))
		if err != nil || !out.Replayed || string(out.Body) != string(first.Body) {
			t.Fatalf("after restart: %+v %v", out, err)
		}
		eng2.Close()
		mustVerify(t, st)
	})
}

// TestTamperEvident: changing a committed entry breaks the chain and the
// balances, and Verify says so.
func TestTamperEvident(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		eng, err := ledger.Open(ctx, st, ledger.Config{})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			if _, err := eng.Submit(ctx, move{"cash", "purse:t", 100, false}, ledger.SubmitOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		eng.Close()
		mustVerify(t, st)
		raw, ok := st.(interface {
			ExecRaw(ctx context.Context, sql string) error
		})
		if !ok {
			t.Skip("driver has no raw access for tests")
		}
		if err := raw.ExecRaw(ctx, "UPDATE entries SET amount = amount * 2 WHERE transfer_id = 2"); err != nil {
			t.Fatal(err)
		}
		r, err := ledger.Verify(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		if r.OK() {
			t.Fatal("verify passed a tampered ledger")
		}
		t.Logf("verify found: %v", r.Problems)
	})
}

var zeroTime time.Time

// TestSubmitDuringClose: callers racing a shutdown are all answered, either
// with their result or with ErrClosed, and what was answered is written.
func TestSubmitDuringClose(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		eng, err := ledger.Open(ctx, st, ledger.Config{MaxBatch: 16, QueueSize: 64})
		if err != nil {
			t.Fatal(err)
		}
		var ok atomic.Int64
		var wg sync.WaitGroup
		for g := 0; g < 32; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 20; i++ {
					_, err := eng.Submit(ctx, move{"cash", fmt.Sprintf("purse:c%d", g), 1, false}, ledger.SubmitOptions{})
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, ledger.ErrClosed) || ledger.IsRetryable(err):
						return
					default:
						t.Error(err)
						return
					}
				}
			}()
		}
		time.Sleep(5 * time.Millisecond)
		eng.Close()
		wg.Wait() // a caller left hanging fails the test by timeout
		if r := mustVerify(t, st); r.Transfers != ok.Load() {
			t.Fatalf("%d transfers written, %d acknowledged", r.Transfers, ok.Load())
		}
	})
}
