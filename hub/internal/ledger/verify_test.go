package ledger_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/citycard/citycard/hub/internal/checkpoint"
	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/sqlite"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

// books is a ledger under test with its checkpoint log.
type books struct {
	t   *testing.T
	st  store.Store
	log string
	w   *checkpoint.Writer
}

func newBooks(t *testing.T, st store.Store) *books {
	log := filepath.Join(t.TempDir(), "citycard.db.checkpoints")
	return &books{t: t, st: st, log: log}
}

// post commits n batches of one top-up each, every one answering its
// idempotency key with its receipt, and writes a checkpoint after every
// `every` batches (0: none).
func (b *books) post(n, every int) {
	b.t.Helper()
	ctx := context.Background()
	if every > 0 && b.w == nil {
		w, err := checkpoint.NewWriter(b.st, checkpoint.Config{Log: b.log,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.t.Fatal(err)
		}
		b.w = w
		b.t.Cleanup(func() { w.Close(context.Background()) })
	}
	eng, err := ledger.Open(ctx, b.st, ledger.Config{})
	if err != nil {
		b.t.Fatal(err)
	}
	defer eng.Close()
	h, err := b.st.Head(ctx)
	if err != nil {
		b.t.Fatal(err)
	}
	for i := range n {
		key := fmt.Sprintf("t-%d", h.LastBatch+int64(i)+1)
		_, err := eng.Submit(ctx, move{"cash", "purse:3100990000000013:cash", 100, false}, ledger.SubmitOptions{
			Idempotency: &store.IdemKey{Operator: "teller-1", Key: key}, RequestHash: key,
			Encode: func(res any) (int, []byte, error) {
				return 201, fmt.Appendf(nil, `{"receipt":{"transfer":"%d","kind":"topup"}}`, res.(int64)), nil
			}})
		if err != nil {
			b.t.Fatal(err)
		}
		if every > 0 && (i+1)%every == 0 {
			if _, err := b.w.Write(ctx); err != nil {
				b.t.Fatal(err)
			}
		}
	}
}

// verify runs verify against the checkpoint log, read with the log's key.
func (b *books) verify() ledger.Report {
	b.t.Helper()
	_, vpath := checkpoint.KeyPaths(b.log)
	v, err := checkpoint.LoadVerifier(vpath)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.verifyWith(v)
}

func (b *books) verifyWith(v note.Verifier) ledger.Report {
	b.t.Helper()
	entries, lerr := checkpoint.ReadFile(b.log, v, checkpoint.DefaultOrigin)
	r, err := ledger.VerifyWith(context.Background(), b.st, ledger.Options{
		Checkpoints: &ledger.Checkpoints{Source: b.log, Entries: entries, Err: lerr}})
	if err != nil {
		b.t.Fatal(err)
	}
	return r
}

// only returns the problems of kind, failing if there are others.
func only(t *testing.T, r ledger.Report, kinds ...string) map[string][]ledger.Problem {
	t.Helper()
	got := map[string][]ledger.Problem{}
	for _, p := range r.Problems {
		got[p.Kind] = append(got[p.Kind], p)
	}
	for k := range got {
		found := false
		for _, want := range kinds {
			found = found || k == want
		}
		if !found {
			t.Errorf("unexpected %s problems: %v", k, got[k])
		}
	}
	for _, k := range kinds {
		if len(got[k]) == 0 {
			t.Errorf("no %s problem; got %v", k, r.Problems)
		}
	}
	return got
}

// A clean ledger with checkpoints verifies, anchored, against every one.
func TestVerifyCheckpointsClean(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		b := newBooks(t, st)
		b.post(12, 3)
		r := b.verify()
		if !r.Anchored() || r.Checkpoints != 4 || r.LastMatched == nil || r.LastMatched.Batch != 12 {
			t.Fatalf("clean ledger: anchored %v, %d checkpoints, last matched %+v, problems %v, warnings %v",
				r.Anchored(), r.Checkpoints, r.LastMatched, r.Problems, r.Warnings)
		}
		if r.Idempotency != 12 {
			t.Fatalf("%d idempotency records checked, want 12", r.Idempotency)
		}
	})
}

