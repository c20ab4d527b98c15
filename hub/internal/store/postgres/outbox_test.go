package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/citycard/citycard/hub/internal/store"
	"github.com/citycard/citycard/hub/internal/store/storetest"
)

// TestOutbox: the statements of a batch's outbox run in the batch's own
// transaction. The first batch makes the table, a later one finds it, and
// a batch whose outbox fails is not committed, its rows with it.
func TestOutbox(t *testing.T) {
	testURL(t)
	st := storetest.OpenPostgres(t)
	db, ok := st.(store.SharedDatabase)
	if !ok {
		t.Fatal("the PostgreSQL store does not share its database")
	}
	ctx := t.Context()
	creates := 0
	failInsert := errors.New("insert refused")
	db.SetOutbox(func(_ context.Context, msgs []store.OutboxMessage) ([]store.OutboxTopic, error) {
		if msgs[0].Topic == "refused" {
			return nil, failInsert
		}
		ins := make([]store.Statement, len(msgs))
		for i, m := range msgs {
			ins[i] = store.Statement{Query: `INSERT INTO outbox_test (uuid, topic) VALUES ($1, $2)`, Args: []any{m.UUID, m.Topic}}
		}
		return []store.OutboxTopic{{
			Table: "outbox_test",
			Create: func() ([]store.Statement, error) {
				creates++
				return []store.Statement{{Query: `CREATE TABLE outbox_test (uuid text PRIMARY KEY, topic text NOT NULL)`}}, nil
			},
			Insert: ins,
		}}, nil
	})
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		seq     int64
		msgs    []store.OutboxMessage
		wantErr error // the error, by errors.Is
		errAny  bool  // any error will do
		head    int64
	}{
		{seq: 1, msgs: []store.OutboxMessage{{Topic: "t", UUID: "a"}, {Topic: "t", UUID: "b"}}, head: 1},
		{seq: 2, msgs: []store.OutboxMessage{{Topic: "refused", UUID: "c"}}, wantErr: failInsert, head: 1},
		// A uuid already written fails the insert, and the batch with it.
		{seq: 2, msgs: []store.OutboxMessage{{Topic: "t", UUID: "d"}, {Topic: "t", UUID: "a"}}, errAny: true, head: 1},
		{seq: 2, msgs: []store.OutboxMessage{{Topic: "t", UUID: "e"}}, head: 2},
	} {
		b := &store.Batch{Record: store.BatchRecord{Seq: tc.seq, Hash: []byte{byte(tc.seq)}, At: t0}, Outbox: tc.msgs}
		err := st.CommitBatch(ctx, b)
		switch {
		case tc.errAny && err == nil:
			t.Fatalf("batch %d %v: committed, want an error", tc.seq, tc.msgs)
		case !tc.errAny && !errors.Is(err, tc.wantErr):
			t.Fatalf("batch %d %v: %v, want %v", tc.seq, tc.msgs, err, tc.wantErr)
		}
		h, err := st.Head(ctx)
		if err != nil || h.LastBatch != tc.head {
			t.Fatalf("after batch %d %v: head %d (%v), want %d", tc.seq, tc.msgs, h.LastBatch, err, tc.head)
		}
	}
	var got []string
	rows, err := db.Pool().Query(ctx, `SELECT uuid FROM outbox_test ORDER BY uuid`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			t.Fatal(err)
		}
		got = append(got, u)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b", "e"}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("outbox rows %v, want %v", got, want)
	}
	if creates != 1 {
		t.Fatalf("table made %d times, want once", creates)
	}
}
