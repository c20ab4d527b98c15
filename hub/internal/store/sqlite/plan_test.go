package sqlite

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/internal/reads"
)

// TestQueryPlans guards the read paths against full table scans: each
// lookup must be answered from an index or the primary key.
func TestQueryPlans(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "plan.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		query string
		args  []any
	}{
		{`SELECT ` + reads.AccountCols + ` FROM accounts WHERE code IN (?, ?)`, []any{"a", "b"}},
		{`SELECT ` + reads.CardCols + ` FROM cards WHERE number IN (?, ?)`, []any{"a", "b"}},
		{`SELECT ` + reads.IdemCols + ` FROM idempotency WHERE (operator, key) IN (VALUES (?, ?), (?, ?))`,
			[]any{"a", "b", "c", "d"}},
		{`SELECT ` + reads.HoldCols + ` FROM holds WHERE status = ? AND expires_at < ? ORDER BY expires_at, id LIMIT ?`,
			[]any{store.HoldPending, 0, 10}},
		{`SELECT ` + reads.AccountCols + ` FROM accounts WHERE card = ? ORDER BY id`, []any{"c"}},
		{`SELECT id FROM transfers WHERE ref = ? AND ref <> 0 AND kind = ? ORDER BY id LIMIT 1`,
			[]any{1, store.TransferReversal}},
		{`SELECT ` + reads.TransferCols + ` FROM transfers WHERE batch = ? ORDER BY id`, []any{1}},
		{`SELECT transfer_id, account_id, amount FROM entries WHERE transfer_id BETWEEN ? AND ? ORDER BY transfer_id, n`,
			[]any{1, 2}},
		{`UPDATE accounts SET debits_posted = v.column2 FROM (VALUES (?, ?), (?, ?)) AS v WHERE accounts.id = v.column1`,
			[]any{1, 2, 3, 4}},
		{`SELECT ` + reads.TapCols + ` FROM taps WHERE (device, seq) IN (VALUES (?, ?), (?, ?))`, []any{"a", 1, "b", 2}},
		{`SELECT ` + reads.TapCols + ` FROM taps WHERE device = ? AND seq > ? ORDER BY seq LIMIT ?`, []any{"a", 0, 10}},
		{`SELECT ` + reads.DeviceCols + ` FROM devices WHERE operator = ? ORDER BY id`, []any{"M"}},
		{`SELECT card, state, updated_at FROM rider_states WHERE card IN (?, ?)`, []any{"a", "b"}},
		{`SELECT ` + reads.DenyCols + ` FROM deny_changes WHERE version > ? ORDER BY version LIMIT ?`, []any{0, 10}},
		{reads.DenyListQuery, []any{10}},
		{`UPDATE devices SET last_seq = max(devices.last_seq, v.column2) FROM (VALUES (?, ?), (?, ?)) AS v
			WHERE devices.id = v.column1`, []any{"a", 1, "b", 2}},
	} {
		rows, err := s.w.QueryContext(ctx, "EXPLAIN QUERY PLAN "+tc.query, tc.args...)
		if err != nil {
			t.Fatalf("%s: %v", tc.query, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		for _, step := range plan {
			// "SCAN <table>" without an index is a full scan; scanning the
			// VALUES list or a covering index is fine.
			if strings.HasPrefix(step, "SCAN ") && !strings.Contains(step, "VALUES") && !strings.Contains(step, "INDEX") {
				t.Errorf("%s\n  full scan in plan %q", tc.query, plan)
			}
		}
	}
}
