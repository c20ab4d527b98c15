package ledger_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/citycard/citycard/hub/internal/fault"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/sqlite"
)

// TestWriterUnderFaults draws runs of concurrent requests with
// idempotency keys, interleaved with failed commits, outages during which
// the reload fails too, and requests carrying a value the store refuses.
// Whatever was drawn: every request answered is in the ledger exactly
// once with the answer it got, a refused value sinks only its own request,
// replays return the first answer, and the purses hold exactly what was
// answered.
func TestWriterUnderFaults(t *testing.T) {
	dir := t.TempDir()
	n := 0
	rapid.Check(t, func(rt *rapid.T) {
		n++
		ctx := context.Background()
		raw, err := sqlite.Open(ctx, filepath.Join(dir, fmt.Sprintf("p%d.db", n)))
		if err != nil {
			rt.Fatal(err)
		}
		defer os.Remove(filepath.Join(dir, fmt.Sprintf("p%d.db", n)))
		defer raw.Close()
		st := &outage{Store: raw}
		eng, err := ledger.Open(ctx, st, ledger.Config{MaxBatch: rapid.IntRange(1, 16).Draw(rt, "maxBatch")})
		if err != nil {
			rt.Fatal(err)
		}
		defer eng.Close()
		enc := func(res any) (int, []byte, error) { return 201, fmt.Appendf(nil, `{"id":%d}`, res.(int64)), nil }

		type sent struct {
			purse  string
			amount int64
		}
		var mu sync.Mutex
		keys := map[string]sent{}       // every key sent, with its request
		answered := map[string]string{} // key -> first answer body
		next := 0                       // keys of bad values
		submit := func(key string, r sent, nul bool) error {
			var op ledger.Op = memoMove{move{"cash", r.purse, r.amount, false}, "ok"}
			if nul {
				op = memoMove{move{"cash", r.purse, r.amount, false}, "bad\x00memo"}
			}
			out, err := eng.Submit(ctx, op, ledger.SubmitOptions{
				Idempotency: &store.IdemKey{Operator: "p", Key: key}, RequestHash: fmt.Sprint(r, nul), Encode: enc})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				if first, ok := answered[key]; ok && first != string(out.Body) {
					rt.Errorf("%s answered %s, then %s", key, first, out.Body)
				}
				answered[key] = string(out.Body)
			case fault.Is(err, fault.InvalidRequest) && nul:
			case ledger.IsRetryable(err):
			default:
				rt.Errorf("%s: %v", key, err)
			}
			return err
		}
		wave := func(rt *rapid.T, nulAt int) {
			size := rapid.IntRange(1, 12).Draw(rt, "size")
			var wg sync.WaitGroup
			for i := range size {
				if i == nulAt {
					// A bad value under a key of its own, never sent again.
					key := fmt.Sprintf("bad%d", next)
					next++
					wg.Add(1)
					go func() {
						defer wg.Done()
						for try := 0; try < 2000; try++ {
							err := submit(key, sent{"purse:0", 1}, true)
							if ledger.IsRetryable(err) {
								// An injected failure came first, or the
								// writer is still reloading.
								time.Sleep(time.Millisecond)
								continue
							}
							if !fault.Is(err, fault.InvalidRequest) {
								rt.Errorf("%s carried a NUL: %v, want invalid_request", key, err)
							}
							return
						}
						rt.Errorf("%s: no definite answer", key)
					}()
					continue
				}
				mu.Lock()
				var key string
				if len(keys) > 0 && rapid.IntRange(0, 4).Draw(rt, "resend") == 0 {
					key = fmt.Sprintf("k%d", rapid.IntRange(0, len(keys)-1).Draw(rt, "old"))
				} else {
					key = fmt.Sprintf("k%d", len(keys))
					keys[key] = sent{fmt.Sprintf("purse:%d", rapid.IntRange(0, 3).Draw(rt, "purse")),
						int64(rapid.IntRange(1, 500).Draw(rt, "amount"))}
				}
				r := keys[key]
				mu.Unlock()
				wg.Add(1)
				go func() { defer wg.Done(); submit(key, r, false) }()
			}
			wg.Wait()
		}
		rt.Repeat(map[string]func(*rapid.T){
			"requests": func(rt *rapid.T) { wave(rt, -1) },
			"failed commits": func(rt *rapid.T) {
				st.failCommits.Store(int32(rapid.IntRange(1, 3).Draw(rt, "fails")))
				wave(rt, -1)
			},
			"outage": func(rt *rapid.T) {
				st.down.Store(true)
				wave(rt, -1)
				time.Sleep(time.Duration(rapid.IntRange(0, 30).Draw(rt, "downMs")) * time.Millisecond)
				st.down.Store(false)
			},
			"bad value": func(rt *rapid.T) { wave(rt, 0) },
		})
		st.down.Store(false)
		st.failCommits.Store(0)
		// Every request without a definite answer is sent again, with its
		// key, until it has one.
		for key, r := range keys {
			for try := 0; ; try++ {
				mu.Lock()
				_, done := answered[key]
				mu.Unlock()
				if done {
					break
				}
				if try > 5000 {
					rt.Fatalf("%s: no definite answer after %d tries", key, try)
				}
				if err := submit(key, r, false); err != nil {
					time.Sleep(time.Millisecond)
				}
			}
		}
		eng.Close()

		rep, err := ledger.Verify(ctx, raw)
		if err != nil {
			rt.Fatal(err)
		}
		if !rep.OK() {
			rt.Fatalf("verify: %v", rep.Problems)
		}
		want := map[string]int64{}
		for key, body := range answered {
			var id int64
			fmt.Sscanf(body, `{"id":%d}`, &id)
			tr, err := raw.GetTransfer(ctx, id)
			if err != nil {
				rt.Fatalf("%s answered transfer %d, which is not in the ledger: %v", key, id, err)
			}
			if tr.Amount != keys[key].amount {
				rt.Fatalf("%s: transfer %d moved %d, the request %d", key, id, tr.Amount, keys[key].amount)
			}
			want[keys[key].purse] += keys[key].amount
		}
		if rep.Transfers != int64(len(answered)) {
			rt.Fatalf("%d transfers in the ledger, %d requests answered", rep.Transfers, len(answered))
		}
		for p := range 4 {
			code := fmt.Sprintf("purse:%d", p)
			as, err := raw.LoadAccounts(ctx, []string{code})
			if err != nil {
				rt.Fatal(err)
			}
			var got int64
			if len(as) == 1 {
				got = ledger.Balance(as[0])
			}
			if got != want[code] {
				rt.Fatalf("%s holds %d, answered %d", code, got, want[code])
			}
		}
	})
}
