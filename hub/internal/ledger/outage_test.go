package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

// outage is a real store that can be made unreachable: while down, commits
// fail and so does reading the head a reload starts from, as when the
// database refuses connections. Other loads still answer, so that a batch
// always gets as far as its commit.
type outage struct {
	store.Store
	down        atomic.Bool
	failCommits atomic.Int32 // commits still to fail, even while up
	commits     atomic.Int64
}

var errDown = errors.New("injected: connection refused")

func (o *outage) CommitBatch(ctx context.Context, b *store.Batch) error {
	o.commits.Add(1)
	if o.down.Load() {
		return errDown
	}
	if o.failCommits.Load() > 0 {
		o.failCommits.Add(-1)
		return errDown
	}
	return o.Store.CommitBatch(ctx, b)
}

func (o *outage) Head(ctx context.Context) (store.Head, error) {
	if o.down.Load() {
		return store.Head{}, errDown
	}
	return o.Store.Head(ctx)
}

// TestOutageNoAnswerWithoutEntry is the outage of the issue: a commit
// fails and so does the reload after it, for a while. Clients re-send
// every retryable answer with the same idempotency key. Every request
// answered (first time or replayed) is in the ledger exactly once, the
// purses hold exactly what was answered, the chain has no gap, and the
// writer refuses writes (Ready says why) until its reload has succeeded.
func TestOutageNoAnswerWithoutEntry(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, raw store.Store) {
		ctx := context.Background()
		st := &outage{Store: raw}
		eng, err := ledger.Open(ctx, st, ledger.Config{MaxBatch: 8})
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		enc := func(res any) (int, []byte, error) { return 201, fmt.Appendf(nil, `{"id":%d}`, res.(int64)), nil }

		const clients, each = 16, 30
		var answered atomic.Int64
		var ids sync.Map // transfer id -> idempotency key
		var sawUnready atomic.Bool
		var wg sync.WaitGroup
		for g := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					key := fmt.Sprintf("c%d-%d", g, i)
					opts := ledger.SubmitOptions{Idempotency: &store.IdemKey{Operator: "t", Key: key}, RequestHash: "h", Encode: enc}
					for try := 0; ; try++ {
						if try > 2000 {
							t.Errorf("%s: still refused after %d tries", key, try)
							return
						}
						out, err := eng.Submit(ctx, move{"cash", fmt.Sprintf("purse:%d", g), 10, false}, opts)
						if ledger.IsRetryable(err) {
							if eng.Ready() != nil {
								sawUnready.Store(true)
							}
							time.Sleep(2 * time.Millisecond)
							continue
						}
						if err != nil {
							t.Errorf("%s: %v", key, err)
							return
						}
						if !out.Replayed {
							answered.Add(1)
						}
						var id int64
						fmt.Sscanf(string(out.Body), `{"id":%d}`, &id)
						if prev, dup := ids.LoadOrStore(id, key); dup && prev != key {
							t.Errorf("transfer %d answered to %s and %s", id, prev, key)
						}
						break
					}
				}
			}()
		}
		// The outage: the next commit fails, and the store stays away long
		// enough for several reload attempts to fail too.
		time.Sleep(20 * time.Millisecond)
		st.down.Store(true)
		deadline := time.Now().Add(5 * time.Second)
		for eng.Ready() == nil && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if eng.Ready() == nil {
			t.Fatal("the store went away and the writer still reports ready")
		}
		if !fault.Is(eng.Ready(), fault.Unavailable) {
			t.Fatalf("Ready while down: %v, want unavailable", eng.Ready())
		}
		time.Sleep(300 * time.Millisecond)
		st.down.Store(false)
		wg.Wait()
		if eng.Ready() != nil {
			t.Fatalf("the store came back and the writer still refuses: %v", eng.Ready())
		}
		if !sawUnready.Load() {
			t.Error("no client was refused while the store was down")
		}
		eng.Close()

		r := mustVerify(t, raw)
		if r.Transfers != clients*each {
			t.Fatalf("%d transfers in the ledger, %d requests each answered once", r.Transfers, clients*each)
		}
		n := 0
		ids.Range(func(k, v any) bool {
			n++
			if _, err := raw.GetTransfer(ctx, k.(int64)); err != nil {
				t.Errorf("transfer %v answered to %v is not in the ledger: %v", k, v, err)
			}
			return true
		})
		if n != clients*each {
			t.Fatalf("%d distinct transfers answered, want %d", n, clients*each)
		}
		for g := range clients {
			if got := balanceOf(t, raw, fmt.Sprintf("purse:%d", g)); got != 10*each {
				t.Errorf("purse:%d holds %d, want %d", g, got, 10*each)
			}
		}
	})
}

