package bus

import (
	"context"
	"errors"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/citycard/citycard/hub/internal/store"
)

// TestOutbox writes OutboxStatements inside the caller's transactions, as
// the store does in a ledger batch's: the rolled-back message is never
// delivered, the committed one is, with the correlation ID of the context
// its statements were made in.
func TestOutbox(t *testing.T) {
	cfg := testConfig(t, BackendPostgres)
	pool := cfg.PostgresPool
	ctx := t.Context()
	topic := ServiceTopic(uniq("ledger"), "posted")

	// A business table, to show the message and the write commit as one.
	if _, err := pool.Exec(ctx, `CREATE TABLE postings (id text PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	post := func(id string, commit bool) {
		t.Helper()
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO postings VALUES ($1)`, id); err != nil {
				return err
			}
			// The first call creates the topic's table inside tx: no router
			// has subscribed to it yet.
			if err := runOutbox(WithCorrelationID(ctx, "corr-"+id), tx, store.OutboxMessage{Topic: topic, UUID: watermill.NewUUID(), Payload: []byte(id),
				Metadata: map[string]string{MetaIdempotencyKey: id}}); err != nil {
				return err
			}
			if !commit {
				return errors.New("rolled back on purpose")
			}
			return nil
		})
		if commit && err != nil {
			t.Fatalf("commit %s: %v", id, err)
		}
	}
	post("rolled-back", false)
	post("committed", true)
	post("rolled-back-2", false)
	post("committed-2", true)

	got := make(chan [2]string, 10)
	startRouter(t, cfg, func(r *Router) {
		mustHandle(t, r, "notify", topic, func(ctx context.Context, m *message.Message) error {
			got <- [2]string{string(m.Payload), CorrelationID(ctx)}
			return nil
		})
	})
	// Delivery follows commit order, so the second committed message comes
	// after anything that could have slipped through before it.
	for _, want := range []string{"committed", "committed-2"} {
		if g := recv(t, got, want); g != [2]string{want, "corr-" + want} {
			t.Fatalf("delivered %v, want %s with correlation ID corr-%s", g, want, want)
		}
	}
	select {
	case g := <-got:
		t.Fatalf("delivered %v as well", g)
	default:
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM postings`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("postings: %d, %v", n, err)
	}
}

// runOutbox runs in tx what OutboxStatements makes of msgs, as the
// PostgreSQL store runs it in a batch.
func runOutbox(ctx context.Context, tx pgx.Tx, msgs ...store.OutboxMessage) error {
	topics, err := OutboxStatements(ctx, msgs)
	if err != nil {
		return err
	}
	for _, t := range topics {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, t.Table).Scan(&exists); err != nil {
			return err
		}
		stmts := t.Insert
		if !exists {
			create, err := t.Create()
			if err != nil {
				return err
			}
			stmts = append(create, stmts...)
		}
		for _, st := range stmts {
			if _, err := tx.Exec(ctx, st.Query, st.Args...); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestOutboxStatements groups a batch's messages by topic in the order of
// their first message, one insert per topic, and refuses a bad topic.
func TestOutboxStatements(t *testing.T) {
	a, b := ServiceTopic("ledger", "a"), ServiceTopic("ledger", "b")
	for _, tc := range []struct {
		name    string
		msgs    []store.OutboxMessage
		tables  []string
		wantErr error
	}{
		{name: "none"},
		{name: "two topics", msgs: []store.OutboxMessage{{Topic: b, UUID: "1"}, {Topic: a, UUID: "2"}, {Topic: b, UUID: "3"}},
			tables: []string{pgTable("watermill_", b), pgTable("watermill_", a)}},
		{name: "bad topic", msgs: []store.OutboxMessage{{Topic: a, UUID: "1"}, {Topic: "plugin.Bad.x", UUID: "2"}},
			wantErr: ErrInvalidTopic},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := OutboxStatements(t.Context(), tc.msgs)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("OutboxStatements: %v, want %v", err, tc.wantErr)
			}
			if len(got) != len(tc.tables) {
				t.Fatalf("%d topics, want %d", len(got), len(tc.tables))
			}
			for i, ot := range got {
				if ot.Table != tc.tables[i] || len(ot.Insert) != 1 || ot.Create == nil {
					t.Fatalf("topic %d: table %s, %d inserts; want table %s, one insert", i, ot.Table, len(ot.Insert), tc.tables[i])
				}
			}
		})
	}
}

// TestDurableAcrossRestart checks the durable backends keep what was
// published while no router ran, and each handler's position: a restarted
// router handles the new message and not the ones handled before. Delivery
// is at least once, so the last message handled before Close may come again
// (its acknowledgement can be lost in the close); the earlier ones may not,
// or the handler's position was lost.
func TestDurableAcrossRestart(t *testing.T) {
	for _, backend := range []string{BackendPostgres, BackendNATS} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t, backend)
			topic := Topic(uniq("p"), "tap")
			got := make(chan string, 10)
			handle := func(r *Router) {
				mustHandle(t, r, "fares", topic, func(ctx context.Context, m *message.Message) error {
					got <- string(m.Payload)
					return nil
				})
			}

			first, err := New(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			handle(first)
			if err := first.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			before := []string{"b1", "b2", "b3", "b4"}
			for _, p := range before {
				publish(t, t.Context(), first, topic, msg(p, ""))
			}
			for _, want := range before {
				if g := recv(t, got, want); g != want {
					t.Fatalf("got %s, want %s", g, want)
				}
			}
			if err := first.Close(); err != nil {
				t.Fatal(err)
			}

			// Published with no router running: a publisher-only router.
			pub, err := New(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			publish(t, t.Context(), pub, topic, msg("while-down", ""))
			if err := pub.Close(); err != nil {
				t.Fatal(err)
			}

			startRouter(t, cfg, handle)
			g := recv(t, got, "while-down")
			if g == "b4" {
				t.Log("b4 delivered again after the restart (its acknowledgement was lost in the close)")
				g = recv(t, got, "while-down")
			}
			if g != "while-down" {
				t.Fatalf("after restart got %q, want while-down: the handler's position was lost", g)
			}
		})
	}
}
