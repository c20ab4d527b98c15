package ledger_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/ledger"
	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

// auditLog appends n audit rows: all but two through AppendAudit, two
// through a ledger batch, as the engine writes them.
func auditLog(t *testing.T, st store.Store, n int) {
	t.Helper()
	ctx := t.Context()
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	for i := range n - 2 {
		if err := st.AppendAudit(ctx, store.AuditEntry{At: at.Add(time.Duration(i) * time.Second), Operator: "op-1",
			Role: "admin", Action: "operators.add", Target: fmt.Sprint("op-", i), Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	b := &store.Batch{Record: store.BatchRecord{Seq: 1, Hash: []byte("h"), At: at}, Audit: []store.AuditEntry{
		{At: at, Operator: "op-2", Role: "teller", Action: "cards.topup", Target: "3100010000000013", Outcome: "ok"},
		{At: at, Operator: "op-2", Role: "teller", Action: "payments.create", Target: "3100010000000013", Outcome: "declined:insufficient_funds"},
	}}
	if err := st.CommitBatch(ctx, b); err != nil {
		t.Fatal(err)
	}
}

func tamperer(t *testing.T, st store.Store) storetest.AuditTamperer {
	tam, ok := st.(storetest.AuditTamperer)
	if !ok {
		t.Fatalf("%s store cannot tamper with its audit log", st.Driver())
	}
	return tam
}

// verifyAudit runs VerifyAudit and checks the problems it reports: the ids
// of the rows at fault and a word each detail must hold.
func verifyAudit(t *testing.T, st store.Store, want ...ledger.AuditProblem) ledger.AuditReport {
	t.Helper()
	r, err := ledger.VerifyAudit(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) != len(want) {
		t.Fatalf("problems %+v, want %d like %+v", r.Problems, len(want), want)
	}
	for i, p := range r.Problems {
		if p.ID != want[i].ID || !strings.Contains(p.Detail, want[i].Detail) {
			t.Errorf("problem %d: %+v, want row %d and %q", i, p, want[i].ID, want[i].Detail)
		}
	}
	return r
}

func TestVerifyAuditClean(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		r := verifyAudit(t, st)
		if r.Rows != 0 || r.LastID != 0 || r.LastHash != nil {
			t.Errorf("empty log: %+v", r)
		}
		auditLog(t, st, 7)
		r = verifyAudit(t, st)
		h, err := st.Head(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !r.OK() || r.Rows != 7 || r.Unchained != 0 || r.LastID != 7 || !bytes.Equal(r.LastHash, h.AuditHash) || len(r.LastHash) != 32 {
			t.Errorf("report %+v, head %+v", r, h)
		}
	})
}

// The reproductions: on PostgreSQL session_replication_role =
// replica, on SQLite DROP TRIGGER, then a row deleted or edited.
func TestVerifyAuditFindsRewrites(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(ctx context.Context, tam storetest.AuditTamperer) error
		want   []ledger.AuditProblem
	}{
		{"delete a middle row", func(ctx context.Context, tam storetest.AuditTamperer) error {
			return tam.TamperAuditDelete(ctx, 3)
		}, []ledger.AuditProblem{{ID: 3, Detail: "missing"}}},
		{"delete the first row", func(ctx context.Context, tam storetest.AuditTamperer) error {
			return tam.TamperAuditDelete(ctx, 1)
		}, []ledger.AuditProblem{{ID: 1, Detail: "missing"}}},
		{"delete the last row", func(ctx context.Context, tam storetest.AuditTamperer) error {
			return tam.TamperAuditDelete(ctx, 7)
		}, []ledger.AuditProblem{{ID: 7, Detail: "audit head records row 7"}}},
		{"edit an outcome", func(ctx context.Context, tam storetest.AuditTamperer) error {
			return tam.TamperAuditOutcome(ctx, 4, "error:forbidden")
		}, []ledger.AuditProblem{{ID: 4, Detail: "edited"}}},
		{"edit a batch's row", func(ctx context.Context, tam storetest.AuditTamperer) error {
			return tam.TamperAuditOutcome(ctx, 7, "ok")
		}, []ledger.AuditProblem{{ID: 7, Detail: "edited"}}},
		{"delete one row and edit a later one", func(ctx context.Context, tam storetest.AuditTamperer) error {
			if err := tam.TamperAuditDelete(ctx, 2); err != nil {
				return err
			}
			return tam.TamperAuditOutcome(ctx, 5, "forged")
		}, []ledger.AuditProblem{{ID: 2, Detail: "row 3 follows row 1"}, {ID: 5, Detail: "edited"}}},
		{"an unchained row after the chain", func(ctx context.Context, tam storetest.AuditTamperer) error {
			return tam.InsertUnchainedAudit(ctx, store.AuditEntry{At: time.Now(), Action: "forged", Outcome: "ok"})
		}, []ledger.AuditProblem{{ID: 8, Detail: "no hash"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
				auditLog(t, st, 7)
				verifyAudit(t, st)
				if err := tc.tamper(t.Context(), tamperer(t, st)); err != nil {
					t.Fatal(err)
				}
				verifyAudit(t, st, tc.want...)
			})
		})
	}
}

// Rows written before the chain began are counted as a note, not a
// problem, and the chain after them verifies.
func TestVerifyAuditUnchainedRows(t *testing.T) {
	storetest.ForEachDriver(t, func(t *testing.T, st store.Store) {
		tam := tamperer(t, st)
		for range 3 {
			if err := tam.InsertUnchainedAudit(t.Context(), store.AuditEntry{At: time.Now(), Action: "old", Outcome: "ok"}); err != nil {
				t.Fatal(err)
			}
		}
		r := verifyAudit(t, st)
		if r.Rows != 3 || r.Unchained != 3 || r.LastID != 3 || r.LastHash != nil {
			t.Errorf("only unchained rows: %+v", r)
		}
		auditLog(t, st, 4)
		r = verifyAudit(t, st)
		if r.Rows != 7 || r.Unchained != 3 || r.LastID != 7 {
			t.Errorf("report %+v", r)
		}
		if err := tam.TamperAuditDelete(t.Context(), 4); err != nil { // the first chained row
			t.Fatal(err)
		}
		verifyAudit(t, st, ledger.AuditProblem{ID: 4, Detail: "missing"})
	})
}
