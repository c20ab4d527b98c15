package storetest

import (
	"errors"
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