// The reproduction: deleting the last 200 batches with the account
// totals rolled back to match passes every check inside the database, and
// is found by the checkpoints, naming the first batch missing and the last
// checkpoint that matched. The idempotency records of the deleted
// transfers are reported too.
func TestVerifyDeletedTail(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		b := newBooks(t, st)
		b.post(230, 10)
		storetest.DeleteBatchesFrom(t, st, 31)
		plain, err := ledger.Verify(context.Background(), st)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range plain.Problems {
			if p.Kind != ledger.ProblemIdempotency {
				t.Errorf("the shortened ledger is not consistent in itself: %v", p)
			}
		}
		r := b.verify()
		got := only(t, r, ledger.ProblemStoreBehind, ledger.ProblemIdempotency)
		if p := got[ledger.ProblemStoreBehind]; len(p) != 1 || p[0].Batch != 31 || p[0].Record != 4 {
			t.Fatalf("store behind: %+v", p)
		}
		if r.LastMatched == nil || r.LastMatched.Batch != 30 {
			t.Fatalf("last matched %+v, want batch 30", r.LastMatched)
		}
		if n := len(got[ledger.ProblemIdempotency]); n != 200 {
			t.Fatalf("%d idempotency problems, want 200", n)
		}
		if p := got[ledger.ProblemIdempotency][0]; p.Operator != "teller-1" || !strings.HasPrefix(p.Key, "t-") || p.Transfer < 31 {
			t.Fatalf("idempotency problem names %+v", p)
		}
	})
}

// A batch's transfer edited, the totals and the hash chain recomputed after
// it: nothing inside the database shows it, the checkpoint of that batch
// does.
func TestVerifyRewrittenBatch(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		b := newBooks(t, st)
		b.post(20, 1)
		var victim int64
		var prev []byte
		err := st.Batches(ctx, func(rec store.BatchRecord, ts []store.Transfer) error {
			if rec.Seq == 12 {
				victim = ts[0].ID
			}
			return nil
		})
		if err != nil || victim == 0 {
			t.Fatalf("batch 12's transfer: %d %v", victim, err)
		}
		storetest.SetTransferAmount(t, st, victim, 1)
		storetest.RecomputeTotals(t, st)
		err = st.Batches(ctx, func(rec store.BatchRecord, ts []store.Transfer) error {
			if rec.Seq >= 12 {
				h := ledger.ChainHash(prev, rec.Seq, ts)
				storetest.SetBatchHash(t, st, rec.Seq, prev, h)
				rec.Hash = h
			}
			prev = rec.Hash
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if plain, err := ledger.Verify(ctx, st); err != nil || !plain.OK() {
			t.Fatalf("the forgery should be invisible inside the database: %v %v", plain.Problems, err)
		}
		r := b.verify()
		got := only(t, r, ledger.ProblemCheckpointMismatch)
		if p := got[ledger.ProblemCheckpointMismatch][0]; p.Batch != 12 || p.Record != 12 {
			t.Fatalf("mismatch names %+v, want batch 12, record 12", p)
		}
		if r.LastMatched == nil || r.LastMatched.Batch != 11 {
			t.Fatalf("last matched %+v, want batch 11", r.LastMatched)
		}
	})
}

