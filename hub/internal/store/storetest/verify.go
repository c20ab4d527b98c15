package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/store"
)

// verifyTests are the suite's cases for the reads of verify and the writer
// lock.
var verifyTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"IdempotencyRecordsStream", testIdempotencyRecordsStream},
	{"AllSagasStream", testAllSagasStream},
	{"CheckpointStart", testCheckpointStart},
	{"WriterLock", testWriterLock},
}

// Every record comes back once, ordered by operator and key, with its
// response, across more than one page.
func testIdempotencyRecordsStream(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	var got []store.IdemRecord
	collect := func(r store.IdemRecord) error { got = append(got, r); return nil }
	if err := s.IdempotencyRecords(ctx, collect); err != nil || len(got) != 0 {
		t.Fatalf("empty store: %d records, %v", len(got), err)
	}
	b := seed()
	commit(t, s, b)
	// A second batch takes the stream past one page.
	b2 := &store.Batch{Record: store.BatchRecord{Seq: 2, PrevHash: b.Record.Hash, Hash: []byte("hash-2"), At: t0}}
	for i := range 1100 {
		b2.Idempotency = append(b2.Idempotency, store.IdemRecord{IdemKey: store.IdemKey{Operator: "op-3",
			Key: string(rune('a'+i/676)) + string(rune('a'+i/26%26)) + string(rune('a'+i%26))},
			RequestHash: "h", Status: 201, Response: []byte(`{"id":"1","status":"approved"}`), At: t0})
	}
	commit(t, s, b2)
	if err := s.IdempotencyRecords(ctx, collect); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3+1100 {
		t.Fatalf("%d records, want %d", len(got), 3+1100)
	}
	for i := 1; i < len(got); i++ {
		p, c := got[i-1], got[i]
		if p.Operator > c.Operator || p.Operator == c.Operator && p.Key >= c.Key {
			t.Fatalf("record %d (%s/%s) after (%s/%s)", i, c.Operator, c.Key, p.Operator, p.Key)
		}
	}
	mustEqual(t, "first record", got[0], normIdem(b.Idempotency[0]))
	stop := errors.New("stop")
	n := 0
	if err := s.IdempotencyRecords(ctx, func(store.IdemRecord) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("a callback's error: %v after %d records", err, n)
	}
}

// Every saga comes back once, open or ended.
func testAllSagasStream(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for _, k := range []string{"b", "a", "c"} {
		if _, _, err := s.CreateSaga(ctx, store.Saga{Operator: "plugin:pos", Key: k, Kind: "split_payment",
			State: store.SagaRunning, Data: []byte(`{"hold":13}`), CreatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	g, err := s.GetSaga(ctx, "plugin:pos", "c")
	if err != nil {
		t.Fatal(err)
	}
	g.State = store.SagaDone
	g.UpdatedAt = t0.Add(time.Second)
	if _, err := s.UpdateSaga(ctx, g); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := s.AllSagas(ctx, func(g store.Saga) error {
		keys = append(keys, g.Key+":"+g.State)
		jsonEqual(t, g.Data, []byte(`{"hold":13}`))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "sagas", keys, []string{"a:running", "b:running", "c:done"})
}

// The first record of checkpointing stays: a later one does not replace it.
func testCheckpointStart(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if _, err := s.CheckpointStarted(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no checkpoint yet: %v", err)
	}
	first := store.CheckpointStart{KeyName: "citycard-ledger", Verifier: "citycard-ledger+1234+AAAA", Log: "/x/c",
		Batch: 7, At: norm(t0)}
	got, err := s.StartCheckpoints(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "started", got, first)
	second := first
	second.KeyName, second.Batch = "other", 9
	if got, err = s.StartCheckpoints(ctx, second); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "started again", got, first)
	if got, err = s.CheckpointStarted(ctx); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "read back", got, first)
}

// The writer lock is taken once: a second taker fails at once with
// ErrLocked until the first releases it.
func testWriterLock(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	release, err := s.LockWriter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := s.LockWriter(ctx); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second lock: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the second lock waited %s", d)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	again, err := s.LockWriter(ctx)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	if err := again(); err != nil {
		t.Fatal(err)
	}
}

// Tampering, for the tests that prove verify finds it. Each helper does
// what an owner of the database could do behind the hub's back, through the
// driver's raw SQL access, on both drivers alike.

type rawExec interface {
	ExecRaw(ctx context.Context, query string) error
}

func raw(t testing.TB, s store.Store, queries ...string) {
	t.Helper()
	r, ok := s.(rawExec)
	if !ok {
		t.Fatalf("driver %s has no raw access for tests", s.Driver())
	}
	for _, q := range queries {
		if err := r.ExecRaw(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// notPending is the SQL test of a posted (not pending) transfer.
func notPending(s store.Store) string {
	if s.Driver() == "postgres" {
		return "NOT t.pending"
	}
	return "t.pending = 0"
}

// bytesSQL is b as a SQL literal of the driver.
func bytesSQL(s store.Store, b []byte) string {
	if b == nil {
		return "NULL"
	}
	if s.Driver() == "postgres" {
		return fmt.Sprintf(`'\x%x'::bytea`, b)
	}
	return fmt.Sprintf("X'%x'", b)
}

// DeleteBatchesFrom deletes batch seq and every batch after it with their
// transfers and entries, then rolls every account's posted totals back to
// what the remaining entries give, so that the shortened ledger is
// consistent in itself. Idempotency records and holds are left alone.
func DeleteBatchesFrom(t testing.TB, s store.Store, seq int64) {
	t.Helper()
	raw(t, s,
		fmt.Sprintf(`DELETE FROM entries WHERE transfer_id IN (SELECT id FROM transfers WHERE batch >= %d)`, seq),
		fmt.Sprintf(`DELETE FROM transfers WHERE batch >= %d`, seq),
		fmt.Sprintf(`DELETE FROM batches WHERE seq >= %d`, seq))
	RecomputeTotals(t, s)
}

// RecomputeTotals sets every account's posted totals to what its entries
// give.
func RecomputeTotals(t testing.TB, s store.Store) {
	t.Helper()
	sum := func(sign string) string {
		return fmt.Sprintf(`(SELECT coalesce(sum(%se.amount), 0) FROM entries e JOIN transfers t ON t.id = e.transfer_id
			WHERE e.account_id = accounts.id AND %s AND e.amount %s 0)`, map[string]string{">": "", "<": "-"}[sign],
			notPending(s), sign)
	}
	raw(t, s, `UPDATE accounts SET debits_posted = `+sum(">")+`, credits_posted = `+sum("<"))
}

// SetTransferAmount rewrites a posted two-entry transfer to move amount
// instead (debit first entry, credit second), as an edit of its rows.
func SetTransferAmount(t testing.TB, s store.Store, id, amount int64) {
	t.Helper()
	raw(t, s,
		fmt.Sprintf(`UPDATE entries SET amount = CASE WHEN amount > 0 THEN %d ELSE %d END WHERE transfer_id = %d`, amount, -amount, id),
		fmt.Sprintf(`UPDATE transfers SET amount = %d WHERE id = %d`, amount, id))
}

// SetBatchHash overwrites a batch's chain hashes, as a forger who
// recomputed the chain after an edit would.
func SetBatchHash(t testing.TB, s store.Store, seq int64, prev, hash []byte) {
	t.Helper()
	raw(t, s, fmt.Sprintf(`UPDATE batches SET prev_hash = %s, hash = %s WHERE seq = %d`,
		bytesSQL(s, prev), bytesSQL(s, hash), seq))
}
