package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/store"
)

// AuditTamperer is implemented by the drivers so tests can rewrite the audit
// log past its append-only triggers, as whoever owns the database can, and
// prove that the chain shows it. The application never calls it.
type AuditTamperer interface {
	// TamperAuditDelete deletes audit row id.
	TamperAuditDelete(ctx context.Context, id int64) error
	// TamperAuditOutcome sets audit row id's outcome.
	TamperAuditOutcome(ctx context.Context, id int64, outcome string) error
	// InsertUnchainedAudit appends e with no hash, as the rows written
	// before the chain began look.
	InsertUnchainedAudit(ctx context.Context, e store.AuditEntry) error
}

// auditTests are the suite's cases for the audit log's hash chain.
var auditTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"AuditChain", testAuditChain},
	{"AuditChainConcurrent", testAuditChainConcurrent},
	{"AuditChainFailedBatch", testAuditChainFailedBatch},
	{"AuditChainAfterUnchained", testAuditChainAfterUnchained},
	{"AuditTamperShows", testAuditTamperShows},
}

// checkChain asserts that es is a linear chain from after (whose hash is
// prev) and that the head ends where es does.
func checkChain(t *testing.T, s store.Store, es []store.AuditEntry, after int64, prev []byte) {
	t.Helper()
	for i := range es {
		e := &es[i]
		if e.ID != after+int64(i)+1 {
			t.Fatalf("audit row %d has id %d, want %d: ids must follow without gaps", i, e.ID, after+int64(i)+1)
		}
		if !bytes.Equal(e.PrevHash, prev) {
			t.Fatalf("audit row %d: prev hash %x, want %x", e.ID, e.PrevHash, prev)
		}
		if h := store.AuditHash(e.PrevHash, e); !bytes.Equal(h, e.Hash) {
			t.Fatalf("audit row %d: hash %x, recomputed %x", e.ID, e.Hash, h)
		}
		prev = e.Hash
	}
	h, err := s.Head(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if h.LastAudit != after+int64(len(es)) || !bytes.Equal(h.AuditHash, prev) {
		t.Fatalf("head: last audit %d hash %x, want %d %x", h.LastAudit, h.AuditHash, after+int64(len(es)), prev)
	}
}

func listAudit(t *testing.T, s store.Store) []store.AuditEntry {
	t.Helper()
	es, err := s.ListAudit(ctxT(t), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// Rows of AppendAudit and of a batch join one chain, hashed over every
// field with the documented encoding.
func testAuditChain(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	h, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h.LastAudit != 0 || h.AuditHash != nil {
		t.Fatalf("empty store head: last audit %d hash %x, want 0 and nil", h.LastAudit, h.AuditHash)
	}
	for i := range 3 {
		if err := s.AppendAudit(ctx, store.AuditEntry{At: t0.Add(time.Duration(i) * time.Second), Operator: "op-1",
			Role: "admin", Action: "operators.add", Target: fmt.Sprint("op-", i), Remote: "10.0.0.1:5000",
			Outcome: "ok", Detail: "tab\tnew line\n 审计"}); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, s, seed()) // two rows through the batch
	if err := s.AppendAudit(ctx, store.AuditEntry{At: t0, Action: "last", Outcome: "error:internal"}); err != nil {
		t.Fatal(err)
	}
	es := listAudit(t, s)
	if len(es) != 6 {
		t.Fatalf("%d audit rows, want 6", len(es))
	}
	checkChain(t, s, es, 0, nil)
	if es[0].PrevHash != nil {
		t.Errorf("first row's prev hash %x, want nil", es[0].PrevHash)
	}

	// The encoding is fixed: a hash computed by hand from the documented
	// layout matches the store's.
	e := es[1]
	var b bytes.Buffer
	b.WriteString("citycard audit v1\n")
	put := func(v uint64) {
		for i := 7; i >= 0; i-- {
			b.WriteByte(byte(v >> (8 * i)))
		}
	}
	put(uint64(len(e.PrevHash)))
	b.Write(e.PrevHash)
	put(uint64(e.ID))
	put(uint64(e.At.UnixMicro()))
	for _, f := range []string{e.Operator, e.Role, e.Action, e.Target, e.Remote, e.Outcome, e.Detail} {
		put(uint64(len(f)))
		b.WriteString(f)
	}
	if want := sha256Sum(b.Bytes()); !bytes.Equal(e.Hash, want) {
		t.Errorf("row %d hash %x, want %x by the documented encoding", e.ID, e.Hash, want)
	}
	// Each field counts, and field boundaries cannot be shifted.
	for name, change := range map[string]func(*store.AuditEntry){
		"id":       func(e *store.AuditEntry) { e.ID++ },
		"time":     func(e *store.AuditEntry) { e.At = e.At.Add(time.Microsecond) },
		"operator": func(e *store.AuditEntry) { e.Operator += "x" },
		"role":     func(e *store.AuditEntry) { e.Role = "auditor" },
		"action":   func(e *store.AuditEntry) { e.Action = "x" },
		"target":   func(e *store.AuditEntry) { e.Target += "x" },
		"remote":   func(e *store.AuditEntry) { e.Remote = "" },
		"outcome":  func(e *store.AuditEntry) { e.Outcome = "ok " },
		"detail":   func(e *store.AuditEntry) { e.Detail = "" },
		"shift":    func(e *store.AuditEntry) { e.Operator, e.Role = e.Operator+e.Role[:1], e.Role[1:] },
		"prev":     func(e *store.AuditEntry) { e.PrevHash = append([]byte{}, e.Hash...) },
	} {
		c := e
		change(&c)
		if bytes.Equal(store.AuditHash(c.PrevHash, &c), e.Hash) {
			t.Errorf("changing the %s leaves the hash as it was", name)
		}
	}
}

// Appends racing from many goroutines, and batches among them, still make
// one linear chain with no gap.
func testAuditChainConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const workers, each = 8, 15
	var wg sync.WaitGroup
	errs := make(chan error, workers+1)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := s.AppendAudit(ctx, store.AuditEntry{At: t0, Operator: fmt.Sprint("op-", w),
					Action: "x", Target: fmt.Sprint(i), Outcome: "ok"}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		b := seed()
		if err := s.CommitBatch(ctx, b); err != nil {
			errs <- err
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	es := listAudit(t, s)
	if len(es) != workers*each+2 {
		t.Fatalf("%d audit rows, want %d", len(es), workers*each+2)
	}
	checkChain(t, s, es, 0, nil)
}

// A batch that fails takes its audit rows with it and leaves neither a gap
// in the ids nor a moved head.
func testAuditChainFailedBatch(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if err := s.AppendAudit(ctx, store.AuditEntry{At: t0, Action: "first", Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	commit(t, s, seed())
	bad := seed() // batch 1 again: refused
	if err := s.CommitBatch(ctx, bad); err == nil {
		t.Fatal("committing batch 1 twice succeeded")
	}
	if err := s.AppendAudit(ctx, store.AuditEntry{At: t0, Action: "after", Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	es := listAudit(t, s)
	if len(es) != 4 {
		t.Fatalf("%d audit rows, want 4", len(es))
	}
	checkChain(t, s, es, 0, nil)
}

// Rows written before the chain began stay as they are; the chain starts
// after them with no previous hash.
func testAuditChainAfterUnchained(t *testing.T, s store.Store) {
	tam := tamperer(t, s)
	ctx := ctxT(t)
	for i := range 2 {
		if err := tam.InsertUnchainedAudit(ctx, store.AuditEntry{At: t0, Action: fmt.Sprint("old-", i), Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	if h, err := s.Head(ctx); err != nil || h.LastAudit != 2 || h.AuditHash != nil {
		t.Fatalf("head after unchained rows: %+v, %v; want last audit 2, no hash", h, err)
	}
	for range 2 {
		if err := s.AppendAudit(ctx, store.AuditEntry{At: t0, Action: "new", Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	es := listAudit(t, s)
	if len(es) != 4 || es[0].Hash != nil || es[1].Hash != nil || es[0].PrevHash != nil {
		t.Fatalf("audit rows %+v, want two without hashes then two chained", es)
	}
	checkChain(t, s, es[2:], 2, nil)
}

// The tamper helpers really go around the triggers: a deleted row is gone
// and leaves the next row's prev hash dangling, an edited row no longer
// matches its hash, and the head still names the old last row.
func testAuditTamperShows(t *testing.T, s store.Store) {
	tam := tamperer(t, s)
	ctx := ctxT(t)
	for i := range 5 {
		if err := s.AppendAudit(ctx, store.AuditEntry{At: t0, Action: fmt.Sprint("a", i), Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	before := listAudit(t, s)
	if err := tam.TamperAuditDelete(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := tam.TamperAuditOutcome(ctx, 4, "forged"); err != nil {
		t.Fatal(err)
	}
	after := listAudit(t, s)
	if len(after) != 4 || after[2].ID != 4 || after[2].Outcome != "forged" {
		t.Fatalf("after tampering: %+v", after)
	}
	if !bytes.Equal(after[2].PrevHash, before[2].Hash) || bytes.Equal(store.AuditHash(after[2].PrevHash, &after[2]), after[2].Hash) {
		t.Error("row 4 should still point at deleted row 3 and no longer match its own hash")
	}
	// The triggers are back: an ordinary delete is refused again.
	if raw, ok := s.(RawExecer); ok {
		if err := raw.ExecRaw(ctx, `DELETE FROM audit_log WHERE id = 1`); err == nil {
			t.Error("DELETE after tampering succeeded, want the append-only refusal")
		}
	}
	if h, err := s.Head(ctx); err != nil || h.LastAudit != 5 || !bytes.Equal(h.AuditHash, before[4].Hash) {
		t.Errorf("head after tampering: %+v, %v; want row 5 and its hash", h, err)
	}
	if err := tam.TamperAuditDelete(ctx, 99); err == nil {
		t.Error("deleting a row that does not exist succeeded")
	}
}

func tamperer(t *testing.T, s store.Store) AuditTamperer {
	t.Helper()
	tam, ok := s.(AuditTamperer)
	if !ok {
		t.Skipf("%s store does not implement AuditTamperer", s.Driver())
	}
	return tam
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