// A SQLite store restored from an older copy of its file is behind its
// checkpoints; written on after the restore, its batches differ from them.
func TestVerifyRolledBackSQLite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "citycard.db")
	open := func() *sqlite.Store {
		st, err := sqlite.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	st := open()
	b := newBooks(t, st)
	b.post(10, 1)
	b.w.Close(ctx)
	b.w = nil
	st.Close()
	backup, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	st = open()
	b.st = st
	b.post(10, 1)
	b.w.Close(ctx)
	b.w = nil
	st.Close()
	os.Remove(path + "-wal")
	os.Remove(path + "-shm")
	if err := os.WriteFile(path, backup, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err = sqlite.OpenExisting(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	b.st = st
	r := b.verify()
	got := only(t, r, ledger.ProblemStoreBehind)
	if p := got[ledger.ProblemStoreBehind][0]; p.Batch != 11 || r.LastMatched == nil || r.LastMatched.Batch != 10 {
		t.Fatalf("rolled back: %+v, last matched %+v", p, r.LastMatched)
	}
	st.Close()

	// The hub started again on the restored copy and wrote on.
	st = open()
	defer st.Close()
	b.st = st
	b.post(3, 0)
	r = b.verify()
	got = only(t, r, ledger.ProblemCheckpointMismatch)
	if p := got[ledger.ProblemCheckpointMismatch][0]; p.Batch != 11 || r.LastMatched.Batch != 10 {
		t.Fatalf("rolled back and written on: %+v, last matched %+v", p, r.LastMatched)
	}
}

// What is wrong with the log itself is a problem, named, and the good
// checkpoints before a bad record are still compared.
func TestVerifyCheckpointLogFaults(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		b := newBooks(t, st)
		b.post(4, 1)
		data, err := os.ReadFile(b.log)
		if err != nil {
			t.Fatal(err)
		}

		// Truncated: the last note cut in its signature.
		if err := os.WriteFile(b.log, data[:len(data)-20], 0o644); err != nil {
			t.Fatal(err)
		}
		r := b.verify()
		got := only(t, r, ledger.ProblemCheckpointLog)
		if p := got[ledger.ProblemCheckpointLog][0]; p.Record != 4 || !strings.Contains(p.Message, "truncated") {
			t.Fatalf("truncated log: %+v", p)
		}
		if r.LastMatched == nil || r.LastMatched.Batch != 3 {
			t.Fatalf("the records before the cut are compared: %+v", r.LastMatched)
		}

		// Signed by another key.
		os.WriteFile(b.log, data, 0o644)
		_, vkey, err := checkpointKey(t, "citycard-ledger")
		if err != nil {
			t.Fatal(err)
		}
		r = b.verifyWith(vkey)
		got = only(t, r, ledger.ProblemCheckpointLog)
		if p := got[ledger.ProblemCheckpointLog][0]; p.Record != 1 || !strings.Contains(p.Message, "foreign") {
			t.Fatalf("foreign key: %+v", p)
		}

		// Missing, from a store that records checkpoints began.
		os.Remove(b.log)
		r = b.verify()
		got = only(t, r, ledger.ProblemCheckpointLog)
		if p := got[ledger.ProblemCheckpointLog][0]; !strings.Contains(p.Message, "is missing") {
			t.Fatalf("missing log: %+v", p)
		}
	})
}

// A store that never had a checkpoint log verifies with a warning, not as
// anchored.
func TestVerifyNeverCheckpointed(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		b := newBooks(t, st)
		b.post(2, 0)
		skey, vpath := checkpoint.KeyPaths(b.log)
		if _, _, err := checkpoint.LoadOrCreateSigner(skey, vpath, checkpoint.DefaultKeyName); err != nil {
			t.Fatal(err)
		}
		r := b.verify()
		if !r.OK() || r.Anchored() || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "citycard serve") {
			t.Fatalf("never checkpointed: ok %v anchored %v warnings %v problems %v", r.OK(), r.Anchored(), r.Warnings, r.Problems)
		}
	})
}