// TestReadyAfterFailedCommitWithoutTraffic: a commit that fails while no
// other request comes makes the writer reload on its own, and its callers
// are answered.
func TestReadyAfterFailedCommitWithoutTraffic(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, raw store.Store) {
		ctx := context.Background()
		st := &outage{Store: raw}
		eng, err := ledger.Open(ctx, st, ledger.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		st.failCommits.Store(1)
		if _, err := eng.Submit(ctx, move{"cash", "purse:q", 5, false}, ledger.SubmitOptions{}); !ledger.IsRetryable(err) {
			t.Fatalf("failed commit: %v, want retryable", err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for eng.Ready() != nil && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if err := eng.Ready(); err != nil {
			t.Fatalf("the writer did not reload on its own: %v", err)
		}
		if _, err := eng.Submit(ctx, move{"cash", "purse:q", 5, false}, ledger.SubmitOptions{}); err != nil {
			t.Fatal(err)
		}
		eng.Close()
		if got := balanceOf(t, raw, "purse:q"); got != 5 {
			t.Fatalf("purse:q holds %d, want 5", got)
		}
		mustVerify(t, raw)
	})
}

// memoMove is move with a memo on its transfer: the memo is written with
// the batch but is no key the engine loads by.
type memoMove struct {
	move
	memo string
}

func (m memoMove) Apply(tx *ledger.Tx) (any, error) {
	from := tx.EnsureAccount(store.Account{Code: m.from, Kind: store.KindCash, Currency: "CNY"})
	to := tx.EnsureAccount(store.Account{Code: m.to, Kind: store.KindPurse, Currency: "CNY", Constrained: true})
	return tx.Post(store.Transfer{Kind: store.TransferAdjust, Currency: "CNY", Memo: m.memo,
		Entries: []store.Entry{{Account: from.ID, Amount: m.amount}, {Account: to.ID, Amount: -m.amount}}}, zeroTime)
}

// TestBadValueSinksOnlyItsOwnOp: one op carries text the store cannot
// hold (a NUL byte), either in a key the writer loads by or only in what
// the batch writes. It is refused alone, not retryable, on both drivers
// alike; the ops that shared its batch are written and answered, and the
// writer serves on.
func TestBadValueSinksOnlyItsOwnOp(t *testing.T) {
	for _, where := range []string{"key", "written"} {
		t.Run(where, func(t *testing.T) { badValueSinksOnlyItsOwnOp(t, where) })
	}
}

func badValueSinksOnlyItsOwnOp(t *testing.T, where string) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		eng, err := ledger.Open(ctx, st, ledger.Config{MaxBatch: 64, Linger: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		const good = 40
		var ok atomic.Int64
		var wg sync.WaitGroup
		var badErr error
		for i := range good + 1 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var op ledger.Op = memoMove{move{"cash", fmt.Sprintf("purse:g%d", i), 1, false}, "fine"}
				if i == good && where == "key" {
					op = move{"cash", "purse:bad\x00name", 1, false}
				} else if i == good {
					op = memoMove{move{"cash", "purse:bad", 1, false}, "a NUL\x00 in the memo"}
				}
				_, err := eng.Submit(ctx, op, ledger.SubmitOptions{})
				if i == good {
					badErr = err
					return
				}
				if err != nil {
					t.Errorf("op %d: %v", i, err)
					return
				}
				ok.Add(1)
			}()
		}
		wg.Wait()
		if !fault.Is(badErr, fault.InvalidRequest) || ledger.IsRetryable(badErr) {
			t.Fatalf("the bad op: %v, want invalid_request, not retryable", badErr)
		}
		if !strings.Contains(badErr.Error(), "NUL") {
			t.Errorf("the bad op's error does not say what was wrong: %v", badErr)
		}
		if ok.Load() != good {
			t.Fatalf("%d of %d good ops written", ok.Load(), good)
		}
		if err := eng.Ready(); err != nil {
			t.Fatalf("after refusing one op the writer is not ready: %v", err)
		}
		eng.Close()
		if r := mustVerify(t, st); r.Transfers != good {
			t.Fatalf("%d transfers, want %d", r.Transfers, good)
		}
	})
}

// TestCacheTrim keeps the writer's cache past a tiny limit, so that it is
// dropped after almost every batch, with batches that write nothing (all
// replays) among them: every request is answered, and what was answered
// is what the ledger holds.
func TestCacheTrim(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		eng, err := ledger.Open(ctx, st, ledger.Config{MaxBatch: 4, CacheLimit: 3})
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		enc := func(res any) (int, []byte, error) { return 201, fmt.Appendf(nil, `{"id":%d}`, res.(int64)), nil }
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 20 {
					// Every other request replays the one before it.
					key := fmt.Sprintf("g%d-%d", g, i/2)
					opts := ledger.SubmitOptions{Idempotency: &store.IdemKey{Operator: "t", Key: key}, RequestHash: "h", Encode: enc}
					if _, err := eng.Submit(ctx, move{"cash", fmt.Sprintf("purse:%d", g), 1, false}, opts); err != nil {
						t.Errorf("%s: %v", key, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		eng.Close()
		if r := mustVerify(t, st); r.Transfers != 8*10 {
			t.Fatalf("%d transfers, want %d", r.Transfers, 8*10)
		}
		for g := range 8 {
			if got := balanceOf(t, st, fmt.Sprintf("purse:%d", g)); got != 10 {
				t.Errorf("purse:%d holds %d, want 10", g, got)
			}
		}
	})
}