// Idempotency records and sagas that name transfers which do not exist are
// reported with the key at fault; answers that name no transfer are
// skipped.
func TestVerifyIdempotencyAndSagas(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		b := newBooks(t, st)
		b.post(3, 0)
		eng, err := ledger.Open(ctx, st, ledger.Config{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := eng.Submit(ctx, carded{"3100990000000013"}, ledger.SubmitOptions{})
		eng.Close()
		if err != nil {
			t.Fatal(err)
		}
		cardedID := res.Result.(int64)
		h, err := st.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rec := func(key string, status int, body string) store.IdemRecord {
			return store.IdemRecord{IdemKey: store.IdemKey{Operator: "teller-1", Key: key}, RequestHash: key,
				Status: status, Response: []byte(body), At: zeroTime}
		}
		seq := h.LastBatch + 1
		batch := &store.Batch{Record: store.BatchRecord{Seq: seq, PrevHash: h.LastHash,
			Hash: ledger.ChainHash(h.LastHash, seq, nil), At: zeroTime},
			Idempotency: []store.IdemRecord{
				rec("ghost", 201, `{"id":"999","status":"approved","card":"3100990000000013"}`),
				rec("wrong-card", 201, fmt.Sprintf(`{"receipt":{"transfer":"%d","card":"3100990000000021"}}`, cardedID)),
				rec("right-card", 201, fmt.Sprintf(`{"receipt":{"transfer":"%d","card":"3100990000000013"}}`, cardedID)),
				rec("declined", 201, `{"status":"declined","reason":"insufficient_funds"}`),
				rec("merchant", 201, `{"id":"M001","name":"Corner shop"}`),
				rec("refused", 422, `{"transfer":"998"}`),
			},
			SagaStates: []store.SagaState{{Operator: "plugin:pos", Key: "split-1", Kind: "split_payment", Create: true,
				State: store.SagaRunning, Data: []byte(`{"hold":997,"step":"bank"}`), At: zeroTime}},
		}
		if err := st.CommitBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
		r, err := ledger.Verify(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		got := only(t, r, ledger.ProblemIdempotency, ledger.ProblemSaga)
		idem := got[ledger.ProblemIdempotency]
		if len(idem) != 2 || idem[0].Key != "ghost" || idem[0].Transfer != 999 ||
			idem[1].Key != "wrong-card" || idem[1].Transfer != cardedID || idem[1].Batch != 4 {
			t.Fatalf("idempotency problems: %+v", idem)
		}
		if s := got[ledger.ProblemSaga]; len(s) != 1 || s[0].Key != "split-1" || s[0].Transfer != 997 {
			t.Fatalf("saga problems: %+v", s)
		}
	})
}

// checkpointKey makes a fresh key pair with name.
func checkpointKey(t *testing.T, name string) (string, note.Verifier, error) {
	dir := t.TempDir()
	s, v := filepath.Join(dir, "k.key"), filepath.Join(dir, "k.pub")
	if _, _, err := checkpoint.LoadOrCreateSigner(s, v, name); err != nil {
		return "", nil, err
	}
	ver, err := checkpoint.LoadVerifier(v)
	return v, ver, err
}

// carded posts a transfer on a card.
type carded struct{ card string }

func (c carded) Prefetch(k *ledger.Keys) { k.Account("cash", "purse:"+c.card+":cash") }

func (c carded) Apply(tx *ledger.Tx) (any, error) {
	from := tx.EnsureAccount(store.Account{Code: "cash", Kind: store.KindCash, Currency: "CNY"})
	to := tx.EnsureAccount(store.Account{Code: "purse:" + c.card + ":cash", Kind: store.KindPurse, Currency: "CNY",
		Card: c.card, Purse: "cash", Constrained: true})
	return tx.Post(store.Transfer{Kind: store.TransferTopUp, Currency: "CNY", Card: c.card, Amount: 50,
		Entries: []store.Entry{{Account: from.ID, Amount: 50}, {Account: to.ID, Amount: -50}}}, zeroTime)
}

// An edited audit row is reported by verify with the row at fault; the
// last rows deleted are reported too.
func TestVerifyAuditRows(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		tamper, ok := st.(interface {
			TamperAuditOutcome(ctx context.Context, id int64, outcome string) error
			TamperAuditDelete(ctx context.Context, id int64) error
		})
		if !ok {
			t.Skipf("the %s driver has no audit tampering for tests", st.Driver())
		}
		eng, err := ledger.Open(ctx, st, ledger.Config{})
		if err != nil {
			t.Fatal(err)
		}
		for range 4 {
			if _, err := eng.Submit(ctx, carded{"3100990000000013"}, ledger.SubmitOptions{
				Audit: &store.AuditEntry{Operator: "teller-1", Role: "teller", Action: "cards.topup",
					Target: "3100990000000013"}}); err != nil {
				t.Fatal(err)
			}
		}
		eng.Close()
		b := newBooks(t, st)
		b.post(0, 1)
		if _, err := b.w.Write(ctx); err != nil {
			t.Fatal(err)
		}
		if r := b.verify(); !r.Anchored() || r.AuditRows != 4 {
			t.Fatalf("before: %d audit rows, %v", r.AuditRows, r.Problems)
		}
		if err := tamper.TamperAuditOutcome(ctx, 2, "declined:insufficient_funds"); err != nil {
			t.Fatal(err)
		}
		r := b.verify()
		if p := only(t, r, ledger.ProblemAudit)[ledger.ProblemAudit]; p[0].Audit != 2 {
			t.Fatalf("edited row: %+v", p)
		}
		if err := tamper.TamperAuditDelete(ctx, 4); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, p := range b.verify().Problems {
			found = found || (p.Kind == ledger.ProblemAudit || p.Kind == ledger.ProblemAuditBehind) && p.Audit == 4
		}
		if !found {
			t.Fatalf("the last audit row deleted is not reported: %v", b.verify().Problems)
		}
	})
}
